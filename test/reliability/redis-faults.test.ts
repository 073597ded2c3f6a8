import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { decodeBacklogEntry } from '../../src/queue/backlog.js';
import { rowEntryPages } from '../../src/queue/batch-rows.js';
import { unpackEntries } from '../../src/queue/packed-entries.js';
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
    const workers = [
      spawnCli(['work', '--concurrency', '6', '--lock-duration', '2s'], h.env()),
      spawnCli(['work', '--concurrency', '6', '--lock-duration', '2s'], h.env()),
    ];
    await until('a quarter of the rows', async () => {
      const status = await getStatus(h.ctx, batch);
      return status.ok >= rows / 4;
    });
    await redis.stop();
    // Redis stays down (requests still in flight at fal) until each worker has said what it waits for.
    await until('each worker to say Redis does not answer', () => workers.every((worker) => worker.output().includes('does not answer')));
    await redis.start();
    await until('the batch to finish after the restart', async () => (await getStatus(h.ctx, batch)).finished, 60_000);
    await until('each worker to say Redis answers again', () => workers.every((worker) => worker.output().includes('answers again')));
    for (const worker of workers) worker.child.kill('SIGTERM');
    for (const worker of workers) expect(await worker.exited).toBe(0);
    // The outage is one event to the user: one line when it starts, one when it ends, not a line for
    // each of the worker's connections at each reconnect (that was 4 lines a second).
    for (const worker of workers) {
      const output = worker.output();
      expect(output.match(/Redis at redis:\/\/127\.0\.0\.1:\d+\/? does not answer \([^)]*\): waiting for it/g)).toHaveLength(1);
      expect(output.match(/Redis at redis:\/\/127\.0\.0\.1:\d+\/? answers again, after \d/g)).toHaveLength(1);
      expect(output).not.toMatch(/error=.*(ECONNREFUSED|ECONNRESET|EPIPE|Connection is closed)|reconnecting error=/);
      // A job another worker took over meanwhile is said as what happened, not as a BullMQ error.
      expect(output).not.toContain('Missing key for job');
    }

    const out = join(h.dir, 'out.csv');
    await exportResults(h.ctx, { batch, out });
    const exported = await readCsv(out);
    expect(exported).toHaveLength(rows);
    expect(exported.every((row) => row['status'] === 'ok')).toBe(true);
    // Requests saved before the restart were resumed, not paid again.
    expect(h.emulator.stats().duplicateBilled).toBe(0);
  }, 120_000);

  it('Redis restarted without persistence mid-run: run says Redis lost the batch, nothing stray is written, a rerun pays only for what was lost', async () => {
    const redis = await startPrivateRedis(['--appendonly', 'no']);
    const rows = 40;
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 4, latency: '150..300ms' } });
    const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const manifest = h.file('m.csv', `id,image_url,prompt\n${body}\n`);
    const out = join(h.dir, 'out.csv');
    const run = runCliProcess(['run', manifest, '--out', out, '--concurrency', '4'], h.env());
    let okAtLoss = 0;
    await until('a quarter of the rows', async () => {
      const [batch] = await h.ctx.redis.zrange(h.ctx.keys.batches, '0', '0');
      okAtLoss = batch === undefined ? 0 : (await getStatus(h.ctx, batch).catch(() => ({ ok: 0 }))).ok;
      return okAtLoss >= rows / 4;
    });
    await redis.stop();
    await redis.start();
    const lost = await run;
    expect(lost.code).toBe(1);
    expect(lost.stderr).toContain('Redis keeps nothing on disk (appendonly no, no RDB save points)');
    expect(lost.stderr).toMatch(
      /Redis lost the state of batch "m-[0-9a-f]{8}" while it ran: was Redis restarted without persistence \(no AOF, no RDB\), or flushed\?/,
    );
    expect(lost.stderr).not.toContain('    at ');
    // Answers that came in after the loss wait in the ledger; nothing was written under the lost batch's keys.
    const stray = await h.ctx.redis.keys(`${h.prefix}:*batch:*`);
    expect(stray).toEqual([]);

    const again = await runCliProcess(['run', manifest, '--out', out, '--concurrency', '4'], h.env());
    expect(again.code).toBe(0);
    expect((await readCsv(out)).filter((row) => row['status'] === 'ok')).toHaveLength(rows);
    // What was answered before the loss is paid again (Redis forgot it); nothing else is.
    expect(h.emulator.stats().billed).toBeLessThanOrEqual(rows + okAtLoss + 4);
  }, 120_000);

  it('status of a batch a non-persistent Redis forgot says that Redis may have lost it', async () => {
    const redis = await startPrivateRedis(['--appendonly', 'no']);
    const h = await createHarness({ redisUrl: redis.url });
    const status = await runCliProcess(['status', '--batch', 'gone'], h.env());
    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(
      /No batch named "gone".*This Redis keeps nothing on disk \(no AOF, no RDB\) and started .* ago: a batch enqueued before it last started was lost with it/,
    );
  });

  it('a Redis restart while a producer enqueues: it reconnects and every row gets in, once', async () => {
    const redis = await startPrivateRedis();
    const rows = 50_000;
    const h = await createHarness({ redisUrl: redis.url });
    const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const manifest = h.file('big.csv', `id,image_url,prompt\n${body}\n`);
    // The producer is a process of its own, as users run it: whatever Redis going away does to it
    // (an error, an unhandled rejection in a library) shows in its exit code and output.
    const producer = spawnCli(['enqueue', manifest, '--batch', 'big'], h.env());
    let exited = false;
    void producer.exited.then(() => (exited = true));
    const keys = h.ctx.keys.batch('big');
    await until('the producer to be under way', async () => (await h.ctx.redis.hlen(keys.keys).catch(() => 0)) >= 2000);
    await redis.stop();
    expect(exited).toBe(false);
    await redis.start();
    expect(await producer.exited, producer.output()).toBe(0);
    expect(producer.output()).toContain(`batch big: ${rows} rows read; ${rows} added, 0 already present, 0 rejected`);
    expect(producer.output()).not.toContain('    at ');
    expect(await h.ctx.redis.hlen(keys.keys)).toBe(rows);
    let listed = 0;
    for await (const page of rowEntryPages(h.ctx.redis, keys.rows)) listed += page.length;
    expect(listed).toBe(rows);
    // The queue holds its cap of jobs; every other row waits in the backlog. Each row is in one or
    // the other (a command resent after the restart may store an entry twice: its job id is one).
    const waiting = await h.ctx.queue.getJobs(['waiting'], 0, -1);
    expect(waiting).toHaveLength(h.config.maxWaiting);
    const backlog = (await h.ctx.redis.lrangeBuffer(keys.backlog, 0, -1)).flatMap((element) =>
      unpackEntries(element).map((entry) => decodeBacklogEntry('big', entry).k),
    );
    expect(new Set([...waiting.map((job) => job.data.k as string), ...backlog]).size).toBe(rows);
  }, 180_000);

  it('warns, loudly, when Redis may evict keys (maxmemory-policy other than noeviction)', async () => {
    const redis = await startPrivateRedis(['--maxmemory', '100mb', '--maxmemory-policy', 'allkeys-lru']);
    const h = await createHarness({ redisUrl: redis.url });
    const result = await runCliProcess(['status'], h.env());
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(
      'Redis maxmemory-policy is "allkeys-lru": under memory pressure Redis may delete queued jobs and results. Set it to noeviction',
    );
    const quiet = await runCliProcess(['status'], h.env({ REDIS_URL: (await startPrivateRedis()).url }));
    expect(quiet.stderr).not.toContain('maxmemory-policy');
  }, 30_000);
});
