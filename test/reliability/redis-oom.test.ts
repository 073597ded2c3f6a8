import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus } from '../../src/ops/status.js';
import { createFalCaller, type FalCaller } from '../../src/fal/fal-caller.js';
import type { Logger } from '../../src/log.js';
import { startScheduler } from '../../src/ops/start-scheduler.js';
import { createHarness, readCsv, runCliProcess, spawnCli, startPrivateRedis, until, type Harness } from '../helpers/harness.js';

/** A logger that keeps every line (level and message) for the test to count. */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    void lines.push(`${level} ${message}${fields?.['error'] ? `: ${String(fields['error'])}` : ''}`);
  return { lines, debug: () => undefined, info: at('info'), warn: at('warn'), error: at('error') };
}

/** A private Redis that can be made full (maxmemory below what it holds, noeviction) and roomy again. */
async function fullableRedis(): Promise<{ url: string; fill(): Promise<void>; free(): Promise<void> }> {
  const redis = await startPrivateRedis(['--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction']);
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  onTestFinished(() => void admin.disconnect());
  return {
    url: redis.url,
    fill: async () => void (await admin.config('SET', 'maxmemory', '1')),
    free: async () => void (await admin.config('SET', 'maxmemory', '0')),
  };
}

function manifest(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

/** Every row ok, answered by exactly one paid call and in its first attempt; nothing in BullMQ's failed set. */
async function expectEveryRowOkOnce(h: Harness, batch: string, rows: number): Promise<void> {
  expect(await h.ctx.queue.getJobCountByTypes('failed')).toBe(0);
  const out = join(h.dir, 'out.csv');
  await exportResults(h.ctx, { batch, out });
  const exported = await readCsv(out);
  expect(exported).toHaveLength(rows);
  expect(exported.filter((row) => row['status'] === 'ok')).toHaveLength(rows);
  expect(exported.filter((row) => row['attempts'] !== '1')).toEqual([]);
  expect(h.emulator.stats().billed).toBe(rows);
  expect(h.emulator.stats().duplicateBilled).toBe(0);
}

describe('Redis out of memory (maxmemory reached, noeviction)', () => {
  it('a batch under a worker while Redis is full for a while: no attempt spent, no row stranded, none paid twice, said once', async () => {
    const redis = await fullableRedis();
    const rows = 60;
    const log = recordingLogger();
    // Locks shorter than the full spell: BullMQ cannot renew them while Redis is full.
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 8, latency: '200..400ms' }, config: { lockDurationMs: 1000 }, log });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifest(h, rows) });
    // Redis becomes full between a submit fal accepted (paid) and the save of its request id.
    const real = createFalCaller({ credentials: h.config.falKey, baseUrl: h.config.falBaseUrl, callTimeoutMs: h.config.callTimeoutMs });
    let submits = 0;
    let filled: Promise<void> | undefined;
    const fal: FalCaller = {
      ...real,
      submit: async (...args) => {
        const accepted = await real.submit(...args);
        if (++submits === 16) await (filled = redis.fill());
        return accepted;
      },
    };
    const worker = await h.startWorker({ concurrency: 8, fal });
    await until('Redis made full after a submit', () => filled !== undefined);
    await filled;
    const billedAtFull = h.emulator.stats().billed;
    // Full while the requests in flight finish at fal (paid: their answers must be kept), and for
    // longer than the workers' locks.
    await until('requests finishing at fal while Redis is full', () => h.emulator.stats().billed >= billedAtFull + 6);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await redis.free();
    await until(
      'every row ended, or nothing left to run',
      async () => {
        const status = await getStatus(h.ctx, batch);
        const counts = await h.ctx.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return status.pending === 0 || Object.values(counts).every((n) => n === 0);
      },
      60_000,
    );
    await worker.close();
    expect((await getStatus(h.ctx, batch)).pending).toBe(0);
    await expectEveryRowOkOnce(h, batch, rows);
    // Said once when it started (with what to do), once when it ended; nothing else.
    expect(log.lines.filter((line) => line.startsWith('error Redis is out of memory'))).toHaveLength(1);
    expect(log.lines.join('\n')).toContain('raise maxmemory');
    expect(log.lines.filter((line) => line.includes('Redis accepts writes again'))).toHaveLength(1);
    expect(log.lines, log.lines.join('\n')).toHaveLength(2);
  }, 120_000);

  it('a worker closed while Redis is full stops within its grace period; another finishes the batch once Redis has room', async () => {
    const redis = await fullableRedis();
    const rows = 30;
    const log = recordingLogger();
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 6, latency: '300..500ms' }, config: { lockDurationMs: 1000 }, log });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifest(h, rows) });
    const first = await h.startWorker({ concurrency: 6 });
    await until('a few rows answered', async () => (await getStatus(h.ctx, batch)).ok >= 6);
    await redis.fill();
    await until('the worker saying Redis is full', () => log.lines.some((line) => line.startsWith('error Redis is out of memory')));
    await first.close(200);
    await redis.free();
    const second = await h.startWorker({ concurrency: 6 });
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 60_000);
    await second.close();
    const out = join(h.dir, 'out.csv');
    await exportResults(h.ctx, { batch, out });
    expect((await readCsv(out)).filter((row) => row['status'] === 'ok')).toHaveLength(rows);
    expect(await h.ctx.queue.getJobCountByTypes('failed')).toBe(0);
    // Rows handed over resume their saved requests; only one stopped between a submit and its save
    // (Redis refusing it) may be paid again: at most the rows in flight.
    expect(h.emulator.stats().billed).toBeLessThanOrEqual(rows + 6);
  }, 120_000);

  it('a batch filling Redis by itself (maxmemory a little above what it holds): the same, once Redis is given room', async () => {
    const redis = await fullableRedis();
    const rows = 400;
    const log = recordingLogger();
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 8, latency: '20..60ms' }, log });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifest(h, rows) });
    // Room for some of the results, not all: Redis fills up under the running batch, at the brink
    // (a row ending deletes a little as it writes).
    const info = await h.ctx.redis.info('memory');
    const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
    await h.ctx.redis.config('SET', 'maxmemory', String(used + 150_000));
    const worker = await h.startWorker({ concurrency: 8 });
    await until('Redis full under the batch', () => log.lines.some((line) => line.startsWith('error Redis is out of memory')), 60_000);
    const okWhenFull = (await getStatus(h.ctx, batch)).ok;
    expect(okWhenFull).toBeLessThan(rows);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await redis.free();
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 60_000);
    await worker.close();
    await expectEveryRowOkOnce(h, batch, rows);
    expect(log.lines.filter((line) => line.startsWith('error Redis is out of memory'))).toHaveLength(1);
    expect(log.lines.length, log.lines.join('\n')).toBeLessThanOrEqual(4);
  }, 120_000);

  it('a `work` process meeting a full Redis writes a few lines, not one per refused write, and finishes the batch; `export --wait` returns', async () => {
    const redis = await fullableRedis();
    const rows = 40;
    // Auto concurrency and a backlog (rows past --max-waiting): their periodic writes are refused too.
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 6, latency: '100..300ms' }, config: { maxWaiting: 10 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifest(h, rows) });
    const work = spawnCli(['work'], h.env());
    const exported = runCliProcess(['export', '--batch', batch, '--wait', '--out', join(h.dir, 'waited.csv')], h.env());
    await until('a few rows answered', async () => (await getStatus(h.ctx, batch)).ok >= 6);
    await redis.fill();
    await until('the worker saying so', () => work.output().includes('Redis is out of memory'));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await redis.free();
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 60_000);
    // `export --wait` waited through it, and wrote every row.
    const waited = await exported;
    expect(waited.code, waited.stderr).toBe(0);
    expect((await readCsv(join(h.dir, 'waited.csv'))).filter((row) => row['status'] === 'ok')).toHaveLength(rows);
    work.child.kill('SIGTERM');
    expect(await work.exited).toBe(0);
    const lines = work
      .output()
      .split('\n')
      .filter((line) => line.trim() !== '');
    expect(
      lines.filter((line) => line.includes('Redis is out of memory')),
      lines.join('\n'),
    ).toHaveLength(1);
    expect(
      lines.filter((line) => / (warn|error) /.test(line)),
      lines.join('\n'),
    ).toHaveLength(2);
    expect(
      lines.filter((line) => /retrying|OOM/.test(line)),
      lines.join('\n'),
    ).toEqual([]);
    await expectEveryRowOkOnce(h, batch, rows);
  }, 120_000);

  it("the schedule ticks' server (in every `work` process) does not warn of each refused write of BullMQ's while Redis is full", async () => {
    // Seen from outside: a `work` process through a 95 s spell logged `scheduler error
    // error="OOM command not allowed …"` every 5 s, beside the row worker's one plain line.
    const redis = await fullableRedis();
    const lines: string[] = [];
    const at = (level: string) => (message: string, fields?: Record<string, unknown>) => void lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
    const h = await createHarness({ redisUrl: redis.url, log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } });
    const scheduler = await startScheduler(h.ctx);
    onTestFinished(() => scheduler.close(0));
    await redis.fill();
    await until("BullMQ's scheduler worker meeting the full Redis", () => lines.some((line) => line.includes('OOM')), 60_000);
    await redis.free();
    expect(
      lines.filter((line) => line.includes('OOM') && !line.startsWith('debug')),
      lines.join('\n'),
    ).toEqual([]);
  }, 90_000);

  it('a `work` process started while Redis is full waits, and works the batch once Redis has room', async () => {
    const redis = await fullableRedis();
    const rows = 20;
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 4, latency: '50..100ms' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifest(h, rows) });
    await redis.fill();
    const work = spawnCli(['work'], h.env());
    await until('the worker saying Redis is full', () => /Redis is out of memory \(maxmemory reached\)/.test(work.output()));
    expect((await getStatus(h.ctx, batch)).ok).toBe(0);
    await redis.free();
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 60_000);
    work.child.kill('SIGTERM');
    expect(await work.exited).toBe(0);
    expect(work.output()).not.toContain('    at ');
    await expectEveryRowOkOnce(h, batch, rows);
  }, 120_000);

  it('`run` through a full spell of Redis: it waits, goes on by itself, and ends with every row ok, paid once', async () => {
    const redis = await fullableRedis();
    const rows = 40;
    const h = await createHarness({ redisUrl: redis.url, emulator: { runners: 6, latency: '100..300ms' } });
    const out = join(h.dir, 'out.csv');
    const run = runCliProcess(['run', manifest(h, rows), '--out', out, '--batch', 'full-run', '--concurrency', '6'], h.env());
    await until('a few rows answered', async () => (await h.ctx.redis.hget(h.ctx.keys.batch('full-run').counts, 'ok').catch(() => null)) !== null);
    await redis.fill();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await redis.free();
    const result = await run;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr.match(/Redis is out of memory/g)).toHaveLength(1);
    expect(result.stderr).not.toContain('    at ');
    expect((await readCsv(out)).filter((row) => row['status'] === 'ok')).toHaveLength(rows);
    expect(h.emulator.stats().billed).toBe(rows);
  }, 120_000);

  it('enqueue into a full Redis: a plain message with what to do, exit 1, no stack; status still shows the batches and says Redis is full; prune works', async () => {
    const redis = await fullableRedis();
    const h = await createHarness({ redisUrl: redis.url });
    const file = manifest(h, 30);
    await enqueueManifest(h.ctx, { manifest: file, batch: 'before' });
    await redis.fill();
    const enqueue = await runCliProcess(['enqueue', file, '--batch', 'full'], h.env());
    expect(enqueue.code, enqueue.stderr).toBe(1);
    expect(enqueue.stderr).toContain('falbatch: Redis is out of memory: it reached its maxmemory and refuses writes');
    expect(enqueue.stderr).toContain('raise maxmemory');
    expect(enqueue.stderr).toContain('falbatch prune');
    expect(enqueue.stderr).not.toContain('unexpected error');
    expect(enqueue.stderr).not.toContain('    at ');
    for (const args of [['status'], ['status', '--batch', 'before']]) {
      const status = await runCliProcess(args, h.env());
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toContain('batch before (running)');
      expect(status.stdout).toContain('30 pending');
      expect(status.stderr).toMatch(/Redis is out of memory \(.* used of its maxmemory .*\): it refuses writes/);
      expect(status.stderr).not.toContain('    at ');
    }
    // What frees room works on a full Redis.
    const pruned = await runCliProcess(['prune', '--batch', 'before'], h.env());
    expect(pruned.code, pruned.stderr).toBe(0);
    expect((await runCliProcess(['status'], h.env())).stdout).not.toContain('batch before');
    await redis.free();
    const again = await runCliProcess(['enqueue', file, '--batch', 'full'], h.env());
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
  }, 60_000);
});
