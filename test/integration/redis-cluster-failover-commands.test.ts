import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getStatus } from '../../src/ops/status.js';
import { silentLogger } from '../../src/log.js';
import { checkEvictionPolicy, checkPersistence, clusterFailure, connectRedis, keySlot, onHomeNode, scanKeys } from '../../src/queue/connection.js';
import { createHarness, FAL_KEY, readCsv, runCliProcess, spawnCli, until, type Harness, type SpawnedCli } from '../helpers/harness.js';
import { freePort } from '../helpers/global-redis.js';
import { clusterUnsupported, useRedisCluster } from '../helpers/redis-cluster.js';

function manifestOf(h: Harness, name: string, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `${name}${i},https://example.com/${name}/${i}.jpg,p${i}`).join('\n');
  return h.file(`${name}.csv`, `id,image_url,prompt\n${body}\n`);
}

/** What a command printed, with the lines every command on this throwaway Cluster prints (nothing on disk) left out. */
function said(output: string): string {
  return output.replace(/^.*Redis keeps nothing on disk.*\n/gm, '');
}

const missing = clusterUnsupported();

describe.skipIf(missing !== undefined)(`commands started during and after a Redis Cluster failover${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const suite = useRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 });

  it('export --wait, status and enqueue in new processes wait out the failover and work after it, with live and dead seeds', async ({ skip }) => {
    const c = suite.cluster;
    if (!c) return skip(suite.failure);
    const rows = 40;
    const h = await createHarness({ redisUrl: c.url, config: { redisCluster: true }, emulator: { runners: 4, latency: '50..150ms', seed: 7 } });
    const env = h.env({ REDIS_CLUSTER: '1' });
    const enqueued = await runCliProcess(['enqueue', manifestOf(h, 'b', rows), '--batch', 'b'], env);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    const slot = keySlot(h.ctx.keys.batches);
    const master = await c.masterOf(slot);
    const replica = master === undefined ? undefined : await c.replicaOf(master);
    if (master === undefined || replica === undefined) throw new Error(`no master with a replica serves slot ${slot}`);
    // The replica takes over only when told: the Cluster stays down (cluster_state:fail, the dead
    // master flagged fail) for as long as the test needs, as it does for cluster-node-timeout and
    // the election in a real failover.
    await c.node(replica).config('SET', 'cluster-replica-no-failover', 'yes');
    const live = c.ports.filter((port) => port !== master);
    const liveUrl = `redis://${live.map((port) => `127.0.0.1:${port}`).join(',')}`;
    // The dead master first: a seed that is down must not matter.
    const withDeadUrl = `redis://${[master, ...live].map((port) => `127.0.0.1:${port}`).join(',')}`;

    // A client of the library that waits only a second for a failover.
    const impatient = await connectRedis(withDeadUrl, { cluster: true, home: h.ctx.keys.batches, failoverWaitMs: 1000 });
    const worker = spawnCli(['work', '--concurrency', '4'], env);
    const during: SpawnedCli[] = [];
    try {
      await until('a quarter of the rows to be done', async () => (await getStatus(h.ctx, 'b')).ok >= rows / 4, 30_000);
      await c.kill(master);
      await until(
        'the Cluster to flag the master failed and go down',
        async () =>
          (await Promise.all(live.map(async (port) => String(await c.node(port).cluster('INFO'))))).every((info) => /^cluster_state:fail\b/m.test(info)),
        30_000,
      );

      // The library gives up after its wait, with a clear error.
      const keyed = await impatient.zcard(h.ctx.keys.batches).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(clusterFailure(keyed)?.message).toMatch(
        /^The Redis Cluster did not serve falbatch's keys while falbatch waited \(.*\): a master is down and no replica took its slots over/,
      );
      await expect(onHomeNode(impatient, (node) => node.time())).rejects.toThrow(
        `The Redis Cluster did not serve falbatch's keys (hash slot ${slot}) for 1.0s`,
      );
      // Per-node work leaves out the dead master (still a slot holder in ioredis' list), and says so once.
      const warnings: string[] = [];
      const log = { ...silentLogger, warn: (message: string) => warnings.push(message) };
      await Promise.all([checkPersistence(impatient, log), checkEvictionPolicy(impatient, log)]);
      const scanned: string[] = [];
      for await (const keys of scanKeys(impatient, '*', 1000, log)) scanned.push(...keys);
      // The scan ends (the dead master is not asked), finding none of the namespace's keys: they all live on the dead master's slot.
      expect(scanned.filter((key) => key.startsWith(h.prefix))).toEqual([]);
      expect(warnings.filter((warning) => warning.includes(`${master}`))).toEqual([
        `Redis Cluster node 127.0.0.1:${master} is left out of per-node checks and scans (flagged fail by the Cluster); the other nodes are used.`,
      ]);
      expect(warnings.find((warning) => warning.startsWith('Redis keeps nothing on disk'))).toMatch(
        new RegExp(`^Redis keeps nothing on disk on (?!.*:${master}\\b)`),
      );
      await expect(connectRedis(liveUrl, { cluster: true, failoverWaitMs: 1000 })).rejects.toThrow(
        "The Redis Cluster did not serve falbatch's keys for 1.0s (cluster_state:fail)",
      );

      // New processes while the Cluster is down: they connect and wait, saying what for.
      const out = join(h.dir, 'during.csv');
      during.push(
        spawnCli(['export', '--batch', 'b', '--out', out, '--wait'], { ...env, REDIS_URL: withDeadUrl }),
        spawnCli(['status', '--batch', 'b'], { ...env, REDIS_URL: liveUrl }),
        spawnCli(['enqueue', manifestOf(h, 'c', 5), '--batch', 'c'], { ...env, REDIS_URL: withDeadUrl }),
      );
      const waiting =
        /The Redis Cluster is failing over \(master 127\.0\.0\.1:\d+ is down, cluster_state:fail\): commands wait up to 1m00s for a replica to take over/;
      await until(
        'each new command to be waiting, or to have ended',
        () => during.every((cli) => waiting.test(cli.output()) || cli.child.exitCode !== null),
        30_000,
      );
      for (const cli of during) expect(said(cli.output())).toMatch(waiting);

      await c.node(replica).cluster('FAILOVER', 'FORCE');
      const codes = await Promise.all(during.map((cli) => cli.exited));
      for (const [i, cli] of during.entries()) {
        const output = said(cli.output());
        expect(codes[i], output).toBe(0);
        expect(output).not.toMatch(/unexpected error|Too many Cluster redirections|CLUSTERDOWN|\n\s+at /);
      }
      expect(said(during[0]?.output() ?? '')).toMatch(
        new RegExp(`seed node 127\\.0\\.0\\.1:${master} \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${master}\\) did not answer`),
      );
      const lines = await readCsv(out);
      expect(lines).toHaveLength(rows);
      expect(lines.filter((line) => line['status'] !== 'ok')).toEqual([]);
      expect(during[1]?.output()).toMatch(/batch b \(/);
      expect(during[2]?.output()).toMatch(/batch c: 5 rows read; 5 added/);

      // After the failover, the dead master stays in the Cluster's node table (flagged fail) until
      // an operator forgets it: fresh commands work, through any live seed.
      const after = await Promise.all([
        runCliProcess(['status', '--batch', 'b'], { ...env, REDIS_URL: withDeadUrl }),
        runCliProcess(['export', '--batch', 'c', '--out', join(h.dir, 'after.csv'), '--wait'], { ...env, REDIS_URL: liveUrl }),
        runCliProcess(['enqueue', manifestOf(h, 'd', 3), '--batch', 'd'], { ...env, REDIS_URL: withDeadUrl }),
      ]);
      // Prune's SCAN runs on every master but the dead one.
      after.push(await runCliProcess(['prune', '--batch', 'b', '--json'], { ...env, REDIS_URL: withDeadUrl }));
      for (const result of after) {
        expect(result.code, result.stderr).toBe(0);
        expect(result.stderr).not.toMatch(/unexpected error|Too many Cluster redirections|CLUSTERDOWN|\n\s+at /);
      }
      expect(after[0]?.stdout).toMatch(/batch b \(finished\)/);
      expect((await readCsv(join(h.dir, 'after.csv'))).filter((line) => line['status'] === 'ok')).toHaveLength(5);
      expect(after[2]?.stdout).toMatch(/batch d: 3 rows read; 3 added/);
      await expect(getStatus(h.ctx, 'b')).rejects.toThrow('No batch named "b"');
    } finally {
      impatient.disconnect();
      // SIGKILL: after a Cluster outage this long, a graceful stop takes 35 s (BullMQ's schedule
      // ticks worker does not close; a separate problem, as it was before this test).
      worker.child.kill('SIGKILL');
      for (const cli of during) cli.child.kill('SIGTERM');
      await Promise.all([worker.exited, ...during.map((cli) => cli.exited)]);
    }
    expect(worker.output()).not.toMatch(/unexpected error|retrying row/);
  }, 150_000);
});

describe('seed nodes of a Redis Cluster that none answers', () => {
  it('fails at once, naming each seed with its reason, and no stack', async () => {
    const ports = [await freePort(), await freePort()];
    const url = `redis://${ports.map((port) => `127.0.0.1:${port}`).join(',')}`;
    const result = await runCliProcess(['status'], { PATH: process.env['PATH'] ?? '', FAL_KEY, REDIS_URL: url, REDIS_CLUSTER: '1' });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `falbatch: Cannot reach the Redis Cluster at ${url} (no seed node answered: ${ports.map((port) => `127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port})`).join('; ')}). ` +
        'REDIS_URL names its seed nodes, comma-separated (redis://[:password@]host:port,host:port,…); every node must be reachable at the address it announces (cluster-announce-ip behind NAT or in containers).\n',
    );
  });
});
