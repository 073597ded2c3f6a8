import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QUIRKS, type Quirk } from '../../src/emulator/quirks.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, readCsv, until } from '../helpers/harness.js';

const MANIFEST = [
  'id,image_url,prompt,endpoint',
  'plain,https://example.com/a.jpg,describe,',
  'several,https://example.com/a.jpg|https://example.com/b.jpg,compare,fal-ai/mantis-llava-7b-v11',
  'broken-image,https://images.invalid/x.png,describe,',
  ...Array.from({ length: 6 }, (_, i) => `more${i},https://example.com/m${i}.jpg,describe ${i},`),
].join('\n');

/**
 * falbatch will meet fal servers that differ from this emulator's defaults in ways fal's protocol
 * allows. Against each (and all at once), with a job that fails at fal and must be resubmitted and
 * a 429, every row must end right and nothing be paid twice.
 */
describe('protocol variants a faithful fal server may have', () => {
  const variants: Array<[string, Quirk[]]> = [
    ...(Object.keys(QUIRKS) as Quirk[]).map((q): [string, Quirk[]] => [q, [q]]),
    ['a bad event on a stream that stays open', ['stream-bad-event', 'stream-stays-open']],
    ['all at once', Object.keys(QUIRKS) as Quirk[]],
  ];
  it.each(variants)('%s', async (_name, quirks) => {
    const h = await createHarness({
      emulator: { quirks, latency: '20..60ms', runners: 4, faults: ['job-error=1x1', '429@submit=1x1'], retryAfterSeconds: 1 },
      config: { concurrency: 4, callTimeoutMs: 1000 },
    });
    const manifest = h.file('m.csv', MANIFEST);
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    const byId = Object.fromEntries(rows.map((r) => [r['id'], r]));
    expect(summary.export).toMatchObject({ rows: 9, ok: 8, failed: 1 });
    expect(byId['broken-image']).toMatchObject({ status: 'failed', error: expect.stringMatching(/^fal 422 .*image_url: Could not load the image/) });
    for (const id of ['plain', 'several', ...Array.from({ length: 6 }, (_, i) => `more${i}`)]) {
      expect(byId[id], id).toMatchObject({ status: 'ok', output: expect.stringMatching(/^\[emulated:/), request_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    }
    const stats = h.emulator.stats();
    expect(stats.faults).toMatchObject({ 'job-error': 1, '429@submit': 1 });
    expect(stats.duplicateBilled).toBe(0);
    // No status stream left open behind (the client cannot close some of them itself).
    await until('status streams to close', () => h.emulator.stats().openStreams === 0, 3000);
  });
});
