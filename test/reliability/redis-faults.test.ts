import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus } from '../../src/ops/status.js';
import { createHarness, readCsv, runCliProcess, spawnCli, startPrivateRedis, until } from '../helpers/harness.js';

describe('Redis faults', () => {
  it('a Redis restart mid-run: workers reconnect, the batch completes, nothing is lost or paid twice', async () => {
    const redis = await startPrivateRedis();
    const rows = 80;
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 6, latency: '100..300ms' } });
    const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', `id,image_url,prompt\n${body}\n`) });
    const workers = [spawnCli(['work', '--concurrency', '6', '--lock-duration', '2s'], h.env()), spawnCli(['work', '--concurrency', '6', '--lock-duration', '2s'], h.env())];
    await until('a quarter of the rows', async () => {
      const status = await getStatus(h.ctx, batch);
      return status.ok >= rows / 4;
    });
    await redis.stop();
    await new Promise((resolve) => setTimeout(resolve, 500)); // Redis down for a while, requests still in flight at fal
    await redis.start();
    await until('the batch to finish after the restart', async () => (await getStatus(h.ctx, batch)).finished, 60_000);
    for (const worker of workers) worker.child.kill('SIGTERM');
    for (const worker of workers) expect(await worker.exited).toBe(0);

    const out = join(h.dir, 'out.csv');
    await exportResults(h.ctx, { batch, out });
    const exported = await readCsv(out);
    expect(exported).toHaveLength(rows);
    expect(exported.every((row) => row['status'] === 'ok')).toBe(true);
    // Requests saved before the restart were resumed, not paid again.
    expect(h.emulator.stats().duplicateBilled).toBe(0);
  }, 120_000);

  it('a Redis restart while a producer enqueues: it reconnects and every row gets in, once', async () => {
    const redis = await startPrivateRedis();
    const rows = 50_000;
    const h = await createHarness({ redisUrl: redis.url, config: { enqueueChunk: 100 } });
    const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const manifest = h.file('big.csv', `id,image_url,prompt\n${body}\n`);
    let progressed = 0;
    let finished = false;
    const enqueuing = enqueueManifest(h.ctx, { manifest, batch: 'big', onProgress: (p) => (progressed = p.rows) });
    void enqueuing.then(() => (finished = true));
    await until('the producer to be under way', () => progressed >= 2000);
    await redis.stop();
    expect(finished).toBe(false);
    await redis.start();
    const summary = await enqueuing;
    expect(summary).toMatchObject({ rows, added: rows, rejected: 0 });
    const keys = h.ctx.keys.batch('big');
    expect(await h.ctx.redis.hlen(keys.keys)).toBe(rows);
    expect(await h.ctx.redis.llen(keys.rows)).toBe(rows);
    expect(await h.ctx.queue.getWaitingCount()).toBe(rows);
  }, 60_000);

  it('warns, loudly, when Redis may evict keys (maxmemory-policy other than noeviction)', async () => {
    const redis = await startPrivateRedis(['--maxmemory', '100mb', '--maxmemory-policy', 'allkeys-lru']);
    const h = await createHarness({ redisUrl: redis.url });
    const result = await runCliProcess(['status'], h.env());
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('Redis maxmemory-policy is "allkeys-lru": under memory pressure Redis may delete queued jobs and results. Set it to noeviction');
    const quiet = await runCliProcess(['status'], h.env({ REDIS_URL: (await startPrivateRedis()).url }));
    expect(quiet.stderr).not.toContain('maxmemory-policy');
  }, 30_000);
});
