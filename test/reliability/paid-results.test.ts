import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { retryFailed } from '../../src/ops/retry.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { createHarness, readCsv, runCliProcess, type Harness } from '../helpers/harness.js';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

async function work(h: Harness, batch: string): Promise<Array<Record<string, string>>> {
  const worker = await h.startWorker();
  await waitForBatch(h.ctx, batch, { intervalMs: 25 });
  await worker.close();
  const out = join(h.dir, 'out.csv');
  await exportResults(h.ctx, { batch, out });
  return readCsv(out);
}

/**
 * A request fal reported COMPLETED without error was run and billed: its answer exists. Result
 * reads that fail are the gateway's trouble, and must never make falbatch submit (and pay) again.
 */
describe('paid requests whose results do not come', () => {
  it('70 % of result reads failing: every row ends ok and nothing is paid twice', async () => {
    const rows = 100;
    const h = await createHarness({ emulator: { runners: 16, latency: '0..20ms', seed: 9, faults: ['503@result=0.7'] }, config: { concurrency: 16 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, rows) });
    const exported = await work(h, batch);
    expect(exported.filter((r) => r['status'] === 'ok')).toHaveLength(rows);
    const stats = h.emulator.stats();
    expect(stats.faults['503@result'] ?? 0).toBeGreaterThan(rows);
    expect(stats).toMatchObject({ accepted: rows, billed: rows, duplicateBilled: 0 });
  }, 120_000);

  it('past the result budget the row fails as result_unavailable, keeps its request id, and `retry` reads it again without paying', async () => {
    const h = await createHarness({ emulator: { faults: ['503@result=1'] }, config: { resultBudgetMs: 400 } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 2) });
    const failed = await work(h, batch);
    expect(failed).toHaveLength(2);
    for (const row of failed) {
      expect(row).toMatchObject({ status: 'failed', request_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      expect(row['error']).toMatch(/could not be read for .* \(the result budget\)\. It is paid for: `falbatch retry --batch .* --error result_unavailable`/);
    }
    const stored = await h.ctx.store.get(batch, 'r0');
    expect(stored?.error_type).toBe('result_unavailable');
    expect(h.emulator.stats()).toMatchObject({ accepted: 2, billed: 2 });

    // The gateway is back: the CLI puts the rows back, and their answers are read, not bought again.
    h.emulator.setFaults([]);
    const retried = await runCliProcess(['retry', '--batch', batch, '--error', 'result_unavailable'], h.env());
    expect(retried.code).toBe(0);
    expect(retried.stdout).toContain(
      `batch ${batch}: 2 failed rows with error result_unavailable back in the queue (2 of them read their paid fal request again, without paying)`,
    );
    expect((await getStatus(h.ctx, batch)).failed).toBe(0);
    const answered = await work(h, batch);
    expect(answered.map((r) => [r['status'], r['request_id']])).toEqual(failed.map((r) => ['ok', r['request_id']]));
    expect(h.emulator.stats()).toMatchObject({ accepted: 2, billed: 2, duplicateBilled: 0 });
  }, 60_000);

  it('retry of other failures submits again, and only the chosen error class', async () => {
    const h = await createHarness({ emulator: { faults: ['model-error=1x1'] } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 3) });
    const first = await work(h, batch);
    expect(first.filter((r) => r['status'] === 'failed')).toHaveLength(1);
    expect(await retryFailed(h.ctx, { batch, errorType: 'result_unavailable' })).toMatchObject({ requeued: 0, missing: 0 });
    expect(await retryFailed(h.ctx, { batch })).toMatchObject({ requeued: 1, rereads: 0, missing: 0 });
    const second = await work(h, batch);
    expect(second.every((r) => r['status'] === 'ok')).toBe(true);
    // The model error was billed, and the retry is a new call (the user asked for it).
    expect(h.emulator.stats()).toMatchObject({ accepted: 4 });
  }, 60_000);
});
