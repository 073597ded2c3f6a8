import { describe, expect, it } from 'vitest';
import { createFalEmulator } from '../../src/emulator/create-fal-emulator.js';
import { systemClock, type Clock } from '../../src/time.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { getStatus } from '../../src/ops/status.js';
import { headroomFor } from '../../src/worker/slot-learner.js';
import { readQueueConcurrency } from '../../src/queue/queue-concurrency.js';
import { LEARNED_KEPT_MS, slotsAccountOf, startConcurrencyControl } from '../../src/worker/concurrency-control.js';
import { createHarness, FAL_KEY, runCliProcess, spawnCli, until, type Harness, type SpawnedCli } from '../helpers/harness.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

async function learned(h: Harness, batch: string): Promise<number | undefined> {
  return (await getStatus(h.ctx, batch)).concurrency?.slots;
}

/**
 * Once the cap is down to `bound` and the rows taken under a higher one have ended, what fal holds
 * of ours never goes above it again. (A row is active from before its submit to after its result
 * is read: fal holding `bound` requests or fewer says nothing of a row taken but not yet submitted.)
 */
async function settleAt(h: Harness, bound: number): Promise<void> {
  await until(
    `at most ${bound} rows active and requests outstanding at fal`,
    async () => (await h.ctx.queue.getActiveCount()) <= bound && h.emulator.stats().outstanding <= bound,
    30_000,
  );
  h.emulator.reset();
}

