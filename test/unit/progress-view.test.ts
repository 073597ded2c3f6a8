import { describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { barLine, createProgressView, progressLine, progressMode } from '../../src/cli/progress.js';
import type { BatchStatus } from '../../src/ops/status.js';

function status(fields: Partial<BatchStatus> = {}): BatchStatus {
  return {
    batch: 'photos-1a2b3c4d',
    manifest: '/m.csv',
    createdAt: 0,
    updatedAt: 1,
    retentionMs: null,
    expiresAt: null,
    rows: 5,
    rejected: 1,
    skipped: 0,
    jobs: 4,
    ok: 2,
    failed: 1,
    pending: 1,
    inFlight: 1,
    waiting: 0,
    backlog: 0,
    concurrency: null,
    enqueuing: false,
    finished: false,
    paused: undefined,
    pausedBy: undefined,
    cancelled: undefined,
    priority: 10,
    falPriority: 'normal',
    spend: null,
    rowsPerMinute: 12,
    etaMs: 5000,
    latencyMs: { total: null, queueWait: null, inference: null },
    inferenceSeconds: 2.5,
    billedCalls: 3,
    reused: 0,
    partial: 0,
    cost: null,
    ...fields,
  };
}

function fakeIo(interactive: boolean, columns = 120): CliIo & { err: string; out: string } {
  const io = {
    err: '',
    out: '',
    stdout: (text: string) => void (io.out += text),
    stderr: (text: string) => void (io.err += text),
    env: {},
    signal: new AbortController().signal,
    interactive,
    columns: () => columns,
  };
  return io;
}

/** What a terminal shows once the output's cursor moves and erasures are applied, line by line. */
function screen(raw: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  // eslint-disable-next-line no-control-regex
  const tokens = raw.match(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]|\r|\n|[^\x1b\r\n]+/g) ?? [];
  for (const token of tokens) {
    const csi = /^\x1b\[(\d*)([A-Za-z])$/.exec(token);
    const n = Number(csi?.[1] || '1');
    if (token === '\n') {
      row++;
      col = 0;
      if (lines.length <= row) lines.push('');
    } else if (token === '\r') col = 0;
    else if (csi?.[2] === 'G') col = n - 1;
    else if (csi?.[2] === 'A') row = Math.max(0, row - n);
    else if (csi?.[2] === 'B') row = Math.min(lines.length - 1, row + n);
    else if (csi?.[2] === 'K') lines[row] = csi[1] === '2' ? '' : (lines[row] ?? '').slice(0, col);
    else if (csi?.[2] === 'J') lines.splice(row + 1);
    else if (token.startsWith('\x1b')) continue;
    else {
      const line = (lines[row] ?? '').padEnd(col);
      lines[row] = line.slice(0, col) + token + line.slice(col + token.length);
      col += token.length;
    }
  }
  return lines;
}

describe('progress lines and bars', () => {
  it('a bar line says done / failed / in flight and waiting, the recent rate, the ETA and the spend, within the width', () => {
    const line = barLine(status({ cost: { amount: 0.0123, currency: 'USD', unit: 'second', perUnit: 0.0005, source: 'flag' } }), 120);
    expect(line).toMatch(/^photos-1a2b3c4d \[█+░+\] 3\/4 done, 1 failed \| 1 in flight, 0 waiting \| 12\.0 rows\/min, ETA 5\.0s \| ~0\.0123 USD$/);
    expect(line.length).toBeLessThan(120);
    // Without a price, the billed inference time stands for the spend.
    expect(barLine(status(), 120)).toContain('| 2.5s billed');
    // The bar keeps its size whatever the figures say; a narrower terminal has a shorter bar, then
    // none, and cuts the end of the figures: never a wrapped line.
    expect(barLine(status({ ok: 0, failed: 0, rowsPerMinute: 1234.5, etaMs: 3_600_000 }), 120)).toMatch(/^photos-1a2b3c4d \[░{16}\] /);
    expect(barLine(status(), 80)).toMatch(/^photos-1a2b3c4d \[█{6}░{2}\] 3\/4 done, 1 failed \| 1 in flight/);
    expect(barLine(status(), 80)).toHaveLength(79);
    expect(barLine(status(), 40)).toBe('photos-1a2b3c4d 3/4 done, 1 failed | 1 ');
    const done = barLine(status({ ok: 3, pending: 0, inFlight: 0, finished: true, etaMs: null }), 120);
    expect(done).toBe(`photos-1a2b3c4d [${'█'.repeat(16)}] 4/4 done, 1 failed | finished | 12.0 rows/min | 2.5s billed`);
    // The state comes right after the counts, where a narrow terminal still shows it.
    expect(barLine(status({ paused: 'fal refused the key', pausedBy: 'account' }), 60)).toMatch(/^photos-1a2b3c4d \[█+░+\] 3\/4 done, 1 failed \| PAUSED/);
  });

  it('a plain line carries the same figures', () => {
    expect(progressLine(status(), 65_000)).toBe('[1m05s] photos-1a2b3c4d: 3/4 done, 1 failed; 1 in flight, 0 waiting; 12.0 rows/min, ETA 5.0s; 2.5s billed\n');
    expect(progressLine(status({ paused: 'fal refused the key', pausedBy: 'account', etaMs: null, rowsPerMinute: 0 }), 0)).toBe(
      '[0ms] photos-1a2b3c4d: 3/4 done, 1 failed; PAUSED; 1 in flight, 0 waiting; 0.0 rows/min, ETA -; 2.5s billed\n',
    );
    expect(progressLine(status({ cancelled: 'by an operator' }), 0)).toContain('3/4 done, 1 failed; CANCELLED: rows ending; 1 in flight');
  });

  it('picks a bar on a terminal, plain lines in a log, JSON when asked', () => {
    expect(progressMode({ interactive: true }, false)).toBe('bar');
    expect(progressMode({ interactive: false }, false)).toBe('lines');
    expect(progressMode({ interactive: true }, true)).toBe('json');
  });

  it('plain lines: the first at once, then one per interval, and the final one whatever the interval', () => {
    let now = 0;
    const io = fakeIo(false);
    const view = createProgressView(io, { mode: 'lines', everyMs: 15_000, write: io.stderr, now: () => now });
    view.show([status({ ok: 0, failed: 0 })]);
    now = 5000;
    view.show([status({ ok: 1, failed: 0 })]);
    now = 15_000;
    view.show([status({ ok: 2, failed: 0 })]);
    now = 16_000;
    view.finish([status({ ok: 4, failed: 0, pending: 0, finished: true })]);
    view.finish([status()]);
    expect(
      io.err
        .split('\n')
        .filter(Boolean)
        .map((l) => l.replace(/ done.*/, '')),
    ).toEqual(['[0ms] photos-1a2b3c4d: 0/4', '[15s] photos-1a2b3c4d: 2/4', '[16s] photos-1a2b3c4d: 4/4']);
    expect(io.err).not.toContain('\x1b');
  });

  it('plain lines: a final snapshot that says what the last line said is not written again (a rerun with nothing to do)', () => {
    const io = fakeIo(false);
    const view = createProgressView(io, { mode: 'lines', everyMs: 15_000, write: io.stderr, now: () => 0 });
    const done = status({ ok: 4, failed: 0, pending: 0, inFlight: 0, finished: true });
    view.show([done]);
    view.finish([done]);
    expect(io.err.split('\n').filter(Boolean)).toHaveLength(1);
    expect(io.err).toContain('4/4 done');
  });

  it('plain lines: a rerun shortly after the last run writes its final line once, though the rate over the last minute moved between the two looks', () => {
    let now = 0;
    const io = fakeIo(false);
    const view = createProgressView(io, { mode: 'lines', everyMs: 15_000, write: io.stderr, now: () => now });
    view.show([status({ ok: 4, failed: 0, pending: 0, inFlight: 0, finished: true, rowsPerMinute: 191.3 })]);
    now = 90;
    view.finish([status({ ok: 4, failed: 0, pending: 0, inFlight: 0, finished: true, rowsPerMinute: 191.0 })]);
    expect(io.err.split('\n').filter(Boolean)).toHaveLength(1);
    expect(io.err).toContain('4/4 done');
  });

  it('JSON: one object per line, the last one final; several batches as a list', () => {
    let now = 0;
    const io = fakeIo(false);
    const one = createProgressView(io, { mode: 'json', everyMs: 1000, write: io.stdout, now: () => now, jsonFields: { event: 'progress' } });
    one.show([status()]);
    now = 2000;
    one.show([status({ ok: 3, pending: 0 })]);
    one.finish();
    const snapshots = io.out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(snapshots.map((s) => [s['event'], s['final'], s['ok']])).toEqual([
      ['progress', false, 2],
      ['progress', false, 3],
      ['progress', true, 3],
    ]);
    expect(snapshots[0]).toMatchObject({ batch: 'photos-1a2b3c4d', inFlight: 1, waiting: 0, rowsPerMinute: 12, etaMs: 5000 });

    const io2 = fakeIo(false);
    const many = createProgressView(io2, { mode: 'json', everyMs: 1000, write: io2.stdout, now: () => now }, false);
    many.finish([status(), status({ batch: 'other' })]);
    expect(JSON.parse(io2.out)).toMatchObject({ final: true, batches: [{ batch: 'photos-1a2b3c4d' }, { batch: 'other' }] });
  });

  it('a bar is redrawn in place on stderr, log lines go above it, and it ends on the final counts', () => {
    const io = fakeIo(true, 100);
    const view = createProgressView(io, { mode: 'bar', everyMs: 0, write: io.stdout, now: () => 0 });
    view.show([status({ ok: 0, failed: 0 })]);
    view.show([status({ ok: 1, failed: 0 })]);
    view.stderr('12:00:00 warn  row failed: boom\n');
    view.show([status({ ok: 2, failed: 1 })]);
    view.finish([status({ ok: 3, failed: 1, pending: 0, inFlight: 0, finished: true })]);
    view.stderr('after\n');
    const lines = screen(io.err).filter(Boolean);
    expect(lines).toEqual([
      '12:00:00 warn  row failed: boom',
      expect.stringMatching(/^photos-1a2b3c4d \[█+\] 4\/4 done, 1 failed \| finished \| 12\.0 rows\/min \| 2\.5s billed$/),
      'after',
    ]);
    expect(io.out).toBe('');
  });

  it('several batches: one bar each', () => {
    const io = fakeIo(true, 100);
    const view = createProgressView(io, { mode: 'bar', everyMs: 0, write: io.stdout, now: () => 0 }, false);
    view.show([status({ batch: 'a' })]);
    view.show([status({ batch: 'a' }), status({ batch: 'b' })]);
    view.finish([status({ batch: 'a', finished: true }), status({ batch: 'b', finished: true })]);
    const lines = screen(io.err).filter(Boolean);
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['a', 'b']);
  });
});
