import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { backlogLength, topUpQueue, waitingJobs } from '../../src/queue/backlog.js';
import { exportResults } from '../../src/results/export.js';
import { unpackEntries } from '../../src/queue/packed-entries.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { pauseBatch, resumeBatch } from '../../src/ops/control.js';
import { createHarness, readCsv, ROOT, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';
import { silentLogger } from '../../src/log.js';

function manifestOf(h: Harness, rows: number, name = 'm.csv', tag = ''): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${tag}${i}.jpg,p${tag}${i}`).join('\n');
  return h.file(name, `id,image_url,prompt\n${body}\n`);
}

/** Every job id in the queue (any state), to check none is there twice and none is missing. */
async function jobIds(h: Harness): Promise<string[]> {
  const jobs = await h.ctx.queue.getJobs(['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed'], 0, -1);
  return jobs.map((job) => job.id ?? '');
}

describe('enqueue never waits for workers; Redis holds at most --max-waiting jobs', () => {
  it('an enqueue beside a worker still starting (run) counts the workers once it has started: it never says none is running', async () => {
    const lines: string[] = [];
    const log = {
      ...silentLogger,
      info: (message: string) => void lines.push(`info ${message}`),
      warn: (message: string) => void lines.push(`warn ${message}`),
    };
    const h = await createHarness({ emulator: { runners: 8 }, config: { maxWaiting: 5, enqueueChunk: 10 }, log });
    let started!: () => void;
    let waitedOn = false;
    const workerStarting = new Promise<void>((resolve) => (started = resolve));
    // Tells when the enqueue waits on it (`await` and `catch` go through `then`).
    const then = workerStarting.then.bind(workerStarting);
    // biome-ignore lint/suspicious/noThenProperty: the test watches when the enqueue waits on this promise
    workerStarting.then = ((...args: Parameters<typeof then>) => ((waitedOn = true), then(...args))) as typeof then;
    const enqueuing = enqueueManifest(h.ctx, { manifest: manifestOf(h, 40), batch: 'capped', workerStarting });
    // The queue reached its cap with no worker yet: the enqueue waits for the one starting before it counts workers.
    await until('the enqueue to wait for the worker starting', () => waitedOn, 10_000);
    expect(await waitingJobs(h.ctx)).toBe(5);
    const worker = await h.startWorker({ concurrency: 4 });
    try {
      started();
      await enqueuing;
      expect(lines.filter((line) => line.includes('its cap (--max-waiting 5)'))).toEqual([expect.stringMatching(/^info /)]);
      expect(lines.join('\n')).not.toContain('No worker is running');
      await waitForBatch(h.ctx, 'capped');
    } finally {
      await worker.close();
    }
  });

  it('the CLI stores every row with no worker running, says once that the cap is reached, and a worker started later answers each row once', async () => {
    const rows = 600;
    const h = await createHarness({ emulator: { runners: 16 } });
    const manifest = manifestOf(h, rows);
    const enqueued = await runCliProcess(['enqueue', manifest, '--batch', 'big', '--max-waiting', '25'], h.env());
    expect(enqueued.code).toBe(0);
    const output = enqueued.stdout + enqueued.stderr;
    expect(output).toContain(`${rows} rows read; ${rows} added`);
    expect(output).toContain(`${rows - 25} of the rows to call wait in Redis as compact rows`);
    // Said once, with what to do.
    expect(output.match(/its cap \(--max-waiting 25\)/g)).toHaveLength(1);
    expect(output).toMatch(/No worker is running: start `falbatch work`/);
    expect(await waitingJobs(h.ctx)).toBe(25);
    expect(await backlogLength(h.ctx)).toBe(rows - 25);
    // status counts them as waiting.
    expect(await getStatus(h.ctx, 'big')).toMatchObject({ rows, pending: rows, ok: 0, backlog: rows - 25 });

    // The worker tops the queue up as it drains it, and never lets it hold more than the cap.
    const worker = spawnCli(['work', '--concurrency', '8'], h.env());
    let most = 0;
    await until(
      'the batch to finish',
      async () => {
        most = Math.max(most, await waitingJobs(h.ctx));
        return (await getStatus(h.ctx, 'big')).finished;
      },
      60_000,
    );
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(most).toBeLessThanOrEqual(25);
    const out = join(h.dir, 'out.csv');
    await exportResults(h.ctx, { batch: 'big', out });
    const exported = await readCsv(out);
    expect(exported.map((r) => r['id'])).toEqual(Array.from({ length: rows }, (_, i) => `r${i}`));
    expect(exported.every((r) => r['status'] === 'ok')).toBe(true);
    expect(h.emulator.stats()).toMatchObject({ billed: rows, duplicateBilled: 0 });
    expect(await backlogLength(h.ctx)).toBe(0);
    expect(await h.ctx.redis.exists(h.ctx.keys.backlog, h.ctx.keys.batch('big').backlog)).toBe(0);
  }, 90_000);

  it('enqueueing the same manifest again while its rows wait in the backlog adds nothing', async () => {
    const h = await createHarness({ config: { maxWaiting: 10, enqueueChunk: 20 } });
    const manifest = manifestOf(h, 100);
    expect(await enqueueManifest(h.ctx, { manifest, batch: 'again' })).toMatchObject({ added: 100, stored: 90 });
    expect(await enqueueManifest(h.ctx, { manifest, batch: 'again' })).toMatchObject({ added: 0, present: 100, stored: 90 });
    expect(await waitingJobs(h.ctx)).toBe(10);
    expect(await backlogLength(h.ctx)).toBe(90);
  });

  it('takes part of a packed chunk at a time, and reads a backlog and rows list an earlier version wrote one row an element', async () => {
    const h = await createHarness({ config: { maxWaiting: 7, enqueueChunk: 20 } });
    const manifest = manifestOf(h, 100);
    // Stored 20 rows to an element: the first top-up took 7 of the first chunk's.
    expect(await enqueueManifest(h.ctx, { manifest, batch: 'packed' })).toMatchObject({ added: 100, stored: 93 });
    const keys = h.ctx.keys.batch('packed');
    expect(await h.ctx.redis.llen(keys.backlog)).toBeLessThan(10);
    expect(await getStatus(h.ctx, 'packed')).toMatchObject({ rows: 100, backlog: 93 });
    // What an earlier version wrote: one JSON entry per element, no row counters.
    const rewrite = async (key: string): Promise<void> => {
      const entries = (await h.ctx.redis.lrangeBuffer(key, 0, -1)).flatMap(unpackEntries);
      const ttl = await h.ctx.redis.pttl(key);
      await h.ctx.redis
        .multi()
        .del(key)
        .rpush(key, ...entries)
        .pexpire(key, ttl)
        .exec();
    };
    const head = Number(await h.ctx.redis.hget(keys.meta, 'backlog_head'));
    await rewrite(keys.rows);
    await rewrite(keys.backlog);
    await h.ctx.redis.ltrim(keys.backlog, head, -1);
    await h.ctx.redis.hdel(keys.meta, 'backlog_head', 'backlog_left');
    expect(await backlogLength(h.ctx)).toBe(93);
    // Drained 7 at a time, each row becomes a job once, and the export lists every row in order.
    const queued: string[] = [];
    for (let round = 0; (await backlogLength(h.ctx)) > 0; round++) {
      expect(round).toBeLessThan(20);
      queued.push(...(await jobIds(h)));
      await h.ctx.queue.drain();
      await topUpQueue(h.ctx);
    }
    queued.push(...(await jobIds(h)));
    expect(queued).toHaveLength(100);
    expect(new Set(queued).size).toBe(100);
    expect(await h.ctx.redis.exists(keys.backlog)).toBe(0);
    expect(await h.ctx.redis.hget(keys.meta, 'backlog_taken')).toBe('100');
    const out = join(h.dir, 'packed.csv');
    await exportResults(h.ctx, { batch: 'packed', out });
    expect((await readCsv(out)).map((r) => r['id'])).toEqual(Array.from({ length: 100 }, (_, i) => `r${i}`));
  });

  it('serves the backlog of the highest-priority batch first, and leaves a paused batch in its backlog until it is resumed', async () => {
    const h = await createHarness({ config: { maxWaiting: 5, enqueueChunk: 10 } });
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, 30, 'low.csv', 'low'), batch: 'low', settings: { priority: 2 } });
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, 30, 'high.csv', 'high'), batch: 'high', settings: { priority: 9 } });
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, 30, 'held.csv', 'held'), batch: 'held', settings: { priority: 10 } });
    await pauseBatch(h.ctx, 'held');
    // Drain the queue by hand: what the top-ups add next tells the order.
    const served: string[] = [];
    for (let round = 0; round < 12; round++) {
      const jobs = await h.ctx.queue.getJobs(['waiting', 'prioritized'], 0, -1);
      for (const job of jobs) {
        served.push(job.data.b as string);
        await job.remove();
      }
      await topUpQueue(h.ctx, { cap: 5 });
    }
    const order = served.filter((b, i) => i === 0 || served[i - 1] !== b);
    // The first 5 of `low` were jobs before `high` existed; then all of `high`, then the rest of `low`. `held` waits.
    expect(order).toEqual(['low', 'high', 'low']);
    expect(served.filter((b) => b === 'high')).toHaveLength(30);
    expect(served.filter((b) => b === 'held')).toHaveLength(0);
    expect(await h.ctx.redis.llen(h.ctx.keys.batch('held').backlog)).toBeGreaterThan(0);
    await resumeBatch(h.ctx, 'held');
    await topUpQueue(h.ctx, { cap: 100 });
    expect(await h.ctx.redis.llen(h.ctx.keys.batch('held').backlog)).toBe(0);
  });

  it('a batch that expires with rows in its backlog takes them with it', async () => {
    const h = await createHarness({ config: { maxWaiting: 3, enqueueChunk: 5, retentionMs: 1000, unfinishedRetentionMs: 0 } });
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, 20), batch: 'brief' });
    expect(await h.ctx.redis.pttl(h.ctx.keys.batch('brief').backlog)).toBeGreaterThan(0);
    await until('the batch to expire', async () => (await h.ctx.redis.exists(h.ctx.keys.batch('brief').meta)) === 0);
    expect(await h.ctx.redis.exists(h.ctx.keys.batch('brief').backlog)).toBe(0);
    await h.ctx.queue.drain();
    expect(await topUpQueue(h.ctx, { cap: 10 })).toMatchObject({ added: 0, left: 0 });
    expect(await h.ctx.redis.exists(h.ctx.keys.backlog)).toBe(0);
  });
});

describe('the process topping the queue up, killed with SIGKILL, loses and duplicates nothing', () => {
  it('a top-up loop killed again and again: every row ends up a job exactly once', async () => {
    const rows = 1500;
    const h = await createHarness({ config: { maxWaiting: 1, enqueueChunk: 500 } });
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows), batch: 'kills' });
    const script = join(ROOT, 'test', 'fixtures', 'top-up-loop.mjs');
    const env = h.env();
    let kills = 0;
    for (;;) {
      const left = await backlogLength(h.ctx);
      if (left === 0) break;
      // Tops up 7 jobs at a time, for ever: killed at a moment of its own choosing, mid-top-up or not.
      const child = spawn(process.execPath, [script, '7'], { cwd: ROOT, env, stdio: 'ignore' });
      const exited = new Promise((resolve) => child.once('close', resolve));
      if (kills < 12) {
        await until('the loop to add some jobs', async () => (await backlogLength(h.ctx)) < left);
        child.kill('SIGKILL');
        kills++;
      }
      await exited;
    }
    expect(kills).toBe(12);
    const ids = await jobIds(h);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(rows);
    expect(await h.ctx.redis.hget(h.ctx.keys.batch('kills').meta, 'backlog_taken')).toBe(String(rows));
  }, 90_000);

  it('work processes killed while they top the queue up: every row answered exactly once', async () => {
    const rows = 300;
    const h = await createHarness({ emulator: { runners: 16, latency: '5ms' } });
    const enqueued = await runCliProcess(['enqueue', manifestOf(h, rows), '--batch', 'killed', '--max-waiting', '4'], h.env());
    expect(enqueued.code).toBe(0);
    // With 4 jobs at most waiting, a worker tops the queue up several times a second.
    for (let kill = 0; kill < 4; kill++) {
      const worker = spawnCli(['work', '--concurrency', '4', '--lock-duration', '1s'], h.env());
      const before = (await getStatus(h.ctx, 'killed')).ok;
      await until('rows to end', async () => (await getStatus(h.ctx, 'killed')).ok >= before + 20);
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    const last = spawnCli(['work', '--concurrency', '4', '--lock-duration', '1s'], h.env());
    const status = await waitForBatch(h.ctx, 'killed', { intervalMs: 50 });
    last.child.kill('SIGTERM');
    expect(await last.exited).toBe(0);
    expect(status).toMatchObject({ ok: rows, failed: 0, finished: true });
    expect(await h.ctx.redis.hlen(h.ctx.keys.batch('killed').results)).toBe(rows);
    // A kill mid-call may cost an extra paid call for each of the 4 rows in flight (a request made
    // whose id was not saved yet); the backlog costs none: every row has exactly one result.
    expect(h.emulator.stats().billed).toBeLessThanOrEqual(rows + 4 * 4);
  }, 120_000);
});
