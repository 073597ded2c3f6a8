import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FalTransportError } from '../../src/errors.js';
import { createFalCaller } from '../../src/fal/fal-caller.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, FAL_KEY, readCsv, runCliProcess, until, type Harness } from '../helpers/harness.js';

const LLAVA = 'fal-ai/llava-next';

function manifestOf(h: Harness, rows: number, name = 'm.csv'): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file(name, `id,image_url,prompt\n${body}\n`);
}

async function runAll(h: Harness, rows: number, workerOptions: Parameters<Harness['startWorker']>[0] = {}): Promise<Array<Record<string, string>>> {
  const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
  const worker = await h.startWorker(workerOptions);
  await waitForBatch(h.ctx, batch, { intervalMs: 25 });
  await worker.close();
  await exportResults(h.ctx, { batch, out: join(h.dir, 'out.csv') });
  return readCsv(join(h.dir, 'out.csv'));
}

describe('answers that break off, streams that break, results that do not come', () => {
  it('a 200 whose body breaks off is one failed call: the client does not resubmit on its own', async () => {
    const h = await createHarness({ emulator: { faults: ['truncate@submit=1'] } });
    const fal = createFalCaller({ credentials: FAL_KEY, baseUrl: h.emulator.url, callTimeoutMs: 2000 });
    await expect(fal.submit(LLAVA, { image_url: 'https://example.com/a.jpg', prompt: 'p' })).rejects.toBeInstanceOf(FalTransportError);
    expect(h.emulator.stats()).toMatchObject({ submits: 1, accepted: 1 });
  });

  it('a result whose body breaks off is read again, and paid once', async () => {
    const h = await createHarness({ emulator: { faults: ['truncate@result=1x1'] } });
    const [row] = await runAll(h, 1);
    expect(row).toMatchObject({ status: 'ok', attempts: '1' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1, resultCalls: 2 });
  });

  it('status streams that keep breaking fall back to status reads, without waiting out the budget', async () => {
    const h = await createHarness({ emulator: { faults: ['drop@stream=1'], latency: '100ms' }, config: { waitBudgetMs: 60_000 } });
    const started = Date.now();
    const rows = await runAll(h, 3);
    expect(rows.map((r) => r['status'])).toEqual(['ok', 'ok', 'ok']);
    // Far below the 60 s wait budget a row would spend on a stream that keeps breaking.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(h.emulator.stats()).toMatchObject({ accepted: 3, billed: 3 });
  });

  it('a 404 on the stream (a router that does not carry SSE) is not taken for a lost request', async () => {
    const h = await createHarness({ emulator: { latency: '50ms' } });
    const noStreams: typeof fetch = async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (url.includes('/status/stream')) return new Response('{"detail":"Not Found"}', { status: 404, headers: { 'content-type': 'application/json' } });
      return fetch(input, init);
    };
    const fal = createFalCaller({ credentials: FAL_KEY, baseUrl: h.emulator.url, callTimeoutMs: 2000, fetch: noStreams });
    const rows = await runAll(h, 3, { fal });
    expect(rows.map((r) => [r['status'], r['attempts']])).toEqual([
      ['ok', '1'],
      ['ok', '1'],
      ['ok', '1'],
    ]);
    expect(h.emulator.stats()).toMatchObject({ accepted: 3, billed: 3, duplicateBilled: 0 });
  });

  it('a result that does not come although fal said the job completed is read again later, never paid twice', async () => {
    const h = await createHarness({ emulator: { faults: ['503@result=1x3'] } });
    const [row] = await runAll(h, 1);
    // Put off and read again: no attempt is spent on the gateway's trouble.
    expect(row).toMatchObject({ status: 'ok', attempts: '1' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1, duplicateBilled: 0 });
  });
});

