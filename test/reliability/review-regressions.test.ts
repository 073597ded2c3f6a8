import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FalTransportError } from '../../src/errors.js';
import { createFalCaller } from '../../src/fal/fal-caller.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, FAL_KEY, readCsv, runCliProcess, type Harness } from '../helpers/harness.js';

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
    expect(Date.now() - started).toBeLessThan(10_000);
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
    expect(row).toMatchObject({ status: 'ok', attempts: '2' });
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
    expect(wrongKind.stderr).toContain('name the file .csv or .jsonl');
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
    // Calls already under way may land; then nothing is submitted by either worker until the limit ends.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const during = h.emulator.stats().submits;
    while ((await h.ctx.queue.getRateLimitTtl()) > 200) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(h.emulator.stats().submits).toBe(during);
    await waitForBatch(h.ctx, batch, { intervalMs: 25 });
    for (const worker of workers) await worker.close();
    expect((await getStatus(h.ctx, batch)).ok).toBe(40);
  });

  it('identical rows with different ids are called once: the others wait for its answer', async () => {
    const h = await createHarness({ emulator: { latency: '200ms', runners: 4 } });
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/x.jpg,same\nb,https://example.com/x.jpg,same\nc,https://example.com/x.jpg,same\n');
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ ok: 3 });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    expect(new Set(rows.map((r) => r['output'])).size).toBe(1);
    expect(rows.map((r) => r['attempts']).sort()).toEqual(['0', '0', '1']);
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1 });
  });
});
