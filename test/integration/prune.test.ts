import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BatchNotFoundError, ConfigError } from '../../src/errors.js';
import { pruneBatch, pruneExpired } from '../../src/ops/prune.js';
import { getStatus, listBatches } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { BatchPrunedError, PRUNED_LEASE } from '../../src/queue/retention.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, namespaceKeys, readCsv, runCliInProcess, until, type Harness } from '../helpers/harness.js';
import { fingerprintOf } from '../../src/queue/row-keys.js';

/** A manifest with ids; `bad` rows point at an unreachable image (the model answers 422: the row fails). */
function manifest(h: Harness, name: string, rows: Array<{ id: string; bad?: boolean }>): string {
  const lines = rows.map(({ id, bad }) => `${id},https://${bad ? 'images.invalid' : 'example.com'}/${id}.jpg,describe ${id}`);
  return h.file(name, `id,image_url,prompt\n${lines.join('\n')}\n`);
}

/** Keys that belong to a batch: its data keys, its queue jobs (and their locks, logs), its rows' request state. */
async function keysOfBatch(h: Harness, batch: string): Promise<string[]> {
  return (await namespaceKeys(h)).filter((key) => key.includes(`:batch:${batch}:`) || key.includes(`}:${batch}/`) || key.includes(`:request:${batch}/`));
}

/** The fingerprints of a batch's rows, from its row keys hash (queue/row-keys.ts). */
async function fingerprintsOf(h: Harness, batch: string): Promise<string[]> {
  const entries = Object.entries(await h.ctx.redis.hgetall(h.ctx.keys.batch(batch).keys));
  return entries.map(([key, stored]) => fingerprintOf(key, stored) as string);
}

async function ledgerKeysOf(h: Harness, batch: string): Promise<string[]> {
  return (await fingerprintsOf(h, batch)).map((fingerprint) => h.ctx.keys.ledger(fingerprint));
}

