import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus } from '../../src/ops/status.js';
import { createHarness, readCsv, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';
import { freezeMidSubmit } from '../helpers/frozen-worker.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

async function done(h: Harness, batch: string): Promise<number> {
  const status = await getStatus(h.ctx, batch);
  return status.ok + status.failed;
}

/**
 * The submits a worker had in flight when it died: rows whose request key still holds a submitting
 * mark (its Redis connection's) once the process is dead, so fal may have accepted the submit but
 * its request id never reached Redis. Read after the process exited and before another worker runs;
 * pairs counted at an earlier kill (rows no worker reached since) are left out via `counted`.
 */
async function submitsInFlight(h: Harness, counted: Set<string>): Promise<number> {
  const base = h.ctx.keys.request('');
  let fresh = 0;
  let cursor = '0';
  do {
    const [next, keys] = await h.ctx.redis.scan(cursor, 'MATCH', `${base}*`, 'COUNT', 1000);
    cursor = next;
    const values = keys.length > 0 ? await h.ctx.redis.mget(...keys) : [];
    keys.forEach((key, i) => {
      const pair = `${key}=${values[i] ?? ''}`;
      if (values[i]?.startsWith('submitting:') && !counted.has(pair)) {
        counted.add(pair);
        fresh++;
      }
    });
  } while (cursor !== '0');
  return fresh;
}

/**
 * Kills `work` processes with SIGKILL, one after the other, each once `answered` more rows have been
 * answered since it started, then lets one finish the batch. Returns the submits in flight at each kill.
 */
async function killRepeatedly(h: Harness, batch: string, args: string[], kills: number, answered: number): Promise<number[]> {
  const counted = new Set<string>();
  const inFlight: number[] = [];
  for (let kill = 1; kill <= kills; kill++) {
    const worker = spawnCli(args, h.env());
    const before = await done(h, batch);
    // Kill while requests are in flight at fal and more rows are still to do.
    await until('rows in flight', async () => (await done(h, batch)) >= before + answered && h.emulator.stats().outstanding > 0, 60_000);
    worker.child.kill('SIGKILL');
    expect(await worker.exited).toBe(-1);
    inFlight.push(await submitsInFlight(h, counted));
  }
  const last = spawnCli(args, h.env());
  await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 120_000);
  last.child.kill('SIGTERM');
  expect(await last.exited).toBe(0);
  return inFlight;
}

/** Every row answered ok exactly once, in the export and in Redis. */
async function expectEveryRowOnce(h: Harness, batch: string, rows: number): Promise<void> {
  const out = join(h.dir, 'out.csv');
  await exportResults(h.ctx, { batch, out });
  const exported = await readCsv(out);
  expect(exported.map((r) => r['id'])).toEqual(Array.from({ length: rows }, (_, i) => `r${i}`));
  expect(exported.every((r) => r['status'] === 'ok')).toBe(true);
  expect(await h.ctx.redis.hlen(h.ctx.keys.batch(batch).results)).toBe(rows);
}