/** Waits as `until` does; a time-out says what the workers decided and what fal saw. */
async function waitFor(h: Harness, workers: SpawnedCli[], what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  try {
    await until(what, check, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${evidence(h, workers)}`);
  }
}

/** What the workers said about the cap, and what fal saw: the message of a bound that broke. */
function evidence(h: Harness, workers: SpawnedCli[]): string {
  const said = workers.map((w) =>
    w
      .output()
      .split('\n')
      .filter((line) => /fal concurrency|warn|retry|error/i.test(line))
      .slice(-40)
      .join('\n'),
  );
  return `${said.join('\n---\n')}\nemulator: ${JSON.stringify({ ...h.emulator.stats(), billedByFingerprint: undefined })}`;
}

async function stop(workers: SpawnedCli[]): Promise<void> {
  for (const worker of workers) worker.child.kill('SIGTERM');
  for (const worker of workers) expect(await worker.exited).toBe(0);
}

describe("--concurrency auto: the account's fal slots, learned and followed", () => {
  it('learns 7 slots it is not told, keeps at most 7 + headroom outstanding, follows 7 → 20 and 20 → 4, and status shows it', async () => {
    const h = await createHarness({ emulator: { runners: 7, latency: '800..1600ms', seed: 3 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 3000) });
    const worker = spawnCli(['work'], h.env());
    try {
      await waitFor(h, [worker], '7 slots learned', async () => (await learned(h, batch)) === 7);
      await settleAt(h, 7 + headroomFor(7));
      await until('rows ending with the cap held', async () => (await getStatus(h.ctx, batch)).ok >= 200, 60_000);
      expect(h.emulator.stats().maxOutstanding, evidence(h, [worker])).toBeLessThanOrEqual(7 + headroomFor(7));
      const shown = await runCliProcess(['status', '--batch', batch], h.env());
      // (What it shows is what it follows now: on a busy machine a worker that hears of its requests
      // late may count fewer running since, and lower the slots; the bound above is what holds.)
      expect(shown.stdout).toMatch(/fal +(\d+) slots learned, (\d+) requests kept in flight \(auto: .*the account runs \1 at once/);

      // fal raises the account's limit: the target follows within 30 s.
      h.emulator.setRunners(20);
      await waitFor(h, [worker], '20 slots learned', async () => (await learned(h, batch)) === 20);
      // The log said it tried more, and why.
      expect(worker.output()).toMatch(/fal concurrency: all \d+ requests in flight started at once \(\d+ running, none waiting in fal's queue\): trying \d+/);

      // And lowers it: the backlog at fal drains, and outstanding stays within 4 + headroom.
      h.emulator.setRunners(4);
      await waitFor(h, [worker], '4 slots learned', async () => (await learned(h, batch)) === 4);
      await settleAt(h, 4 + headroomFor(4));
      const before = (await getStatus(h.ctx, batch)).ok;
      await until('rows ending at 4 slots', async () => (await getStatus(h.ctx, batch)).ok >= before + 60, 60_000);
      expect(h.emulator.stats().maxOutstanding).toBeLessThanOrEqual(4 + headroomFor(4));
    } finally {
      await stop([worker]);
    }
    // Its cap does not outlive the run: a worker of fixed concurrency started after finds none.
    await until('the lease to lapse', async () => (await h.ctx.redis.exists(h.ctx.keys.concurrency)) === 0, 20_000);
    const later = spawnCli(['work', '--concurrency', '3'], h.env());
    await until('the worker to start', () => later.output().includes('worker started'), 20_000);
    await until('the leftover cap lifted', async () => (await h.ctx.queue.getGlobalConcurrency()) === null, 10_000);
    await stop([later]);
  }, 300_000);

  it('two work processes share one learned limit: together they stay within 7 + headroom', async () => {
    const h = await createHarness({ emulator: { runners: 7, latency: '800..1600ms', seed: 4 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 1500) });
    const workers = [spawnCli(['work'], h.env()), spawnCli(['work'], h.env())];
    try {
      await waitFor(h, workers, '7 slots learned', async () => (await learned(h, batch)) === 7);
      await settleAt(h, 7 + headroomFor(7));
      const before = (await getStatus(h.ctx, batch)).ok;
      await until('rows ending with both workers', async () => (await getStatus(h.ctx, batch)).ok >= before + 100, 60_000);
      const said = workers
        .map((w) =>
          w
            .output()
            .split('\n')
            .filter((line) => line.includes('fal concurrency'))
            .join('\n'),
        )
        .join('\n---\n');
      expect(h.emulator.stats().maxOutstanding, said).toBeLessThanOrEqual(7 + headroomFor(7));
    } finally {
      await stop(workers);
    }
    // Both took rows (the shared cap, not one worker, is what limits).
    for (const worker of workers) expect(worker.output()).toContain('worker started: concurrency auto');
  }, 240_000);

  it('a new run starts from the slots the last one learned (kept a week), not from 4 doubling', async () => {
    const h = await createHarness({ emulator: { runners: 24, latency: '800..1600ms', seed: 5 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 3000) });
    const first = spawnCli(['work'], h.env());
    try {
      await waitFor(h, [first], 'slots learned', async () => (await learned(h, batch)) !== undefined);
    } finally {
      await stop([first]);
    }
    const key = h.ctx.keys.learnedSlots(slotsAccountOf(FAL_KEY));
    // (24 on a machine that keeps up; one too busy to hear of its requests in time counts fewer.)
    const slots = Number(await h.ctx.redis.get(key));
    expect(slots).toBeGreaterThanOrEqual(2);
    expect(slots).toBeLessThanOrEqual(24);
    expect(await h.ctx.redis.pttl(key)).toBeGreaterThan(LEARNED_KEPT_MS - 60_000);
    // Nothing the key could be read from: a digest, never FAL_KEY itself.
    expect(key).not.toContain(FAL_KEY);

    // The next run, against an account of the same 24 slots whose requests never end (a clock that
    // does not move): all it ever sends is its first decision. Started from the slots learned, that
    // is those + headroom (at most 27) at once; from scratch it would be 4, 8, 16, then 32 (the
    // doubling passes 24 before any request waits).
    const frozen: Clock = {
      now: systemClock.now,
      sleep: (_ms, signal) => new Promise<void>((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason), { once: true })),
    };
    const fal = await createFalEmulator({ key: FAL_KEY, runners: 24, latency: '1s', clock: frozen });
    const second = spawnCli(['work', '--grace', '1s'], h.env({ FAL_BASE_URL: fal.url }));
    try {
      // Every row the worker took is at fal, and fal runs 24 of them.
      const start = slots + headroomFor(slots);
      await waitFor(
        h,
        [second],
        'the rows taken to be submitted',
        async () => fal.stats().accepted >= Math.min(24, start) && (await h.ctx.queue.getActiveCount()) === fal.stats().accepted,
      );
      expect(fal.stats(), evidence(h, [second])).toMatchObject({ accepted: start, maxOutstanding: start });
      expect(second.output()).toContain(`fal concurrency: starting from the ${slots} slots learned before; keeping ${start} in flight`);
    } finally {
      await stop([second]);
      await fal.close();
    }
  }, 240_000);

  it('--global-concurrency wins over auto while its worker runs, and is lifted when it stops', async () => {
    const h = await createHarness({ emulator: { runners: 7, latency: '400..800ms' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 400) });
    const fixed = spawnCli(['work', '--global-concurrency', '3', '--concurrency', '8'], h.env());
    const auto = spawnCli(['work'], h.env());
    try {
      // (The two start together: once the fixed cap is set, it holds.)
      await until('the fixed cap set', async () => (await getStatus(h.ctx, batch)).concurrency?.mode === 'fixed', 30_000);
      await settleAt(h, 3);
      const before = (await getStatus(h.ctx, batch)).ok;
      await until('rows ending', async () => (await getStatus(h.ctx, batch)).ok >= before + 50, 60_000);
      expect((await getStatus(h.ctx, batch)).concurrency).toMatchObject({ mode: 'fixed', target: 3, reason: '--global-concurrency 3' });
      expect(await h.ctx.queue.getGlobalConcurrency()).toBe(3);
      // fal never ran more than 3 of ours at once. (When the auto worker set its cap of 4 before
      // the fixed one was set, a row it let in may still be active: settleAt waits for those.)
      expect(h.emulator.stats().maxInProgress, evidence(h, [fixed, auto])).toBeLessThanOrEqual(3);
      fixed.child.kill('SIGTERM');
      expect(await fixed.exited).toBe(0);
      // The auto worker takes over: it learns the 7 slots the fixed cap had hidden.
      await waitFor(h, [auto], '7 slots learned', async () => (await learned(h, batch)) === 7);
    } finally {
      await stop([auto]);
    }
  }, 240_000);

  it('a worker taking the lead from a leader that died starts from the slots it learned, not from what was known when it started', async () => {
    const h = await createHarness();
    // The leader holds the lease, and this worker starts before it has learned anything.
    await h.ctx.redis.set(h.ctx.keys.concurrencyLeader, 'a-leader-that-is-killed', 'PX', 500);
    const follower = await startConcurrencyControl(h.ctx, { kind: 'auto' }, { tickMs: 50 });
    try {
      // The leader learns 10 slots, then is killed: its lease lapses, nobody renews it.
      await h.ctx.redis.set(h.ctx.keys.learnedSlots(slotsAccountOf(h.ctx.config.falKey)), '10');
      await until('the follower to take the lead', async () => (await readQueueConcurrency(h.ctx)) !== undefined, 20_000);
      expect(await readQueueConcurrency(h.ctx)).toMatchObject({ mode: 'auto', slots: 10, target: 10 + headroomFor(10) });
    } finally {
      await follower.close();
    }
  });
});
