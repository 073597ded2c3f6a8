import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openContext } from '../../src/context.js';
import { getStatus } from '../../src/ops/status.js';
import { connectionIdOf, isConnectionAlive, isCluster } from '../../src/queue/connection.js';
import { createHarness, namespaceKeys, readCsv, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';
import { freezeMidSubmit } from '../helpers/frozen-worker.js';
import { clusterUnsupported, startRedisCluster, type LocalRedisCluster } from '../helpers/redis-cluster.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

/** Keys of the namespace on each node of the Cluster (plain SCAN per node). */
async function keysPerNode(cluster: LocalRedisCluster, prefix: string): Promise<number[]> {
  return Promise.all(
    cluster.nodes.map(async (node) => {
      let cursor = '0';
      let count = 0;
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        count += found.length;
      } while (cursor !== '0');
      return count;
    }),
  );
}

const missing = clusterUnsupported();

describe.skipIf(missing !== undefined)(`a Redis Cluster of three masters${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let cluster: LocalRedisCluster | undefined;
  let failure: string | undefined;

  beforeAll(async () => {
    try {
      cluster = await startRedisCluster({ masters: 3 });
    } catch (error) {
      failure = `a local Redis Cluster could not be started: ${(error as Error).message}`;
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('runs a batch with producer, two workers and export in separate processes: every row answered exactly once', async ({ skip }) => {
    if (!cluster) return skip(failure);
    const rows = 60;
    const h = await createHarness({ redisUrl: cluster.url, config: { redisCluster: true }, emulator: { runners: 6, latency: '20..120ms', seed: 3 } });
    expect(isCluster(h.ctx.redis)).toBe(true);
    const env = h.env({ REDIS_CLUSTER: '1' });
    const manifest = manifestOf(h, rows);

    const enqueued = await runCliProcess(['enqueue', manifest, '--batch', 'b'], env);
    expect(enqueued.stderr).not.toMatch(/MOVED|CROSSSLOT|error/i);
    expect(enqueued.code).toBe(0);
    const workers = [spawnCli(['work', '--concurrency', '4'], env), spawnCli(['work', '--concurrency', '4'], env)];
    try {
      // BullMQ finds workers by CLIENT LIST on every node (the producer's "no worker is running" hint).
      await until('both workers to be listed', async () => (await h.ctx.queue.getWorkersCount()) === 2);
      const out = join(h.dir, 'out.csv');
      const exported = await runCliProcess(['export', '--batch', 'b', '--out', out, '--wait'], env);
      expect(exported.code, exported.stderr).toBe(0);
      const lines = await readCsv(out);
      expect(lines.map((line) => line['id'])).toEqual(Array.from({ length: rows }, (_, i) => `r${i}`));
      expect(lines.every((line) => line['status'] === 'ok')).toBe(true);
      const status = await getStatus(h.ctx, 'b');
      expect(status).toMatchObject({ ok: rows, failed: 0, pending: 0, finished: true });
      // Each distinct input paid exactly once, though two processes competed for the rows.
      expect(h.emulator.stats()).toMatchObject({ billed: rows, duplicateBilled: 0, completed: rows });
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      const codes = await Promise.all(workers.map((worker) => worker.exited));
      expect(codes).toEqual([0, 0]);
    }
    for (const worker of workers) expect(worker.output()).not.toMatch(/MOVED|CROSSSLOT|unexpected error/i);

    // One hash tag: every key of the namespace is on one master.
    const perNode = await keysPerNode(cluster, h.prefix);
    expect(perNode.filter((n) => n > 0)).toHaveLength(1);
    // The namespace's own scan finds them all. Two scans agree once keys with a TTL (BullMQ's
    // stalled-check marker lives 30 s) are not expiring between them: compare until they do.
    const liveCluster = cluster;
    await until('both scans to count the same keys', async () => {
      const [onNodes, viaNamespace] = await Promise.all([keysPerNode(liveCluster, h.prefix), namespaceKeys(h)]);
      return viaNamespace.length === onNodes.reduce((a, b) => a + b, 0);
    });

    // Prune finds the batch's keys on that master (SCAN is per node).
    const pruned = await runCliProcess(['prune', '--batch', 'b', '--json'], env);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect((await namespaceKeys(h)).filter((key) => key.includes(':batch:b:'))).toEqual([]);
  }, 120_000);

  it("tells a live worker from a dead one by its connection to the namespace's master", async ({ skip }) => {
    if (!cluster) return skip(failure);
    const h = await createHarness({ redisUrl: cluster.url, config: { redisCluster: true } });
    const id = await connectionIdOf(h.ctx.redis);
    expect(id).toMatch(/^\d+@[0-9a-f]{40}$/);
    expect(await isConnectionAlive(h.ctx.redis, id)).toBe(true);
    const [client, node] = id.split('@');
    expect(await isConnectionAlive(h.ctx.redis, `${Number(client) + 1_000_000}@${node}`)).toBe(false);
    // An id taken through another master (before a failover) cannot be checked: undefined, never "dead".
    expect(await isConnectionAlive(h.ctx.redis, `${client}@${'0'.repeat(40)}`)).toBeUndefined();
    // Another process's connection: alive while open, dead once closed.
    const other = await openContext(h.config);
    const otherId = await connectionIdOf(other.redis);
    expect(otherId.endsWith(`@${node}`)).toBe(true);
    expect(await isConnectionAlive(h.ctx.redis, otherId)).toBe(true);
    await other.close();
    await until('the closed connection to be gone', async () => (await isConnectionAlive(h.ctx.redis, otherId)) === false, 5000);
  });

  it('a worker frozen mid-submit (alive, connection open) makes no other worker pay for its rows', async ({ skip }) => {
    if (!cluster) return skip(failure);
    const rows = 4;
    // Every submit is carried out at once and answered 2 s later: the frozen worker is mid-submit.
    const h = await createHarness({
      redisUrl: cluster.url,
      config: { redisCluster: true },
      emulator: { runners: 8, latency: '50ms', faults: ['slow@submit=1x4'] },
    });
    const env = h.env({ REDIS_CLUSTER: '1' });
    const enqueued = await runCliProcess(['enqueue', manifestOf(h, rows), '--batch', 'f'], env);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    const args = ['work', '--concurrency', '4', '--lock-duration', '1s'];
    // The other worker takes the rows over once their locks expire, and tries each more than once,
    // and must not pay for them again while the frozen one can still save its request ids.
    const { frozen, other } = await freezeMidSubmit(h, rows, args, env);
    await until('the batch to finish', async () => (await getStatus(h.ctx, 'f')).finished, 30_000);
    other.child.kill('SIGTERM');
    frozen.child.kill('SIGTERM');
    await Promise.all([other.exited, frozen.exited]);
    expect((await getStatus(h.ctx, 'f')).ok).toBe(rows);
    expect(h.emulator.stats()).toMatchObject({ accepted: rows, billed: rows, duplicateBilled: 0 });
  }, 60_000);
});
