import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createFalClient } from '@fal-ai/client';
import { describe, expect, it } from 'vitest';
import { OutputError } from '../../src/errors.js';
import { createRoutedFetch } from '../../src/fal/routing.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { exportResults } from '../../src/results/export.js';
import { runBatch } from '../../src/run-batch.js';
import { Redis } from 'ioredis';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { createHarness, deletePrefix, FAL_KEY, readCsv, runCliProcess, until, type Harness } from '../helpers/harness.js';
import { pngBytes, pngDataUri } from '../helpers/images.js';

const LLAVA = 'fal-ai/llava-next';
const MANTIS = 'fal-ai/mantis-llava-7b-v11';

/** What the emulator answers for exactly this input: proves falbatch sent exactly it. */
async function directAnswer(h: Harness, endpoint: string, input: Record<string, unknown>): Promise<string> {
  const fal = createFalClient({ credentials: FAL_KEY, fetch: createRoutedFetch(h.emulator.url) });
  const { data } = await fal.run(endpoint, { input });
  return (data as { output: string }).output;
}

describe('runBatch over the emulator', () => {
  it('runs both endpoints, a local file and per-row parameters, giving each row its own answer', async () => {
    const h = await createHarness({ emulator: { runners: 3 } });
    h.file('local.png', pngBytes('local'));
    const manifest = h.file(
      'jobs.csv',
      [
        'id,image_url,prompt,endpoint,max_tokens,temperature,top_p,note',
        'a,https://example.com/a.jpg,Describe A,,3,,,first',
        'b,local.png,"Describe B, briefly",,,0.5,0.9,second',
        `c,https://example.com/a.jpg|local.png,Compare them,${MANTIS},,,,third`,
      ].join('\n'),
    );
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ rows: 3, ok: 3, failed: 0, rejected: 0, pending: 0 });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    expect(rows.map((r) => [r['id'], r['status'], r['endpoint'], r['note']])).toEqual([
      ['a', 'ok', LLAVA, 'first'],
      ['b', 'ok', LLAVA, 'second'],
      ['c', 'ok', MANTIS, 'third'],
    ]);
    expect(rows[0]?.['output']).toBe(await directAnswer(h, LLAVA, { image_url: 'https://example.com/a.jpg', prompt: 'Describe A', max_tokens: 3 }));
    expect(rows[0]?.['output']?.split(' ')).toHaveLength(3);
    expect(rows[1]?.['output']).toBe(
      await directAnswer(h, LLAVA, { image_url: pngDataUri('local'), prompt: 'Describe B, briefly', temperature: 0.5, top_p: 0.9 }),
    );
    expect(rows[2]?.['output']).toBe(
      await directAnswer(h, MANTIS, { prompt: 'Compare them', images: [{ image_url: 'https://example.com/a.jpg' }, { image_url: pngDataUri('local') }] }),
    );
    expect(new Set(rows.map((r) => r['output'])).size).toBe(3);
    for (const row of rows) {
      expect(row['request_id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(Number(row['latency_ms'])).toBeGreaterThanOrEqual(0);
      expect(row['attempts']).toBe('1');
    }
  });

  it('rejects every bad row with the line its record starts on, and runs the valid ones', async () => {
    const h = await createHarness();
    h.file('ok.png', pngBytes('ok'));
    h.file('notes.txt', 'not an image');
    mkdirSync(join(h.dir, 'sub'));
    h.file('sub/in.png', pngBytes('in'));
    writeFileSync(join(h.dir, '..', `outside-${h.prefix}.png`), pngBytes('outside'));
    symlinkSync(join(h.dir, '..', `outside-${h.prefix}.png`), join(h.dir, 'escape.png'));
    const lines = [
      'id,image_url,prompt,endpoint,max_tokens,temperature,top_p', // 1
      'good1,ok.png,"a prompt that spans\ntwo lines",,,,', // 2-3
      'empty,ok.png,   ,,,,', // 4
      'badint,ok.png,p,,abc,,', // 5
      'zero,ok.png,p,,0,,', // 6
      'cold,ok.png,p,,,-1,', // 7
      'topp,ok.png,p,,,,1.5', // 8
      'good1,ok.png,p,,,,', // 9: repeated id
      'missing,nope.png,p,,,,', // 10
      `outside,../outside-${h.prefix}.png,p,,,,`, // 11
      'link,escape.png,p,,,,', // 12
      'two,ok.png|sub/in.png,p,,,,', // 13
      'unknown,ok.png,p,fal-ai/flux,,,', // 14
      `mantisparam,ok.png,p,${MANTIS},10,,`, // 15
      'wide,ok.png,p,,,,,extra', // 16
      'text,notes.txt,p,,,,', // 17
      'noimage,,p,,,,', // 18
      'good2,sub/in.png,p,,,,', // 19
    ];
    const manifest = h.file('bad.csv', lines.join('\n'));
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.enqueue.rejections.map((r) => [r.line, r.reason])).toEqual([
      [4, 'prompt is empty'],
      [5, 'max_tokens must be a whole number greater than 0, got "abc"'],
      [6, 'max_tokens must be a whole number greater than 0, got "0"'],
      [7, 'temperature must be a number ≥ 0, got "-1"'],
      [8, 'top_p must be a number from 0 to 1, got "1.5"'],
      [9, 'id "good1" appears again (first on line 2); ids must be unique'],
      [10, expect.stringMatching(/^local file "nope.png" not found/)],
      [11, expect.stringMatching(/^local file "\.\.\/outside-.*" is outside the files root/)],
      [12, expect.stringMatching(/^local file "escape.png" is a link to .*, outside the files root/)],
      [13, `${LLAVA} takes one image, this row has 2; use ${MANTIS} for several images`],
      [14, expect.stringMatching(/^endpoint "fal-ai\/flux" is not supported; use one of fal-ai\/llava-next, fal-ai\/mantis-llava-7b-v11/)],
      [15, `max_tokens is not an input of ${MANTIS} (it takes prompt and images); leave the cell empty`],
      [16, '8 fields, but the header has 7 columns; quote fields that contain commas'],
      [17, 'local file "notes.txt" is not an image: its bytes are text/plain, not a PNG, JPEG, WebP, GIF or BMP image (whatever its name says)'],
      [18, 'image_url is empty'],
    ]);
    expect(summary.export).toMatchObject({ rows: 17, ok: 2, rejected: 15, failed: 0 });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    expect(rows.map((r) => r['status'])).toEqual(['ok', ...Array<string>(15).fill('rejected'), 'ok']);
    expect(rows[1]).toMatchObject({ id: 'empty', error: 'line 4: prompt is empty', attempts: '0' });
    expect(h.emulator.stats().submits).toBe(2);
  });

  it('submits nothing new when the same manifest runs again, and answers from Redis', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/1.jpg,one\nhttps://example.com/2.jpg,two\n');
    const first = await runBatch(h.ctx, { manifest, out: join(h.dir, 'first.csv') });
    expect(first.enqueue).toMatchObject({ added: 2, present: 0 });
    const submits = h.emulator.stats().submits;
    const second = await runBatch(h.ctx, { manifest, out: join(h.dir, 'second.csv') });
    expect(second.enqueue).toMatchObject({ batch: first.enqueue.batch, added: 0, present: 2 });
    expect(h.emulator.stats().submits).toBe(submits);
    expect(await readCsv(join(h.dir, 'second.csv'))).toEqual(await readCsv(join(h.dir, 'first.csv')));
  });

  it("run works its own batch only: another batch's waiting rows are left untouched, and a run with nothing to do calls nothing", async () => {
    const h = await createHarness({ emulator: { runners: 2 } });
    const rowsOf = (tag: string, n: number): string => Array.from({ length: n }, (_, i) => `https://example.com/${tag}/${i}.jpg,${tag} ${i}`).join('\n');
    // Batch A: enqueued, no worker serving it; its rows are first in the queue.
    const { batch: other } = await enqueueManifest(h.ctx, { manifest: h.file('a.csv', `image_url,prompt\n${rowsOf('a', 6)}\n`), batch: 'other' });
    const manifest = h.file('b.csv', `image_url,prompt\n${rowsOf('b', 2)}\n`);
    const first = await runCliProcess(['run', manifest, '--batch', 'own', '--out', join(h.dir, 'b.results.csv')], h.env());
    expect(first.code, first.stderr).toBe(0);
    expect(h.emulator.stats().submits).toBe(2);
    expect(await getStatus(h.ctx, other)).toMatchObject({ ok: 0, failed: 0, pending: 6 });
    // Run again: nothing of its own to call, so it calls nothing, for nobody. With more slots than
    // Node's default of 10 listeners on one AbortSignal, every slot resting on A's rows at once
    // must not print a MaxListenersExceededWarning (a leak warning on the user's terminal).
    const again = await runCliProcess(['run', manifest, '--batch', 'own', '--concurrency', '16', '--out', join(h.dir, 'b.results.csv')], h.env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/MaxListenersExceeded/);
    expect(h.emulator.stats().submits).toBe(2);
    // A's rows were given back as they were: a worker serving every batch answers each of them once.
    const worker = await h.startWorker();
    try {
      await until('batch A to finish', async () => (await getStatus(h.ctx, other)).finished, 30_000);
    } finally {
      await worker.close();
    }
    expect(await getStatus(h.ctx, other)).toMatchObject({ ok: 6, failed: 0 });
    expect(h.emulator.stats()).toMatchObject({ submits: 8, billed: 8 });
  });

  it('calls identical rows once, and an edited manifest pays only for its new rows', async () => {
    const h = await createHarness();
    const base = 'image_url,prompt,tag\nhttps://example.com/1.jpg,same,x\nhttps://example.com/1.jpg,same,y\nhttps://example.com/2.jpg,other,z\n';
    const manifest = h.file('m.csv', base);
    const first = await runBatch(h.ctx, { manifest, out: join(h.dir, 'first.csv') });
    expect(first.enqueue).toMatchObject({ rows: 3, added: 2, shared: 1 });
    expect(h.emulator.stats()).toMatchObject({ submits: 2, billed: 2 });
    const firstRows = await readCsv(join(h.dir, 'first.csv'));
    expect(firstRows[0]?.['output']).toBe(firstRows[1]?.['output']);
    expect(firstRows.map((r) => r['tag'])).toEqual(['x', 'y', 'z']);

    writeFileSync(manifest, `${base}https://example.com/3.jpg,new,w\n`);
    const edited = await runBatch(h.ctx, { manifest, out: join(h.dir, 'edited.csv') });
    expect(edited.enqueue.batch).not.toBe(first.enqueue.batch);
    expect(h.emulator.stats()).toMatchObject({ submits: 3, billed: 3, duplicateBilled: 0 });
    const editedRows = await readCsv(join(h.dir, 'edited.csv'));
    expect(editedRows.slice(0, 3).map((r) => r['output'])).toEqual(firstRows.map((r) => r['output']));
    expect(editedRows.slice(0, 3).map((r) => r['attempts'])).toEqual(['0', '0', '0']);
    expect(editedRows[3]).toMatchObject({ status: 'ok', attempts: '1' });
  });

  it("fails a row fal answers 422 at once, without retries, with fal's message", async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\nbad,https://images.invalid/x.png,p\ngood,https://example.com/x.png,p\n');
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ ok: 1, failed: 1 });
    const [bad] = await readCsv(join(h.dir, 'out.csv'));
    expect(bad).toMatchObject({
      status: 'failed',
      attempts: '1',
      error: expect.stringMatching(/^fal 422 .*image_url: Could not load the image: could not download images.invalid/),
    });
    expect(bad?.['request_id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(h.emulator.stats().submits).toBe(2);
  });

  it('tries a failed row again in a later batch (only answers are reused across batches), but not in its own', async () => {
    const h = await createHarness();
    const base = 'id,image_url,prompt\nbad,https://images.invalid/x.png,p\n';
    const manifest = h.file('m.csv', base);
    await runBatch(h.ctx, { manifest, out: join(h.dir, 'first.csv') });
    await runBatch(h.ctx, { manifest, out: join(h.dir, 'again.csv') });
    expect(h.emulator.stats().submits).toBe(1);
    writeFileSync(manifest, `${base}good,https://example.com/x.png,p\n`);
    const edited = await runBatch(h.ctx, { manifest, out: join(h.dir, 'edited.csv') });
    expect(edited.export).toMatchObject({ ok: 1, failed: 1 });
    expect(h.emulator.stats().submits).toBe(3);
  });

  it('exports in manifest order whatever order rows finish in, as CSV or JSONL, with data URIs abbreviated', async () => {
    const h = await createHarness({ emulator: { runners: 8, latency: '10..300ms', seed: 3 } });
    const count = 24;
    const body = Array.from({ length: count }, (_, i) => `r${i},https://example.com/${i}.jpg,prompt ${i}`).join('\n');
    const manifest = h.file('m.csv', `id,image_url,prompt\n${body}\nuri,"${pngDataUri('x'.repeat(300))}",inline\n`);
    await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    expect(rows.map((r) => r['id'])).toEqual([...Array.from({ length: count }, (_, i) => `r${i}`), 'uri']);
    const finished = rows.slice(0, count).map((r) => Number(r['latency_ms']));
    expect(new Set(finished).size).toBeGreaterThan(1);
    expect(rows.at(-1)?.['image_url']).toMatch(/^data:image\/png;base64,.{16}…\(\d+ chars\)$/);

    const batch = (await enqueueManifest(h.ctx, { manifest })).batch;
    const jsonl = join(h.dir, 'out.jsonl');
    const summary = await exportResults(h.ctx, { batch, out: jsonl });
    expect(summary).toMatchObject({ format: 'jsonl', rows: count + 1, ok: count + 1 });
    const objects = readFileSync(jsonl, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(objects[0]).toMatchObject({ id: 'r0', status: 'ok', attempts: 1, latency_ms: expect.any(Number) });
  });

  it('writes the export atomically: a failed write leaves the old file and no temp file behind', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/1.jpg,one\n');
    const { enqueue } = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    const out = join(h.dir, 'taken.csv');
    mkdirSync(out); // renaming a file over a folder fails after the temp file was written
    await expect(exportResults(h.ctx, { batch: enqueue.batch, out })).rejects.toBeInstanceOf(OutputError);
    expect(readdirSync(h.dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    const previous = h.file('prev.csv', 'old content');
    await exportResults(h.ctx, { batch: enqueue.batch, out: previous });
    expect(readFileSync(previous, 'utf8')).toMatch(/^id,status,output,/);
    await expect(exportResults(h.ctx, { batch: enqueue.batch, out: join(h.dir, 'no-such-folder', 'x.csv') })).rejects.toThrow(/does not exist/);
    expect(existsSync(join(h.dir, 'no-such-folder'))).toBe(false);
  });
});