describe('falbatch prune', () => {
  it('drops every key and queue job of a batch (waiting and failed), nothing of another; its answers stay reusable unless --ledger', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    const first = [{ id: 'a1' }, { id: 'a2' }, { id: 'a3', bad: true }];
    const ran = await runBatch(h.ctx, { manifest: manifest(h, 'a.csv', first), out: join(h.dir, 'a.out.csv'), batch: 'a' });
    expect(ran.export).toMatchObject({ ok: 2, failed: 1 });
    await runBatch(h.ctx, { manifest: manifest(h, 'b.csv', [{ id: 'b1' }, { id: 'b2' }]), out: join(h.dir, 'b.out.csv'), batch: 'b' });
    // Two more rows of a wait for a worker that is not there.
    const more = await enqueueManifest(h.ctx, { manifest: manifest(h, 'a.csv', [...first, { id: 'a4' }, { id: 'a5' }]), batch: 'a' });
    expect(more).toMatchObject({ added: 2, present: 3 });
    expect(await h.ctx.queue.getFailedCount()).toBe(1);
    const aLedger = (await ledgerKeysOf(h, 'a')).slice(0, 2);
    const bKeys = await keysOfBatch(h, 'b');
    const billed = h.emulator.stats().billed;

    const summary = await pruneBatch(h.ctx, { batch: 'a' });
    expect(summary).toMatchObject({
      batch: 'a',
      rows: 5,
      results: 3,
      jobs: { waiting: 2, delayed: 0, failed: 1 },
      inFlight: 0,
      producerStopped: false,
      ledgerDropped: 0,
      ledgerKept: 2,
    });
    expect(summary.keys).toBeGreaterThanOrEqual(6);
    expect(await keysOfBatch(h, 'a')).toEqual([]);
    expect(await h.ctx.queue.getJobCountByTypes('waiting', 'failed', 'delayed')).toBe(0);
    expect((await listBatches(h.ctx)).map((s) => s.batch)).toEqual(['b']);
    expect(await h.ctx.redis.zscore(h.ctx.keys.expiries, 'a')).toBeNull();
    await expect(getStatus(h.ctx, 'a')).rejects.toBeInstanceOf(BatchNotFoundError);
    await expect(pruneBatch(h.ctx, { batch: 'a' })).rejects.toBeInstanceOf(BatchNotFoundError);
    // Nothing of b was touched.
    expect(await keysOfBatch(h, 'b')).toEqual(bKeys);
    expect(await getStatus(h.ctx, 'b')).toMatchObject({ ok: 2, finished: true });
    // a's answers stay in the ledger: running a again pays only for what it never got.
    for (const key of aLedger) expect(await h.ctx.redis.exists(key)).toBe(1);
    const again = await runBatch(h.ctx, {
      manifest: manifest(h, 'a.csv', [...first, { id: 'a4' }, { id: 'a5' }]),
      out: join(h.dir, 'a.again.csv'),
      batch: 'a',
    });
    expect(again.export).toMatchObject({ ok: 4, failed: 1 });
    const rows = await readCsv(join(h.dir, 'a.again.csv'));
    expect(rows.filter((row) => row['cached'] === 'true').map((row) => row['id'])).toEqual(['a1', 'a2']);
    expect(h.emulator.stats().billed).toBeLessThanOrEqual(billed + 3);

    // --ledger drops the answers too: identical rows are then paid for again.
    const bLedger = await ledgerKeysOf(h, 'b');
    expect(await pruneBatch(h.ctx, { batch: 'b', ledger: true })).toMatchObject({ ledgerDropped: 2, ledgerKept: 0 });
    for (const key of bLedger) expect(await h.ctx.redis.exists(key)).toBe(0);
    expect(await keysOfBatch(h, 'b')).toEqual([]);
  });

  it('refuses while rows are in flight; --force drops the batch, and the rows in flight record nothing under it', async () => {
    const h = await createHarness({ emulator: { latency: '1500ms', runners: 2 } });
    await enqueueManifest(h.ctx, { manifest: manifest(h, 'm.csv', [{ id: 'r1' }, { id: 'r2' }, { id: 'r3' }, { id: 'r4' }]), batch: 'busy' });
    const worker = await h.startWorker({ concurrency: 2 });
    await until('two rows to be running at fal', () => h.emulator.stats().inProgress === 2);
    const refused = pruneBatch(h.ctx, { batch: 'busy' });
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(refused).rejects.toThrow(/Batch busy has 2 rows in flight .*: not pruned\. .*--force/);
    expect(await h.ctx.redis.exists(h.ctx.keys.batch('busy').meta)).toBe(1);

    const forced = await pruneBatch(h.ctx, { batch: 'busy', force: true });
    expect(forced).toMatchObject({ inFlight: 2, jobs: { waiting: 2, delayed: 0, failed: 0 } });
    await until('the rows in flight to end', async () => (await h.ctx.queue.getActiveCount()) === 0 && h.emulator.stats().completed === 2);
    await until('their jobs to be removed', async () => (await keysOfBatch(h, 'busy')).length === 1);
    await worker.close();
    // Only the mark that says it was pruned is left (it expires within a minute); their paid answers went to the ledger.
    const lease = h.ctx.keys.batch('busy').enqueuing;
    expect(await keysOfBatch(h, 'busy')).toEqual([lease]);
    expect(await h.ctx.redis.get(lease)).toBe(PRUNED_LEASE);
    expect(await h.ctx.redis.pttl(lease)).toBeLessThanOrEqual(60_000);
    expect(worker.counts()).toMatchObject({ lost: 0, failed: 0 });
    expect((await namespaceKeys(h)).filter((key) => key.includes(':ledger:'))).toHaveLength(2);
    expect(h.emulator.stats().accepted).toBe(2);
  });

  it('refuses while a producer enqueues; --force stops the producer, which says the batch was pruned', async () => {
    // The producer is held mid-manifest (its admission of the second chunk waits) until prune is done.
    const h = await createHarness({ config: { maxWaiting: 3, enqueueChunk: 3 } });
    const rows = Array.from({ length: 30 }, (_, i) => ({ id: `r${i}` }));
    let chunks = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const producing = enqueueManifest(h.ctx, {
      manifest: manifest(h, 'm.csv', rows),
      batch: 'feeding',
      admit: async (candidates) => {
        if (++chunks === 2) await held;
        return candidates.length;
      },
    });
    producing.catch(() => undefined);
    await until('the producer to be held on its second chunk', async () => chunks === 2 && (await h.ctx.queue.getWaitingCount()) >= 3);
    await expect(pruneBatch(h.ctx, { batch: 'feeding' })).rejects.toThrow(/Batch feeding is being enqueued by a producer right now: not pruned\. .*--force/);

    const forced = await pruneBatch(h.ctx, { batch: 'feeding', force: true });
    expect(forced).toMatchObject({ producerStopped: true, inFlight: 0 });
    expect(forced.jobs.waiting).toBeGreaterThanOrEqual(3);
    release();
    await expect(producing).rejects.toBeInstanceOf(BatchPrunedError);
    await expect(producing).rejects.toThrow(/Batch feeding was dropped by `falbatch prune --force` while it ran: stopped/);
    // Nothing of it left but the mark; no job.
    expect(await keysOfBatch(h, 'feeding')).toEqual([h.ctx.keys.batch('feeding').enqueuing]);
    expect(await h.ctx.queue.getWaitingCount()).toBe(0);
    // The name is free again once the mark is gone (within a minute); until then, enqueue says why.
    await expect(enqueueManifest(h.ctx, { manifest: manifest(h, 'm.csv', rows), batch: 'feeding' })).rejects.toThrow(
      /Batch feeding was dropped by `falbatch prune --force` less than a minute ago: its name is free again within 60 s/,
    );
  });

  it('--expired removes the queued jobs of batches that expired, and takes them off the list', async () => {
    const h = await createHarness({ config: { retentionMs: 1000, unfinishedRetentionMs: 0 } });
    await enqueueManifest(h.ctx, { manifest: manifest(h, 'm.csv', [{ id: 'x1' }, { id: 'x2' }, { id: 'x3' }]), batch: 'stale' });
    await until('the batch to expire', async () => (await h.ctx.redis.exists(h.ctx.keys.batch('stale').meta)) === 0);
    expect(await h.ctx.redis.zscore(h.ctx.keys.batches, 'stale')).not.toBeNull();
    expect(await pruneExpired(h.ctx)).toEqual({ expired: ['stale'], migrated: [], orphanJobs: 3, ledgerMigrated: 0 });
    expect(await keysOfBatch(h, 'stale')).toEqual([]);
    expect(await h.ctx.redis.zcard(h.ctx.keys.batches)).toBe(0);
    expect(await pruneExpired(h.ctx)).toEqual({ expired: [], migrated: [], orphanJobs: 0, ledgerMigrated: 0 });
  });

  it('the CLI: prune --batch says what it removed, --expired and --json, and refuses what it cannot do', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    await runBatch(h.ctx, { manifest: manifest(h, 'm.csv', [{ id: 'c1' }, { id: 'c2' }]), out: join(h.dir, 'out.csv'), batch: 'cli' });
    const cli = (args: string[]) => runCliInProcess(args, h.env());

    const neither = await cli(['prune']);
    expect(neither.code).toBe(1);
    expect(neither.stderr).toContain('Expected either --batch NAME (drop that batch now) or --expired');
    expect((await cli(['prune', '--expired', '--ledger'])).stderr).toContain('--force and --ledger only apply with --batch');
    const missing = await cli(['prune', '--batch', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('No batch named "nope"');

    const pruned = await cli(['prune', '--batch', 'cli']);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toMatch(/^pruned batch cli: \d+ keys \(2 rows, 2 results\), 0 queue jobs \(0 waiting, 0 delayed, 0 failed\)\n/);
    expect(pruned.stdout).toContain(
      'ledger: 2 paid answers kept for identical rows of other batches, until their own retention runs out (--ledger drops them)',
    );
    const expired = await cli(['prune', '--expired', '--json']);
    expect(expired.code).toBe(0);
    expect(JSON.parse(expired.stdout)).toEqual({ expired: [], migrated: [], orphanJobs: 0, ledgerMigrated: 0 });
    // --retention on enqueue, checked before anything is written.
    const bad = await cli(['enqueue', join(h.dir, 'm.csv'), '--batch', 'r', '--retention', '0']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('Expected --retention to be at least 1s (or forever), got "0": to drop a batch now, use `falbatch prune --batch NAME`');
    expect(await h.ctx.redis.exists(h.ctx.keys.batch('r').meta)).toBe(0);
    const kept = await cli(['enqueue', join(h.dir, 'm.csv'), '--batch', 'r', '--retention', '12h', '--json']);
    expect(kept.code).toBe(0);
    expect((await getStatus(h.ctx, 'r')).retentionMs).toBe(12 * 3600_000);
    const status = await cli(['status', '--batch', 'r']);
    expect(status.stdout).toMatch(/kept {6}12h after its last write \(expires in (6d23h|7d00h) unless written to\)/);
  });
});
