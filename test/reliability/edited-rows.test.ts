import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, readCsv, until, type Harness } from '../helpers/harness.js';

const BATCH = 'kept-name';

function manifest(h: Harness, prompts: string[]): string {
  return h.file('m.csv', `id,image_url,prompt\n${prompts.map((p, i) => `r${i},https://example.com/${i}.jpg,${p}`).join('\n')}\n`);
}

async function answerOf(h: Harness, prompt: string, image: string): Promise<string> {
  // What the emulator answers for this content: the same model run on a fresh row in another batch.
  const file = h.file('probe.csv', `image_url,prompt\n${image},${prompt}\n`);
  const summary = await runBatch(h.ctx, { manifest: file, out: join(h.dir, 'probe.csv.out.csv'), batch: `probe-${prompt.replace(/\W/g, '')}` });
  const [row] = await readCsv(join(h.dir, 'probe.csv.out.csv'));
  expect(summary.export.ok).toBe(1);
  return row?.['output'] ?? '';
}

/** Under one --batch, a row whose content changed is answered afresh: an old answer never sits beside a new prompt. */
describe('a row edited under the same --batch', () => {
  it('after it ended: called once more, counted as changed, the export pairs the new prompt with the new answer', async () => {
    const h = await createHarness();
    const first = await runBatch(h.ctx, { manifest: manifest(h, ['old prompt', 'kept']), out: join(h.dir, 'a.csv'), batch: BATCH });
    expect(first.export.ok).toBe(2);
    const billed = h.emulator.stats().billed;

    const second = await runBatch(h.ctx, { manifest: manifest(h, ['new prompt', 'kept']), out: join(h.dir, 'b.csv'), batch: BATCH });
    expect(second.enqueue).toMatchObject({ added: 1, changedRows: 1, present: 1 });
    expect(second.enqueue.changed).toEqual([{ line: 2, reason: expect.stringContaining('id "r0" changed since it was enqueued') }]);
    expect(second.export).toMatchObject({ rows: 2, ok: 2 });
    expect(h.emulator.stats().billed).toBe(billed + 1);
    const rows = await readCsv(join(h.dir, 'b.csv'));
    const expected = await answerOf(h, 'new prompt', 'https://example.com/0.jpg');
    expect(rows[0]).toMatchObject({ id: 'r0', prompt: 'new prompt', status: 'ok', output: expected });
    expect(rows[0]?.['output']).not.toBe((await readCsv(join(h.dir, 'a.csv')))[0]?.['output']);
    expect(await getStatus(h.ctx, BATCH)).toMatchObject({ jobs: 2, ok: 2, failed: 0, pending: 0, finished: true });
  });

  it('before it was called: only the new content is called, and the stale job pays for nothing', async () => {
    const h = await createHarness();
    await enqueueManifest(h.ctx, { manifest: manifest(h, ['old prompt']), batch: BATCH });
    const again = await enqueueManifest(h.ctx, { manifest: manifest(h, ['new prompt']), batch: BATCH });
    expect(again).toMatchObject({ added: 1, changedRows: 1 });
    const worker = await h.startWorker();
    await waitForBatch(h.ctx, BATCH, { intervalMs: 25 });
    await worker.close();
    await exportResults(h.ctx, { batch: BATCH, out: join(h.dir, 'out.csv') });
    const [row] = await readCsv(join(h.dir, 'out.csv'));
    expect(row).toMatchObject({ id: 'r0', prompt: 'new prompt', status: 'ok' });
    expect(h.emulator.stats()).toMatchObject({ accepted: 1, billed: 1 });
    expect(row?.['output']).toBe(await answerOf(h, 'new prompt', 'https://example.com/0.jpg'));
  });

  it('while its old content is being called: the old answer is not recorded for the edited row', async () => {
    const h = await createHarness({ emulator: { latency: '1500ms' } });
    await enqueueManifest(h.ctx, { manifest: manifest(h, ['old prompt']), batch: BATCH });
    const worker = await h.startWorker();
    await until('the old content to be running at fal', () => h.emulator.stats().inProgress === 1);
    await enqueueManifest(h.ctx, { manifest: manifest(h, ['new prompt']), batch: BATCH });
    await waitForBatch(h.ctx, BATCH, { intervalMs: 25 });
    await worker.close();
    await exportResults(h.ctx, { batch: BATCH, out: join(h.dir, 'out.csv') });
    const [row] = await readCsv(join(h.dir, 'out.csv'));
    expect(row).toMatchObject({ id: 'r0', prompt: 'new prompt', status: 'ok' });
    expect(row?.['output']).toBe(await answerOf(h, 'new prompt', 'https://example.com/0.jpg'));
    expect(await getStatus(h.ctx, BATCH)).toMatchObject({ ok: 1, pending: 0 });
  }, 30_000);
});
