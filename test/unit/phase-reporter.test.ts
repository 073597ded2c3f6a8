import { describe, expect, it } from 'vitest';
import { createPhaseReporter, PHASE_SETTLE_MS, POSITION_REFRESH_MS } from '../../src/worker/phase-reporter.js';
import type { RowPhase } from '../../src/worker/process-row.js';
import { flushMicrotasks, ManualClock } from '../helpers/manual-clock.js';

function setup(write?: (phase: RowPhase) => Promise<unknown>) {
  const clock = new ManualClock();
  const writes: RowPhase[] = [];
  const reporter = createPhaseReporter(
    write ??
      (async (phase) => {
        writes.push(phase);
      }),
    clock,
  );
  return { clock, writes, reporter };
}

describe('phase reporting (job progress for dashboards), throttled', () => {
  it('a row whose phases all pass within PHASE_SETTLE_MS costs no write', async () => {
    const { clock, writes, reporter } = setup();
    reporter.report({ phase: 'submitting' });
    await clock.advance(10);
    reporter.report({ phase: 'running' });
    await clock.advance(100);
    reporter.report({ phase: 'fetching' });
    await clock.advance(10);
    reporter.stop();
    await clock.advance(10 * PHASE_SETTLE_MS);
    expect(writes).toEqual([]);
  });

  it('writes the phase that holds, once, however often it is seen', async () => {
    const { clock, writes, reporter } = setup();
    reporter.report({ phase: 'submitting' });
    await clock.advance(5);
    for (let i = 0; i < 50; i++) {
      reporter.report({ phase: 'running' });
      await clock.advance(100);
    }
    expect(writes).toEqual([{ phase: 'running' }]);
    reporter.report({ phase: 'fetching' });
    await clock.advance(PHASE_SETTLE_MS);
    expect(writes).toEqual([{ phase: 'running' }, { phase: 'fetching' }]);
    reporter.stop();
  });

  it('a queue position that merely moves is written at most every POSITION_REFRESH_MS; a new phase is not held back by it', async () => {
    const { clock, writes, reporter } = setup();
    reporter.report({ phase: 'queued', position: 30 });
    await clock.advance(PHASE_SETTLE_MS);
    expect(writes).toEqual([{ phase: 'queued', position: 30 }]);
    // The position moves every 200 ms for 6 s: one more write at most per refresh period.
    for (let position = 29; position >= 0; position--) {
      reporter.report({ phase: 'queued', position });
      await clock.advance(200);
    }
    const queuedWrites = writes.filter((w) => w.phase === 'queued').length;
    expect(queuedWrites).toBeLessThanOrEqual(1 + Math.ceil((30 * 200) / POSITION_REFRESH_MS));
    expect(queuedWrites).toBeGreaterThanOrEqual(2);
    reporter.report({ phase: 'running' });
    await clock.advance(PHASE_SETTLE_MS);
    expect(writes.at(-1)).toEqual({ phase: 'running' });
    reporter.stop();
  });

  it('one write at a time, the latest phase winning; nothing after stop', async () => {
    const releases: Array<() => void> = [];
    const writes: RowPhase[] = [];
    const { clock, reporter } = setup(
      (phase) =>
        new Promise<void>((resolve) => {
          writes.push(phase);
          releases.push(resolve);
        }),
    );
    reporter.report({ phase: 'queued', position: 2 });
    await clock.advance(PHASE_SETTLE_MS);
    expect(writes).toEqual([{ phase: 'queued', position: 2 }]);
    // While that write hangs, two more phases come: only the latest is written, after it.
    reporter.report({ phase: 'running' });
    await clock.advance(PHASE_SETTLE_MS * 3);
    reporter.report({ phase: 'fetching' });
    await clock.advance(PHASE_SETTLE_MS * 3);
    expect(writes).toHaveLength(1);
    releases[0]?.();
    await flushMicrotasks();
    await clock.advance(PHASE_SETTLE_MS);
    expect(writes).toEqual([{ phase: 'queued', position: 2 }, { phase: 'fetching' }]);
    releases[1]?.();
    reporter.stop();
    reporter.report({ phase: 'running' });
    await clock.advance(PHASE_SETTLE_MS * 3);
    expect(writes).toHaveLength(2);
  });

  it('a failing write (the job is gone) is ignored', async () => {
    const { clock, reporter } = setup(async () => {
      throw new Error('Missing key for job');
    });
    reporter.report({ phase: 'running' });
    await clock.advance(PHASE_SETTLE_MS * 2);
    reporter.report({ phase: 'fetching' });
    await clock.advance(PHASE_SETTLE_MS * 2);
    reporter.stop();
  });
});
