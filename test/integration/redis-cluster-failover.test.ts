import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getStatus } from '../../src/ops/status.js';
import { keySlot } from '../../src/queue/connection.js';
import { createHarness, readCsv, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';
import { clusterUnsupported, useRedisCluster } from '../helpers/redis-cluster.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

const missing = clusterUnsupported();

describe.skipIf(missing !== undefined)(`a Redis Cluster failover${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const suite = useRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 });

  it("the namespace's master crashes mid-batch: its replica takes over, and the batch finishes", async ({ skip }) => {
    const cluster = suite.cluster;
    if (!cluster) return skip(suite.failure);
    const rows = 80;
    const h = await createHarness({ redisUrl: cluster.url, config: { redisCluster: true }, emulator: { runners: 4, latency: '100..300ms', seed: 5 } });
    const env = h.env({ REDIS_CLUSTER: '1' });
    const enqueued = await runCliProcess(['enqueue', manifestOf(h, rows), '--batch', 'b'], env);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    const slot = keySlot(h.ctx.keys.batches);
    const master = await cluster.masterOf(slot);
    if (master === undefined) throw new Error(`no master serves slot ${slot}`);
    const nodes = cluster;
    const worker = spawnCli(['work', '--concurrency', '4'], env);
    try {
      await until('a quarter of the rows to be done', async () => (await getStatus(h.ctx, 'b')).ok >= rows / 4, 30_000);
      await nodes.kill(master);
      await until(
        'a replica to take over the slot',
        async () => {
          const now = await nodes.masterOf(slot, [master]);
          return now !== undefined && now !== master;
        },
        20_000,
      );
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
