import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ConfigOverrides } from '../../src/config.js';
import type { FalEmulatorOptions } from '../../src/emulator/create-fal-emulator.js';
import { resumeQueue } from '../../src/queue/queue-pause.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { createHarness, readCsv, until, type Harness } from '../helpers/harness.js';

async function runRows(h: Harness, rows: number, workers = 1): Promise<Array<Record<string, string>>> {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', `id,image_url,prompt\n${body}\n`) });
  const handles = [];
  for (let i = 0; i < workers; i++) handles.push(await h.startWorker());
  await waitForBatch(h.ctx, batch, { intervalMs: 50 });
  for (const handle of handles) await handle.close();
  await exportResults(h.ctx, { batch, out: join(h.dir, 'out.csv') });
  return readCsv(join(h.dir, 'out.csv'));
}

async function oneRow(emulator: FalEmulatorOptions, config: ConfigOverrides = {}): Promise<{ row: Record<string, string>; h: Harness }> {
  const h = await createHarness({ emulator, config: { callTimeoutMs: 500, ...config } });
  const [row] = await runRows(h, 1);
  return { row: row as Record<string, string>, h };
}

describe('time-outs: no hung call or stuck request holds a row for ever', () => {
  it('a submit that never answers times out and is retried', async () => {
    const { row, h } = await oneRow({ faults: ['hang@submit=1x1'] });
    expect(row).toMatchObject({ status: 'ok', attempts: '2' });
    expect(h.emulator.stats()).toMatchObject({ submits: 2, accepted: 1, billed: 1 });
  });

  it('a status stream that never answers is dropped after the call time-out and the same request is read', async () => {
    const { row, h } = await oneRow({ faults: ['hang@stream=1x1'], latency: '100ms' });
    expect(row).toMatchObject({ status: 'ok', attempts: '1' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1 });
  });

  it('a result read that never answers is read again, without paying again', async () => {
    const { row, h } = await oneRow({ faults: ['hang@result=1x1'] });
    expect(row).toMatchObject({ status: 'ok', attempts: '1' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1, resultCalls: 2 });
  });

  it('a request stuck past the wait budget is cancelled at fal and submitted anew', async () => {
    const { row, h } = await oneRow({ faults: ['stuck=1x1'] }, { waitBudgetMs: 800 });
    expect(row).toMatchObject({ status: 'ok', attempts: '2' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 2, cancels: 1, billed: 1, inProgress: 0 });
  });

  it('a request fal did not start within the start timeout (504, user) is submitted anew', async () => {
    const { row, h } = await oneRow({ faults: ['user-timeout=1x1'] }, { startTimeoutSeconds: 5 });
    expect(row).toMatchObject({ status: 'ok', attempts: '2' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 2, billed: 1 });
  });

  it('a job that ends in a server error (not billed by fal) is submitted again', async () => {
    const { row, h } = await oneRow({ faults: ['job-error=1x1'] });
    expect(row).toMatchObject({ status: 'ok', attempts: '2' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 2, billed: 1, resultCalls: 2 });
  });
});

describe("429s and fal's concurrency", () => {
  it("honours Retry-After for the whole queue, without spending the row's attempts", async () => {
    const h = await createHarness({ emulator: { faults: ['429@submit=1x1'], retryAfterSeconds: 2 }, config: { attempts: 1 } });
    const body = 'id,image_url,prompt\nr0,https://example.com/0.jpg,p\n';
    const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', body) });
    const worker = await h.startWorker();
    let ttl = 0;
    while (ttl <= 0 && !(await getStatus(h.ctx, batch)).finished) {
      ttl = await h.ctx.queue.getRateLimitTtl();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // The limit sits on the queue (shared by every worker) for the Retry-After (2 s), far longer
    // than falbatch's own backoff here (50 ms), however late this loop first sees it.
    expect(ttl).toBeGreaterThan(200);
    expect(ttl).toBeLessThanOrEqual(2000);
    await waitForBatch(h.ctx, batch, { intervalMs: 50 });
    await worker.close();
    const [row] = (await exportResults(h.ctx, { batch, out: join(h.dir, 'o.csv') }), await readCsv(join(h.dir, 'o.csv')));
    // attempts: 1 allowed, and the row still succeeded after the 429.
    expect(row).toMatchObject({ status: 'ok', attempts: '1' });
    expect(h.emulator.stats()).toMatchObject({ submits: 2, accepted: 1 });
  });

  it('a 429 with Retry-After 1 s pauses the queue for 1 s, not for the longer retry backoff on top of it', async () => {
    const h = await createHarness({ emulator: { faults: ['429@submit=1x1'], retryAfterSeconds: 1 }, config: { backoffBaseMs: 2000, backoffMaxMs: 120_000 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', 'id,image_url,prompt\nr0,https://example.com/0.jpg,p\n') });
    const worker = await h.startWorker();
    let longest = 0;
    await until('the row to finish', async () => {
      longest = Math.max(longest, await h.ctx.queue.getRateLimitTtl());
      return (await getStatus(h.ctx, batch)).finished;
    });
    await worker.close();
    expect(h.emulator.stats().faults['429@submit']).toBe(1);
    expect(longest).toBeGreaterThan(0);
    expect(longest).toBeLessThanOrEqual(1000);
  });

  it('fails a row rate-limited for longer than the rate-limit budget, instead of looping for ever', async () => {
    const h = await createHarness({ emulator: { faults: ['429-no-retry-after@submit=1'] }, config: { rateLimitBudgetMs: 300 } });
    const [row] = await runRows(h, 1);
    expect(row).toMatchObject({ status: 'failed', error: expect.stringMatching(/429.*rate limited for longer than the rate-limit budget/) });
  });

  it('a locked account (exhausted balance, 403) pauses the queue; after a top-up, resuming finishes the rows', async () => {
    const h = await createHarness({ emulator: { locked: true } });
    const body = 'id,image_url,prompt\nr0,https://example.com/0.jpg,p\nr1,https://example.com/1.jpg,p\n';
    const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', body) });
    const worker = await h.startWorker();
    const paused = await waitForBatch(h.ctx, batch, { intervalMs: 20 });
    expect(paused).toMatchObject({ finished: false, failed: 0, paused: expect.stringMatching(/fal refused the account \(403: User is locked/) });
    h.emulator.setLocked(false);
    await resumeQueue(h.ctx);
    expect(await waitForBatch(h.ctx, batch, { intervalMs: 20 })).toMatchObject({ finished: true, ok: 2, paused: undefined });
    await worker.close();
  });

  it('--global-concurrency caps fal requests in flight across workers', async () => {
    const h = await createHarness({ emulator: { runners: 20, latency: '50..150ms' }, config: { concurrency: 8, globalConcurrency: 3 } });
    const rows = await runRows(h, 30, 2);
    expect(rows.every((r) => r['status'] === 'ok')).toBe(true);
    expect(h.emulator.stats().maxOutstanding).toBeLessThanOrEqual(3);
    expect(h.emulator.stats().maxInProgress).toBe(3);
  });
});