describe('run, rate limits and identical rows', () => {
  it('run finishes a manifest with more rows than may wait in the queue (its worker drains while it enqueues)', async () => {
    const h = await createHarness({ emulator: { runners: 8 }, config: { maxWaiting: 10, enqueueChunk: 5 } });
    const summary = await runBatch(h.ctx, { manifest: manifestOf(h, 60), out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ rows: 60, ok: 60 });
  });

  it('run refuses an output it could not write before paying for anything', async () => {
    const h = await createHarness();
    const manifest = manifestOf(h, 2);
    const wrongKind = await runCliProcess(['run', manifest, '--out', join(h.dir, 'results.txt')], h.env());
    expect(wrongKind.code).toBe(1);
    expect(wrongKind.stderr).toContain('name the file .csv, .jsonl (or .ndjson) or .parquet');
    const noFolder = await runCliProcess(['run', manifest, '--out', join(h.dir, 'missing', 'r.csv')], h.env());
    expect(noFolder.code).toBe(1);
    expect(noFolder.stderr).toContain('does not exist');
    expect(h.emulator.stats().submits).toBe(0);
  });

  it('a 429 stops every worker on the queue for the Retry-After, not only the one that got it', async () => {
    const h = await createHarness({ emulator: { runners: 10, latency: '20ms', faults: ['429@submit=1x1'], retryAfterSeconds: 2 }, config: { concurrency: 2 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 40) });
    const workers = [await h.startWorker(), await h.startWorker()];
    let ttl = 0;
    while (ttl < 1500 && !(await getStatus(h.ctx, batch)).finished) {
      ttl = await h.ctx.queue.getRateLimitTtl();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // Calls already under way may land (until no row is active: the limit lets no worker take one);
    // then nothing is submitted by either worker until the limit ends.
    await until('the calls under way to land', async () => (await h.ctx.queue.getActiveCount()) === 0 || (await h.ctx.queue.getRateLimitTtl()) <= 200, 10_000);
    const during = h.emulator.stats().submits;
    while ((await h.ctx.queue.getRateLimitTtl()) > 200) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(h.emulator.stats().submits).toBe(during);
    await waitForBatch(h.ctx, batch, { intervalMs: 25 });
    for (const worker of workers) await worker.close();
    expect((await getStatus(h.ctx, batch)).ok).toBe(40);
  });

  it('identical rows with different ids are called once: the others wait for its answer', async () => {
    const h = await createHarness({ emulator: { latency: '200ms', runners: 4 } });
    const manifest = h.file(
      'm.csv',
      'id,image_url,prompt\na,https://example.com/x.jpg,same\nb,https://example.com/x.jpg,same\nc,https://example.com/x.jpg,same\n',
    );
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ ok: 3 });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    expect(new Set(rows.map((r) => r['output'])).size).toBe(1);
    expect(rows.map((r) => r['attempts']).sort()).toEqual(['0', '0', '1']);
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1 });
  });
});

/** A fetch that rewrites what fal's server answers, as a different (but faithful) server might. */
function rewriting(rewrite: (url: string, response: Response) => Response | Promise<Response>): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    return rewrite(url, await fetch(input, init));
  };
}

