import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { getStatus } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import type { RowPhase } from '../../src/worker/process-row.js';
import { createHarness, ROOT, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

/** The fal phases the rows being worked show on their jobs (BullMQ job progress), sorted. */
async function activePhases(h: Harness): Promise<string[]> {
  const jobs = await h.ctx.queue.getJobs(['active']);
  return jobs.map((job) => JSON.stringify(job.progress as RowPhase | number)).sort();
}

const TMUX = spawnSync('tmux', ['-V'], { encoding: 'utf8' }).status === 0;

/** A pseudo-terminal: a tmux server of the test's own (its own socket), killed when the test ends. */
function tmuxSession(command: string, width = 120, height = 30): { capture(): string } {
  const socket = `falbatch-test-${randomUUID().slice(0, 8)}`;
  const tmux = (...args: string[]): string => {
    const result = spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`tmux ${args[0] ?? ''} failed: ${result.stderr}`);
    return result.stdout;
  };
  tmux('new-session', '-d', '-s', 'main', '-x', String(width), '-y', String(height), command);
  const path = tmux('display-message', '-p', '#{socket_path}').trim();
  onTestFinished(() => {
    spawnSync('tmux', ['-L', socket, 'kill-server']);
    // tmux leaves the socket file behind.
    if (path.includes(socket)) rmSync(path, { force: true });
  });
  // The scrollback too: a bar that scrolled lines up instead of redrawing would show there.
  return { capture: () => tmux('capture-pane', '-p', '-S', '-', '-t', 'main') };
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

const BAR = /\[[█░]+\] \d+\/\d+ done/;

describe('progress: rows in flight and waiting, per batch, in O(rows in flight)', () => {
  it('counts rows calling fal and rows waiting mid-run, shows each row’s fal phase on its job, and counts nothing in flight once rows are handed back', async () => {
    // One fal runner: of two rows in flight, one runs and the other waits in fal's queue.
    const h = await createHarness({ emulator: { runners: 1, latency: '1500ms' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 5) });
    const worker = await h.startWorker({ concurrency: 2 });
    await until('two rows calling fal', async () => (await getStatus(h.ctx, batch)).inFlight === 2);
    const mid = await getStatus(h.ctx, batch);
    expect(mid).toMatchObject({ jobs: 5, inFlight: 2 });
    expect(mid.waiting).toBe(mid.pending - 2);
    // Phases settle (a phase is written once it has held 500 ms): one running, one queued next.
    await until('phases on the jobs', async () => {
      const phases = await activePhases(h);
      return phases.length === 2 && phases[0] === JSON.stringify({ phase: 'queued', position: 0 }) && phases[1] === JSON.stringify({ phase: 'running' });
    });
    // A graceful stop past its grace hands the rows back: they wait again, none in flight.
    await worker.close(0);
    const after = await getStatus(h.ctx, batch);
    expect(after.inFlight).toBe(0);
    expect(after.waiting).toBe(after.pending);
    expect(after.pending).toBeGreaterThan(0);

    const again = await h.startWorker({ concurrency: 5 });
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
    await again.close();
    expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: 5, pending: 0, inFlight: 0, waiting: 0 });
    // Every row that ended left the active rows: nothing lingers.
    expect(await h.ctx.redis.exists(h.ctx.keys.batch(batch).active)).toBe(0);
  }, 60_000);

  it('a worker SIGKILLed mid-row stops counting as in flight once its job locks expire, with nobody cleaning up', async () => {
    const h = await createHarness({ emulator: { runners: 2, latency: '30s' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 4) });
    const worker = spawnCli(['work', '--concurrency', '2', '--lock-duration', '1s'], h.env());
    await until('two rows in flight', async () => (await getStatus(h.ctx, batch)).inFlight === 2, 20_000);
    worker.child.kill('SIGKILL');
    expect(await worker.exited).toBe(-1);
    // No worker runs anywhere now: the two entries it left are stale (their 1 s locks expire), and
    // status drops them, long before the 30 s the requests take.
    await until('in flight back to 0', async () => (await getStatus(h.ctx, batch)).inFlight === 0, 20_000);
    const healed = await getStatus(h.ctx, batch);
    expect(healed).toMatchObject({ pending: 4, inFlight: 0, waiting: 4 });
    expect(await h.ctx.redis.hlen(h.ctx.keys.batch(batch).active)).toBe(0);
  }, 60_000);
});

