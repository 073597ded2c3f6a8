import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getStatus } from '../../src/ops/status.js';
import { keySlot } from '../../src/queue/connection.js';
import { createHarness, readCsv, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';
import { clusterUnsupported, startRedisCluster, type LocalRedisCluster } from '../helpers/redis-cluster.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

/** The port of the master serving a slot, as the surviving nodes see it. */
async function masterOf(cluster: LocalRedisCluster, slot: number, skip: number[] = []): Promise<number | undefined> {
  for (const [i, node] of cluster.nodes.entries()) {
    if (skip.includes(cluster.ports[i] ?? -1)) continue;
    try {
      const ranges = await node.cluster('SLOTS');
      const range = ranges.find(([from, to]) => slot >= from && slot <= to);
      return range?.[2]?.[1];
    } catch {
      // That node is down: ask the next.
    }
  }
  return undefined;
}

const missing = clusterUnsupported();

describe.skipIf(missing !== undefined)(`a Redis Cluster failover${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let cluster: LocalRedisCluster | undefined;
  let failure: string | undefined;

  beforeAll(async () => {
    try {
      cluster = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 });
    } catch (error) {
      failure = `a local Redis Cluster could not be started: ${(error as Error).message}`;
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('the namespace\'s master crashes mid-batch: its replica takes over, and the batch finishes', async ({ skip }) => {
    if (!cluster) return skip(failure);
    const rows = 80;
    const h = await createHarness({ redisUrl: cluster.url, config: { redisCluster: true }, emulator: { runners: 4, latency: '100..300ms', seed: 5 } });
    const env = h.env({ REDIS_CLUSTER: '1' });
    const enqueued = await runCliProcess(['enqueue', manifestOf(h, rows), '--batch', 'b'], env);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    const slot = keySlot(h.ctx.keys.batches);
    const master = await masterOf(cluster, slot);
    if (master === undefined) throw new Error(`no master serves slot ${slot}`);
    const nodes = cluster;
    const worker = spawnCli(['work', '--concurrency', '4'], env);
    try {
      await until('a quarter of the rows to be done', async () => (await getStatus(h.ctx, 'b')).ok >= rows / 4, 30_000);
      await nodes.kill(master);
      await until('a replica to take over the slot', async () => {
        const now = await masterOf(nodes, slot, [master]);
        return now !== undefined && now !== master;
      }, 20_000);
      await until('the batch to finish', async () => (await getStatus(h.ctx, 'b')).finished, 60_000);
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    const out = join(h.dir, 'out.csv');
    const exported = await runCliProcess(['export', '--batch', 'b', '--out', out], env);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = await readCsv(out);
    // A pause, not failures: no row used an attempt on the failover.
    expect(worker.output()).not.toMatch(/retrying row|Too many Cluster redirections/);
    expect(lines).toHaveLength(rows);
    expect(lines.filter((line) => line['status'] !== 'ok')).toEqual([]);
    // Replication is asynchronous: a request id saved in the last moment before the crash can be
    // lost with the master, and that row paid again; never more than the rows in flight.
    expect(h.emulator.stats().duplicateBilled).toBeLessThanOrEqual(4);
  }, 120_000);
});
