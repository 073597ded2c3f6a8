import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { FOREVER, sweepExpiredBatches } from '../../src/queue/retention.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus, listBatches, waitForBatch } from '../../src/ops/status.js';
import { pruneExpired } from '../../src/ops/prune.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, readCsv, until, type Harness, namespaceKeys } from '../helpers/harness.js';
import { fingerprintOf } from '../../src/queue/row-keys.js';

const DAY = 24 * 3600 * 1000;

/** A manifest of rows without ids (each keyed by its content), one per prompt. */
function manifest(h: Harness, name: string, prompts: string[]): string {
  return h.file(name, `image_url,prompt\n${prompts.map((p) => `https://example.com/${p}.jpg,${p}`).join('\n')}\n`);
}

/** Keys that belong to a batch: its data keys, its queue jobs, its rows' request state. */
function keysOfBatch(keys: string[], batch: string): string[] {
  return keys.filter((key) => key.includes(`:batch:${batch}:`) || key.includes(`}:${batch}/`) || key.includes(`:request:${batch}/`));
}

/** The fingerprints of a batch's rows, from its row keys hash (queue/row-keys.ts). */
async function fingerprintsOf(h: Harness, batch: string): Promise<string[]> {
  const entries = Object.entries(await h.ctx.redis.hgetall(h.ctx.keys.batch(batch).keys));
  return entries.map(([key, stored]) => fingerprintOf(key, stored) as string);
}

/** The ledger keys of a batch's answers (by its row fingerprints). */
async function ledgerKeysOf(h: Harness, batch: string): Promise<string[]> {
  return (await fingerprintsOf(h, batch)).map((fingerprint) => h.ctx.keys.ledger(fingerprint));
}

describe('retention', () => {
  it('batches past their retention leave nothing behind (keys, list, ledger answers); one kept longer keeps the answers it reused', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    // a and b are kept 5 s; c (the default, 30 days) reuses one answer a paid for. (5 s, not less:
    // c must start before a's answers expire, and on a saturated machine b's run alone can take seconds.)
    // Each batch's ledger keys are read as soon as it ends, before its retention can run out.
    const kept = 5000;
    const a = await runBatch(h.ctx, { manifest: manifest(h, 'a.csv', ['shared', 'a1', 'a2']), out: join(h.dir, 'a.out.csv'), batch: 'a', retentionMs: kept });
    const aLedger = await ledgerKeysOf(h, 'a');
    const b = await runBatch(h.ctx, { manifest: manifest(h, 'b.csv', ['b1', 'b2']), out: join(h.dir, 'b.out.csv'), batch: 'b', retentionMs: kept });
    const bLedger = await ledgerKeysOf(h, 'b');
    const c = await runBatch(h.ctx, { manifest: manifest(h, 'c.csv', ['shared', 'c1']), out: join(h.dir, 'c.out.csv'), batch: 'c' });
    const cLedger = await ledgerKeysOf(h, 'c');
    expect([a.export.ok, b.export.ok, c.export.ok]).toEqual([3, 2, 2]);
    expect(c.status.reused).toBe(1);
    const billed = h.emulator.stats().billed;
    expect(billed).toBe(6);

    expect([aLedger.length, bLedger.length, cLedger.length]).toEqual([3, 2, 2]);
    const shared = cLedger.find((key) => aLedger.includes(key)) as string;
    expect(shared).toBeDefined();
    // Finished batches live their retention from their last row's end; the shared answer lives c's.
    expect(await h.ctx.redis.pttl(h.ctx.keys.batch('a').meta)).toBeLessThanOrEqual(kept);
    expect(await h.ctx.redis.pttl(h.ctx.keys.batch('c').meta)).toBeGreaterThan(29 * DAY);
    expect(await h.ctx.redis.pttl(shared)).toBeGreaterThan(29 * DAY);
    for (const key of bLedger) expect(await h.ctx.redis.pttl(key)).toBeLessThanOrEqual(kept);
    expect((await getStatus(h.ctx, 'c')).retentionMs).toBe(30 * DAY);

    const gone = [...aLedger.filter((key) => key !== shared), ...bLedger];
    await until('every key of a and b, and their own answers, to expire', async () => {
      const keys = await namespaceKeys(h);
      return keysOfBatch(keys, 'a').length === 0 && keysOfBatch(keys, 'b').length === 0 && gone.every((key) => !keys.includes(key));
    });
    // The list no longer shows them (status sweeps it), and nothing remains but c, its answers and BullMQ's own keys.
    expect((await listBatches(h.ctx)).map((s) => s.batch)).toEqual(['c']);
    expect(await h.ctx.redis.zrange(h.ctx.keys.batches, '0', '-1')).toEqual(['c']);
    expect(await h.ctx.redis.zrange(h.ctx.keys.expiries, '0', '-1')).toEqual(['c']);
    const left = (await namespaceKeys(h)).filter(
      (key) => !key.includes(':batch:c:') && !cLedger.includes(key) && !key.endsWith(':batches') && !key.endsWith(':expiries'),
    );
    // BullMQ's own keys, and the queue's cap on waiting jobs (a setting, like BullMQ's meta).
    expect(left.every((key) => /^[^:]+:\{jobs\}:(meta|events|id|stalled-check|marker|limiter|de|pc|max-waiting)$/.test(key))).toBe(true);
    expect(left.length).toBeLessThanOrEqual(9);

    // c still exports, and a rerun of a answers the shared row from the ledger (c kept it) and pays for the rest.
    await exportResults(h.ctx, { batch: 'c', out: join(h.dir, 'c.again.csv') });
    expect((await readCsv(join(h.dir, 'c.again.csv'))).map((row) => row['status'])).toEqual(['ok', 'ok']);
    const again = await runBatch(h.ctx, {
      manifest: manifest(h, 'a.csv', ['shared', 'a1', 'a2']),
      out: join(h.dir, 'a.again.csv'),
      batch: 'a',
      retentionMs: 1000,
    });
    expect(again.export.ok).toBe(3);
    expect(h.emulator.stats().billed).toBe(billed + 2);
  });

  it('an active batch that keeps ending rows does not expire mid-run, though the run outlasts its retention; then it does', async () => {
    // No floor for unfinished batches: only the renewal at each row's begin and end keeps it.
    const h = await createHarness({ config: { retentionMs: 2000, unfinishedRetentionMs: 0 }, emulator: { latency: '300ms', runners: 1 } });
    const worker = await h.startWorker({ concurrency: 1 });
    const started = Date.now();
    const summary = await enqueueManifest(h.ctx, {
      manifest: manifest(
        h,
        'm.csv',
        Array.from({ length: 10 }, (_, i) => `row${i}`),
      ),
      batch: 'busy',
    });
    expect(summary.added).toBe(10);
    let looks = 0;
    let missing = 0;
    let done = false;
    const watch = (async () => {
      while (!done) {
        looks++;
        if ((await h.ctx.redis.exists(h.ctx.keys.batch('busy').meta)) === 0) missing++;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    const status = await waitForBatch(h.ctx, 'busy', { intervalMs: 50 });
    done = true;
    await watch;
    const ranMs = Date.now() - started;
    expect(status).toMatchObject({ ok: 10, failed: 0, finished: true });
    expect(ranMs).toBeGreaterThan(2000);
    expect(looks).toBeGreaterThan(20);
    expect(missing).toBe(0);
    expect(worker.counts()).toMatchObject({ ok: 10, gone: 0, lost: 0 });
    await exportResults(h.ctx, { batch: 'busy', out: join(h.dir, 'out.csv') });
    expect((await readCsv(join(h.dir, 'out.csv'))).filter((row) => row['status'] === 'ok')).toHaveLength(10);
    await worker.close();
    await until('the finished batch to expire', async () => keysOfBatch(await namespaceKeys(h), 'busy').length === 0);
  });

  it('an unfinished batch is kept at least 7 days whatever its retention; its retention counts from its last row', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    await enqueueManifest(h.ctx, { manifest: manifest(h, 'm.csv', ['p1', 'p2']), batch: 'slow', retentionMs: 1000 });
    // Nobody works it: it waits, kept for the unfinished floor, not its 1 s.
    const meta = h.ctx.keys.batch('slow').meta;
    expect(await h.ctx.redis.pttl(meta)).toBeGreaterThan(6 * DAY);
    for (const key of h.ctx.keys.batch('slow').retained) {
      if ((await h.ctx.redis.exists(key)) === 1) expect(await h.ctx.redis.pttl(key)).toBeGreaterThan(6 * DAY);
    }
    const waiting = await getStatus(h.ctx, 'slow');
    expect(waiting.retentionMs).toBe(1000);
    expect(waiting.expiresAt).toBeGreaterThan(Date.now() + 6 * DAY);
    const worker = await h.startWorker();
    await waitForBatch(h.ctx, 'slow', { intervalMs: 25 });
    await worker.close();
    expect(await h.ctx.redis.pttl(meta)).toBeLessThanOrEqual(1000);
    await until('the finished batch to expire', async () => keysOfBatch(await namespaceKeys(h), 'slow').length === 0);
  });

  it('rows of a batch that expired while they waited are dropped without a call, and not taken for a Redis loss', async () => {
    const lines: string[] = [];
    const h = await createHarness({
      config: { retentionMs: 1000, unfinishedRetentionMs: 0 },
      log: createLogger({ level: 'info', write: (line) => void lines.push(line) }),
    });
    await enqueueManifest(h.ctx, { manifest: manifest(h, 'm.csv', ['e1', 'e2', 'e3']), batch: 'expired' });
    // Waited for (export --wait, run), it is said to have expired, not to have been lost by Redis.
    await expect(waitForBatch(h.ctx, 'expired', { intervalMs: 25 })).rejects.toThrow(
      /No batch named "expired".*It expired: its retention ran out after its last write/,
    );
    expect(await h.ctx.redis.exists(h.ctx.keys.batch('expired').meta)).toBe(0);
    expect(await h.ctx.queue.getWaitingCount()).toBe(3);
    const worker = await h.startWorker();
    await until('its rows to be dropped', () => worker.counts().gone === 3);
    await until('the queue to be empty', async () => (await h.ctx.queue.getJobCountByTypes('waiting', 'active', 'delayed')) === 0);
    await worker.close();
    expect(worker.counts()).toMatchObject({ gone: 3, lost: 0, ok: 0, failed: 0 });
    expect(h.emulator.stats().accepted).toBe(0);
    expect(keysOfBatch(await namespaceKeys(h), 'expired')).toEqual([]);
    expect(lines.join('')).toContain('batch expired is gone (its retention ran out, or it was pruned)');
    expect(lines.join('')).not.toContain('Redis lost');
    // The worker's start swept the list.
    expect(await h.ctx.redis.zcard(h.ctx.keys.batches)).toBe(0);
  });

  it('--retention forever keeps a batch and its answers until pruned; another retention replaces it', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    const m = manifest(h, 'm.csv', ['f1', 'f2']);
    await runBatch(h.ctx, { manifest: m, out: join(h.dir, 'out.csv'), batch: 'kept', retentionMs: FOREVER });
    const keys = h.ctx.keys.batch('kept');
    expect(await h.ctx.redis.pttl(keys.meta)).toBe(-1);
    for (const key of await ledgerKeysOf(h, 'kept')) expect(await h.ctx.redis.pttl(key)).toBe(-1);
    expect(await h.ctx.redis.zscore(h.ctx.keys.expiries, 'kept')).toBe('inf');
    expect(await getStatus(h.ctx, 'kept')).toMatchObject({ retentionMs: null, expiresAt: null });
    // Enqueued again with 1 h: nothing to do, so its retention applies from now (answers keep theirs: never shortened).
    await enqueueManifest(h.ctx, { manifest: m, batch: 'kept', retentionMs: 3600_000 });
    const left = await h.ctx.redis.pttl(keys.meta);
    expect(left).toBeGreaterThan(3500_000);
    expect(left).toBeLessThanOrEqual(3600_000);
    for (const key of await ledgerKeysOf(h, 'kept')) expect(await h.ctx.redis.pttl(key)).toBe(-1);
    // Without --retention, a batch keeps its own.
    await enqueueManifest(h.ctx, { manifest: m, batch: 'kept' });
    expect((await getStatus(h.ctx, 'kept')).retentionMs).toBe(3600_000);
  });

  it('a batch and a ledger from before retention: the old ledger is read and drained, the batch gets the default retention', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    await runBatch(h.ctx, { manifest: manifest(h, 'old.csv', ['o1', 'o2', 'o3']), out: join(h.dir, 'old.out.csv'), batch: 'old' });
    // Made as an earlier version left it: no retention, no TTLs, no expiry, answers in one hash.
    const keys = h.ctx.keys.batch('old');
    await h.ctx.redis.hdel(keys.meta, 'retention_ms');
    for (const key of keys.retained) await h.ctx.redis.persist(key);
    await h.ctx.redis.zrem(h.ctx.keys.expiries, 'old');
    const fingerprints = await fingerprintsOf(h, 'old');
    for (const fingerprint of fingerprints) {
      await h.ctx.redis.hset(h.ctx.keys.legacyLedger, fingerprint, (await h.ctx.redis.get(h.ctx.keys.ledger(fingerprint))) as string);
      await h.ctx.redis.del(h.ctx.keys.ledger(fingerprint));
    }
    const billed = h.emulator.stats().billed;

    // A sweep (status, enqueue, worker start) gives the old batch the default retention from now.
    expect(await sweepExpiredBatches(h.ctx)).toEqual({ expired: [], migrated: ['old'] });
    expect(await h.ctx.redis.pttl(keys.meta)).toBeGreaterThan(29 * DAY);
    expect(Number(await h.ctx.redis.zscore(h.ctx.keys.expiries, 'old'))).toBeGreaterThan(Date.now() + 29 * DAY);
    expect((await listBatches(h.ctx)).map((s) => s.batch)).toEqual(['old']);

    // A new batch reuses an old answer without paying; it moves to its own key, with the new batch's retention.
    const dry = await runBatch(h.ctx, { manifest: manifest(h, 'new.csv', ['o1']), out: join(h.dir, 'new.out.csv'), batch: 'new', retentionMs: 3600_000 });
    expect(dry.export.ok).toBe(1);
    expect(h.emulator.stats().billed).toBe(billed);
    const [reused] = await fingerprintsOf(h, 'new');
    expect(await h.ctx.redis.hexists(h.ctx.keys.legacyLedger, reused as string)).toBe(0);
    const reusedLeft = await h.ctx.redis.pttl(h.ctx.keys.ledger(reused as string));
    expect(reusedLeft).toBeGreaterThan(3500_000);
    expect(reusedLeft).toBeLessThanOrEqual(3600_000);

    // prune --expired moves the rest, with the default retention.
    const pruned = await pruneExpired(h.ctx);
    expect(pruned).toMatchObject({ expired: [], migrated: [], orphanJobs: 0, ledgerMigrated: 2 });
    expect(await h.ctx.redis.exists(h.ctx.keys.legacyLedger)).toBe(0);
    for (const fingerprint of fingerprints) expect(await h.ctx.redis.pttl(h.ctx.keys.ledger(fingerprint))).toBeGreaterThan(0);
  });
});