describe('servers that answer in other ways, claims that outlive their rows, paused producers', () => {
  it('a status stream that answers plain JSON instead of SSE neither crashes the worker nor stalls the row', async () => {
    const h = await createHarness({ emulator: { latency: '50ms' } });
    const notSse = rewriting((url, response) =>
      url.includes('/status/stream') ? new Response('{"status":"IN_PROGRESS"}', { status: 200, headers: { 'content-type': 'application/json' } }) : response,
    );
    const fal = createFalCaller({ credentials: FAL_KEY, baseUrl: h.emulator.url, callTimeoutMs: 2000, fetch: notSse });
    const rows = await runAll(h, 3, { fal });
    expect(rows.map((r) => r['status'])).toEqual(['ok', 'ok', 'ok']);
    expect(h.emulator.stats()).toMatchObject({ accepted: 3, billed: 3 });
  });

  it('JSON answers labelled text/plain are read as JSON: no resubmits, no failed rows', async () => {
    const h = await createHarness({ emulator: { latency: '20ms' } });
    const plain = rewriting(async (url, response) => {
      if (url.includes('/status/stream')) return response;
      const headers = new Headers(response.headers);
      headers.set('content-type', 'text/plain; charset=utf-8');
      return new Response(await response.arrayBuffer(), { status: response.status, headers });
    });
    const fal = createFalCaller({ credentials: FAL_KEY, baseUrl: h.emulator.url, callTimeoutMs: 2000, fetch: plain });
    const rows = await runAll(h, 3, { fal });
    expect(rows.map((r) => [r['status'], r['attempts']])).toEqual([
      ['ok', '1'],
      ['ok', '1'],
      ['ok', '1'],
    ]);
    expect(h.emulator.stats()).toMatchObject({ submits: 3, billed: 3 });
  });

  it('a status 404 right after submit (a replica that has not seen it yet) is read again, not resubmitted', async () => {
    const h = await createHarness({ emulator: { latency: '50ms' }, config: { waitMode: 'poll' } });
    const seen = new Set<string>();
    const lagging = rewriting((url, response) => {
      const id = /requests\/([^/]+)\/status/.exec(url)?.[1];
      if (!id || seen.has(id)) return response;
      seen.add(id);
      return new Response('{"detail":"Request not found"}', { status: 404, headers: { 'content-type': 'application/json' } });
    });
    const fal = createFalCaller({ credentials: FAL_KEY, baseUrl: h.emulator.url, callTimeoutMs: 2000, fetch: lagging });
    const rows = await runAll(h, 2, { fal });
    expect(rows.map((r) => [r['status'], r['attempts']])).toEqual([
      ['ok', '1'],
      ['ok', '1'],
    ]);
    expect(h.emulator.stats()).toMatchObject({ accepted: 2, billed: 2 });
  });

  it('a claim whose row is gone (crashed and cleaned up) is taken over: identical rows never wait for ever', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\nx,https://example.com/x.jpg,p\n');
    const { batch } = await enqueueManifest(h.ctx, { manifest });
    const [job] = await h.ctx.queue.getJobs(['waiting']);
    await h.ctx.redis.set(h.ctx.keys.inflight(job?.data.f as string), 'some-other-batch/ghost', 'PX', 3_600_000);
    const worker = await h.startWorker();
    await waitForBatch(h.ctx, batch, { intervalMs: 25 });
    await worker.close();
    expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: 1 });
    expect(h.emulator.stats().billed).toBe(1);
  });

  it('a row that fails for good lets go of its claim, so its identical twin goes on at once', async () => {
    // Reads that never answer after fal said the job completed: put off until the result budget, then failed.
    const h = await createHarness({ emulator: { faults: ['hang@result=1'] }, config: { attempts: 1, callTimeoutMs: 300, resultBudgetMs: 1000 } });
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/x.jpg,same\nb,https://example.com/x.jpg,same\n');
    const started = Date.now();
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ failed: 2 });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(h.emulator.stats().accepted).toBe(2);
  });

  it('run stops with the reason, instead of hanging, when the queue pauses while rows wait in the backlog', async () => {
    const h = await createHarness({ emulator: { locked: true }, config: { maxWaiting: 20, enqueueChunk: 10 } });
    const summary = await runBatch(h.ctx, { manifest: manifestOf(h, 100), out: join(h.dir, 'out.csv') });
    expect(summary.stopped).toBe('paused');
    expect(summary.status).toMatchObject({ pausedBy: 'account', ok: 0, finished: false });
    expect(summary.status.paused).toMatch(/fal refused the account \(403/);
    // Every row is kept to call once the account is fixed: none was lost or paid for.
    expect(summary.status.pending).toBe(100);
    expect(h.emulator.stats().billed).toBe(0);
  });

  it('two producers on one batch at once: the second is told so, the first finishes', async () => {
    const h = await createHarness({ config: { enqueueChunk: 50 } });
    const manifest = manifestOf(h, 2000);
    const first = enqueueManifest(h.ctx, { manifest, batch: 'shared' });
    await until('the first producer to hold the batch', async () => (await h.ctx.redis.exists(h.ctx.keys.batch('shared').enqueuing)) === 1);
    await expect(enqueueManifest(h.ctx, { manifest, batch: 'shared' })).rejects.toThrow(/Batch shared is being enqueued by another producer right now/);
    expect(await first).toMatchObject({ rows: 2000, added: 2000 });
  });
});

describe('an error answer that breaks off', () => {
  it('a 422 whose body is cut off is read again, and the row fails with what fal really said', async () => {
    const h = await createHarness({ emulator: { faults: ['model-error=1', 'truncate@result=1x1'] } });
    const [row] = await runAll(h, 1);
    expect(row).toMatchObject({ status: 'failed', error: expect.stringMatching(/^fal 422 .*emulated model error/) });
    expect(row?.['error']).not.toContain('no details');
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, resultCalls: 2 });
  });
});