describe('crash safety, with worker processes really killed', () => {
  it('survives three SIGKILLs mid-batch: every row exactly once, extra paid calls only for submits in flight at a kill', async () => {
    const rows = 120;
    const h = await createHarness({ emulator: { runners: 8, latency: '150..450ms', seed: 2 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
    const inFlight = await killRepeatedly(h, batch, ['work', '--concurrency', '8', '--lock-duration', '1s'], 3, 10);
    await expectEveryRowOnce(h, batch, rows);
    const stats = h.emulator.stats();
    expect(inFlight.every((n) => n <= 8)).toBe(true);
    expect(stats.accepted - rows).toBeLessThanOrEqual(inFlight.reduce((sum, n) => sum + n, 0));
  }, 120_000);

  it('a fast endpoint, 25 rows in flight, killed 8 times: extra calls ≤ the submits in flight at each kill, every row once', async () => {
    // 30–80 ms calls: a large share of each row's time is spent between fal accepting its submit and
    // its request id reaching Redis, so kills cost more than one call each (see RELIABILITY.md).
    const rows = 600;
    const concurrency = 25;
    const h = await createHarness({ emulator: { runners: concurrency, latency: '30..80ms', seed: 5 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
    const args = ['work', '--concurrency', String(concurrency), '--lock-duration', '1s'];
    const inFlight = await killRepeatedly(h, batch, args, 8, concurrency);
    await expectEveryRowOnce(h, batch, rows);
    const stats = h.emulator.stats();
    // A kill can cost at most one extra call per submit in flight, and never more than --concurrency.
    expect(inFlight.every((n) => n <= concurrency)).toBe(true);
    expect(stats.accepted - rows).toBeLessThanOrEqual(inFlight.reduce((sum, n) => sum + n, 0));
    expect(stats.duplicateBilled).toBe(stats.billed - rows);
  }, 180_000);

  it('a worker frozen mid-submit past its lock (alive, connection open) makes no other worker pay for its rows', async () => {
    const rows = 4;
    // Every submit is carried out at once and answered 2 s later: the frozen worker is mid-submit.
    const h = await createHarness({ emulator: { runners: 8, latency: '50ms', faults: ['slow@submit=1x4'] } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
    const args = ['work', '--concurrency', '4', '--lock-duration', '1s'];
    // The other worker takes the rows over once their locks expire, and tries each more than once,
    // and must not pay for them again while the frozen one can still save its request ids.
    const { frozen, other } = await freezeMidSubmit(h, rows, args, h.env());
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
    other.child.kill('SIGTERM');
    frozen.child.kill('SIGTERM');
    await Promise.all([other.exited, frozen.exited]);
    expect((await getStatus(h.ctx, batch)).ok).toBe(rows);
    expect(h.emulator.stats()).toMatchObject({ accepted: rows, billed: rows, duplicateBilled: 0 });
  }, 60_000);

  it('SIGTERM: the worker leaves within its grace period, hands rows back, and a new worker finishes them without paying twice', async () => {
    const rows = 12;
    // Requests take 12 s at fal: a worker that waited for them, instead of its 1 s grace, would take that long.
    const h = await createHarness({ emulator: { runners: 12, latency: '12s' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
    const worker = spawnCli(['work', '--concurrency', '6', '--grace', '1s'], h.env());
    await until('six requests running at fal', () => h.emulator.stats().inProgress === 6);
    const started = Date.now();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    const tookMs = Date.now() - started;
    // The grace, then closing connections: well under the 12 s the requests take, on a busy machine too.
    expect(tookMs).toBeLessThan(8000);
    expect(worker.output()).toContain('grace period of 1000 ms over: handing rows in flight back to the queue');
    // Handed back, not failed: the six rows wait again, their fal request ids saved on them.
    const waiting = await h.ctx.queue.getJobs(['waiting'], 0, -1);
    expect(waiting).toHaveLength(rows);
    expect(waiting.filter((job) => typeof job.data.rid === 'string')).toHaveLength(6);
    expect((await getStatus(h.ctx, batch)).failed).toBe(0);

    const next = spawnCli(['work', '--concurrency', '12'], h.env());
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
    next.child.kill('SIGTERM');
    expect(await next.exited).toBe(0);
    expect(h.emulator.stats()).toMatchObject({ accepted: rows, billed: rows, duplicateBilled: 0 });
  }, 60_000);

  it('a second SIGTERM exits at once', async () => {
    // Without the second SIGTERM the worker would wait out its 30 s grace for requests that take 60 s.
    const h = await createHarness({ emulator: { runners: 4, latency: '60s' } });
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, 4) });
    const worker = spawnCli(['work', '--concurrency', '4', '--grace', '30s'], h.env());
    await until('four requests running at fal', () => h.emulator.stats().inProgress === 4);
    worker.child.kill('SIGTERM');
    await until('the graceful stop to begin', () => worker.output().includes('stopping gracefully'));
    const started = Date.now();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(130);
    expect(Date.now() - started).toBeLessThan(8000);
    expect(worker.output()).toContain('exiting now; rows in flight will be resumed by the next worker');
  }, 30_000);

  it('a bad key pauses the queue instead of failing rows; fixing the key and resuming finishes the batch', async () => {
    const rows = 10;
    const h = await createHarness({ emulator: { runners: 4, latency: '50ms' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
    const wrong = spawnCli(['work', '--concurrency', '4'], h.env({ FAL_KEY: 'not-the-key' }));
    await until('the queue to pause', async () => (await getStatus(h.ctx, batch)).paused !== undefined);
    const paused = await getStatus(h.ctx, batch);
    expect(paused).toMatchObject({ failed: 0, ok: 0, pending: rows });
    expect(paused.paused).toMatch(/fal rejected the credentials \(401.*Check FAL_KEY.*falbatch resume/);
    expect(wrong.output()).toContain('PAUSED: fal rejected the credentials');
    expect(wrong.output()).not.toContain('not-the-key');
    wrong.child.kill('SIGTERM');
    expect(await wrong.exited).toBe(0);

    const status = await runCliProcess(['status', '--batch', batch], h.env());
    expect(status.stdout).toContain('(PAUSED)');
    const right = spawnCli(['work', '--concurrency', '4'], h.env());
    const resumed = await runCliProcess(['resume'], h.env());
    expect(resumed.stdout).toMatch(/^resumed \(it was paused: fal rejected the credentials/);
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
    right.child.kill('SIGTERM');
    await right.exited;
    expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: rows, failed: 0, paused: undefined });
  }, 60_000);

  it('run with a bad key exits 1 saying the queue is paused and how to go on; running again with the key finishes', async () => {
    const h = await createHarness();
    const manifest = manifestOf(h, 3);
    const bad = await runCliProcess(['run', manifest, '--out', join(h.dir, 'out.csv')], h.env({ FAL_KEY: 'wrong-key-1234' }));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('the queue is paused: fal rejected the credentials (401');
    expect(bad.stderr).not.toContain('wrong-key-1234');
    const good = await runCliProcess(['run', manifest, '--out', join(h.dir, 'out.csv')], h.env());
    expect(good.code).toBe(0);
    expect(good.stdout).toContain('3 ok');
  }, 60_000);
});