describe('the producer', () => {
  it('returns once every row is stored, with no worker running: the queue holds at most maxWaiting jobs, and a worker started later answers every row', async () => {
    const h = await createHarness({ emulator: { runners: 8 }, config: { maxWaiting: 40, enqueueChunk: 20 } });
    const body = Array.from({ length: 200 }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const manifest = h.file('m.csv', `id,image_url,prompt\n${body}\n`);
    const summary = await enqueueManifest(h.ctx, { manifest });
    expect(summary).toMatchObject({ rows: 200, added: 200, stored: 160 });
    expect(await h.ctx.queue.getWaitingCount()).toBe(40);
    const worker = await h.startWorker();
    expect(await waitForBatch(h.ctx, summary.batch, { intervalMs: 50 })).toMatchObject({ ok: 200, finished: true, backlog: 0 });
    await worker.close();
    expect(h.emulator.stats()).toMatchObject({ billed: 200, duplicateBilled: 0 });
  });

  it('uses the Redis database named in REDIS_URL', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    const url = new URL(h.config.redisUrl);
    url.pathname = '/3';
    const result = await runCliProcess(['enqueue', manifest, '--batch', 'db3'], h.env({ REDIS_URL: url.toString() }));
    expect(result.code).toBe(0);
    const db3 = new Redis(url.toString());
    try {
      expect(await db3.exists(`${h.prefix}:{jobs}:batch:db3:meta`)).toBe(1);
      expect(await h.ctx.redis.exists(`${h.prefix}:{jobs}:batch:db3:meta`)).toBe(0);
      await deletePrefix(url.toString(), h.prefix);
    } finally {
      db3.disconnect();
    }
  });
});