describe('progress: the CLI (spawned, over dist/)', () => {
  (TMUX ? it : it.skip)(
    `run draws one bar on a terminal, redrawn in place, and ends on the final counts${TMUX ? '' : ' (SKIPPED: tmux is not installed, so no pseudo-terminal)'}`,
    async () => {
      const h = await createHarness({ emulator: { runners: 1, latency: '700ms' } });
      manifestOf(h, 4); // writes m.csv in the test's folder, which the command below runs
      const env = Object.entries(h.env())
        .map(([name, value]) => `${name}=${shellQuote(value)}`)
        .join(' ');
      const cli = `env ${env} ${shellQuote(process.execPath)} ${shellQuote(join(ROOT, 'bin/falbatch.js'))}`;
      const pane = tmuxSession(`cd ${shellQuote(h.dir)} && ${cli} run m.csv --out out.csv --log-level error; echo EXIT=$?; sleep 60`);
      const captures: string[] = [];
      await until(
        'the run to end',
        () => {
          captures.push(pane.capture());
          return /EXIT=\d+/.test(captures.at(-1) ?? '');
        },
        30_000,
      );
      const barLines = (screen: string): string[] => screen.split('\n').filter((line) => BAR.test(line));
      // Never more than one bar line on screen: it is redrawn, not appended.
      for (const screen of captures) expect(barLines(screen).length).toBeLessThanOrEqual(1);
      // It changed while the rows ran (several counts seen on that one line).
      const seen = new Set(captures.flatMap(barLines).map((line) => /(\d+)\/4 done/.exec(line)?.[1]));
      expect(seen.size).toBeGreaterThanOrEqual(2);
      expect(captures.flatMap(barLines).some((line) => line.includes(' in flight, '))).toBe(true);
      const last = captures.at(-1) ?? '';
      expect(barLines(last)).toEqual([expect.stringMatching(/^m-[0-9a-f]+ \[█+\] 4\/4 done, 0 failed \| finished \| [\d.]+ rows\/min \| ~[\d.]+ USD$/)]);
      expect(last).toMatch(/4\/4 done[^\n]*\n(?:[^\n]*\n)?wrote 4 rows to [^\n]*out\.csv: 4 ok/);
      expect(last).toContain('EXIT=0');
    },
    60_000,
  );

  (TMUX ? it : it.skip)(
    `status --watch draws one bar per unfinished batch on a terminal, redrawn in place, until they finish${TMUX ? '' : ' (SKIPPED: tmux is not installed, so no pseudo-terminal)'}`,
    async () => {
      const h = await createHarness({ emulator: { runners: 2, latency: '500ms' } });
      await enqueueManifest(h.ctx, { manifest: manifestOf(h, 4), batch: 'first' });
      await enqueueManifest(h.ctx, { manifest: manifestOf(h, 4), batch: 'second' });
      const env = Object.entries(h.env())
        .map(([name, value]) => `${name}=${shellQuote(value)}`)
        .join(' ');
      const cli = `env ${env} ${shellQuote(process.execPath)} ${shellQuote(join(ROOT, 'bin/falbatch.js'))}`;
      const pane = tmuxSession(`${cli} status --watch --interval 200ms --log-level error; echo EXIT=$?; sleep 60`);
      await until('both bars drawn', () => pane.capture().includes('second ['));
      const worker = await h.startWorker({ concurrency: 2 });
      const captures: string[] = [];
      try {
        await until('the watch to end', () => {
          captures.push(pane.capture());
          return /EXIT=\d+/.test(captures.at(-1) ?? '');
        });
      } finally {
        await worker.close();
      }
      for (const screen of captures) {
        const bars = screen.split('\n').filter((line) => BAR.test(line));
        // The two bars, each on its line, redrawn: never a third line of them.
        expect(bars.length).toBeLessThanOrEqual(2);
      }
      const last = captures.at(-1) ?? '';
      expect(last.split('\n').filter((line) => BAR.test(line))).toEqual([
        expect.stringMatching(/^first \[█+\] 4\/4 done, 0 failed \| finished/),
        expect.stringMatching(/^second \[█+\] 4\/4 done, 0 failed \| finished/),
      ]);
      expect(last).toContain('batch second (finished)');
      expect(last).toContain('EXIT=0');
    },
    60_000,
  );

  it('without a terminal, run logs plain lines (no escape sequences), ending on the final counts', async () => {
    const h = await createHarness({ emulator: { runners: 2, latency: '300ms' } });
    const result = await runCliProcess(['run', manifestOf(h, 4), '--out', join(h.dir, 'out.csv')], h.env());
    expect(result.code).toBe(0);
    expect(result.stderr).not.toContain('\x1b');
    const lines = result.stderr.split('\n').filter((line) => /^\[[^\]]+\] m-[0-9a-f]+: /.test(line));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.at(-1)).toMatch(/: 4\/4 done, 0 failed; finished; [\d.]+ rows\/min/);
  });

  it('run --json prints JSON lines: the enqueue summary, progress snapshots (the last final), the export summary', async () => {
    const h = await createHarness({ emulator: { runners: 1, latency: '1200ms' } });
    const result = await runCliProcess(['run', manifestOf(h, 3), '--out', join(h.dir, 'out.csv'), '--json'], h.env());
    expect(result.code).toBe(0);
    const events = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events[0]).toMatchObject({ event: 'enqueued', added: 3 });
    expect(events.at(-1)).toMatchObject({ event: 'exported', ok: 3 });
    const progress = events.filter((e) => e['event'] === 'progress');
    // 3.6 s of fal time: a snapshot every 2 s, then the final one.
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.slice(0, -1).every((e) => e['final'] === false)).toBe(true);
    expect(progress.at(-1)).toMatchObject({ final: true, finished: true, ok: 3, pending: 0, inFlight: 0, waiting: 0, jobs: 3 });
    expect(progress[0]).toHaveProperty('rowsPerMinute');
    expect(progress[0]).toHaveProperty('etaMs');
    expect(progress[0]).toHaveProperty('inFlight');
  });

  it('status --watch follows a batch until it finishes: plain lines per interval, then the report; --json snapshots end with a final one', async () => {
    const h = await createHarness({ emulator: { runners: 1, latency: '400ms' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 5) });
    const watch = spawnCli(['status', '--watch', '--interval', '200ms', '--batch', batch], h.env());
    const json = spawnCli(['status', '--watch', '--interval', '300ms', '--json', '--batch', batch], h.env());
    await until('both watches to have looked', () => /\d+\/5 done/.test(watch.output()) && json.output().includes('"final":false'));
    const worker = await h.startWorker({ concurrency: 2 });
    try {
      expect(await watch.exited).toBe(0);
      expect(await json.exited).toBe(0);
    } finally {
      await worker.close();
    }
    const lines = watch.output().split('\n');
    const progress = lines.filter((line) => line.includes(`] ${batch}: `));
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.at(-1)).toMatch(/5\/5 done, 0 failed; finished; /);
    expect(watch.output()).toMatch(
      new RegExp(`batch ${batch} \\(finished\\)\\n  manifest .*\\n  rows      5 \\(0 rejected\\)\\n  calls     5 distinct: 5 ok, 0 failed, 0 pending`),
    );
    const snapshots = json
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(snapshots.length).toBeGreaterThanOrEqual(2);
    expect(snapshots.at(-1)).toMatchObject({ event: 'progress', final: true, finished: true, ok: 5, batch });
    expect(snapshots.slice(0, -1).every((s) => s['final'] === false)).toBe(true);
  }, 60_000);

  it('status --watch without a batch follows every unfinished batch, and ends at once when none is left', async () => {
    const h = await createHarness({ emulator: { runners: 2, latency: '300ms' } });
    const first = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 3), batch: 'first' });
    const second = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 3), batch: 'second' });
    const watch = spawnCli(['status', '--watch', '--interval', '200ms', '--json'], h.env());
    await until('the watch to have looked', () => watch.output().includes('"final":false'));
    const worker = await h.startWorker({ concurrency: 4 });
    try {
      expect(await watch.exited).toBe(0);
    } finally {
      await worker.close();
    }
    const last = JSON.parse(watch.output().trim().split('\n').at(-1) ?? '') as { final: boolean; batches: Array<{ batch: string; finished: boolean }> };
    expect(last.final).toBe(true);
    expect(last.batches.map((b) => [b.batch, b.finished])).toEqual([
      [first.batch, true],
      [second.batch, true],
    ]);
    // Nothing left to follow: one look, and the report.
    const idle = await runCliProcess(['status', '--watch'], h.env());
    expect(idle.code).toBe(0);
    expect(idle.stdout).toContain('batch second (finished)');
  }, 60_000);
});
