import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { waitForBatch } from '../../src/ops/status.js';
import { createHarness, readCsv } from '../helpers/harness.js';

const ROWS = 2000;

describe('a 2,000-row batch under mixed fal faults', () => {
  it('ends every row in its right final state and pays at most once per row plus lost submit answers', async () => {
    const h = await createHarness({
      emulator: {
        runners: 32,
        latency: '0..20ms',
        seed: 11,
        faults: [
          '503@submit=0.05',
          '429-no-retry-after@submit=0.05',
          '500@status=0.05',
          '500@stream=0.05',
          '503@result=0.02',
          'model-error=0.01',
          'drop@submit=0.01',
        ],
      },
      config: { concurrency: 64, attempts: 8, backoffBaseMs: 20, backoffMaxMs: 200 },
    });
    const body = Array.from({ length: ROWS }, (_, i) => `r${i},https://example.com/${i}.jpg,caption ${i}`).join('\n');
    const manifest = h.file('rows.csv', `id,image_url,prompt\n${body}\n`);
    const { batch } = await enqueueManifest(h.ctx, { manifest });
    const worker = await h.startWorker();
    const status = await waitForBatch(h.ctx, batch, { intervalMs: 200 });
    await worker.close();
    expect(status).toMatchObject({ finished: true, pending: 0 });

    const out = join(h.dir, 'out.csv');
    const summary = await exportResults(h.ctx, { batch, out });
    const rows = await readCsv(out);
    const stats = h.emulator.stats();
    // Every row once, in order; the only failures are the model errors fal billed and answered 422.
    expect(rows.map((r) => r['id'])).toEqual(Array.from({ length: ROWS }, (_, i) => `r${i}`));
    const failed = rows.filter((r) => r['status'] === 'failed');
    expect(summary.ok + summary.failed).toBe(ROWS);
    // A model error can hit a job whose submit answer was then dropped: that orphan fails nobody.
    const modelErrors = stats.faults['model-error'] ?? 0;
    const lostSubmits = stats.faults['drop@submit'] ?? 0;
    expect(failed.length).toBeLessThanOrEqual(modelErrors);
    expect(failed.length).toBeGreaterThanOrEqual(modelErrors - lostSubmits);
    for (const row of failed) expect(row['error']).toMatch(/^fal 422 .*emulated model error/);
    expect(failed.every((r) => r['attempts'] !== '0')).toBe(true);
    // Each fault kind was really injected, and the bill holds.
    for (const label of ['503@submit', '429-no-retry-after@submit', '500@stream', '503@result', 'model-error', 'drop@submit']) {
      expect(stats.faults[label] ?? 0, label).toBeGreaterThan(0);
    }
    expect(stats.billed, JSON.stringify({ ...stats, billedByFingerprint: undefined })).toBeLessThanOrEqual(ROWS + (stats.faults['drop@submit'] ?? 0));
    expect(stats.duplicateBilled).toBeLessThanOrEqual(stats.faults['drop@submit'] ?? 0);
  }, 180_000);
});
