import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, gunzipSync, gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { createHarness, runCliProcess } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

function readJsonl(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const ROWS = 24;

/**
 * A 🤗 datasets-style Parquet file: an `image` struct {bytes, path} (bytes inline for even rows, a
 * path beside the file for odd ones; row 7's bytes are no image) and a `text` column, in row
 * groups of 10.
 */
function hfParquet(dir: string): string {
  const images = Array.from({ length: ROWS }, (_, i) => {
    if (i === 6) return { bytes: new Uint8Array(Buffer.from('not an image at all')), path: null };
    if (i % 2 === 0) return { bytes: new Uint8Array(pngBytes(`inline-${i}`)), path: `img-${i}.png` };
    writeFileSync(join(dir, `img-${i}.png`), pngBytes(`file-${i}`));
    return { bytes: null, path: `img-${i}.png` };
  });
  const buffer = parquetWriteBuffer({
    schema: [
      { name: 'root', num_children: 2 },
      { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
      { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
      { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ],
    columnData: [
      { name: 'image', data: images },
      { name: 'text', data: Array.from({ length: ROWS }, (_, i) => `subject ${i}`) },
    ],
    rowGroupSize: 10,
  });
  const path = join(dir, 'train-00000-of-00001.parquet');
  writeFileSync(path, new Uint8Array(buffer));
  return path;
}

describe('run over Parquet and JSONL manifests', () => {
  it('runs a 🤗 Parquet file (image structs, row groups): every row once, in manifest order, rejections by row; a rerun calls nothing again', async () => {
    const h = await createHarness();
    const manifest = hfParquet(h.dir);
    const out = join(h.dir, 'results.jsonl');
    const args = ['run', manifest, '--emulate', '--inline-images', '--out', out, '--input', '{"image_url":"{image:image}","prompt":"Describe the {text}"}'];
    const first = await runCliProcess([...args, '--endpoint', 'fal-ai/llava-next'], h.env());
    expect(first.stderr).not.toMatch(/\n\s+at /);
    expect(first.code, first.stderr).toBe(2);
    expect(first.stdout).toContain(`${ROWS} rows read; ${ROWS - 1} added, 0 already present, 1 rejected`);
    expect(first.stderr).toContain('row 7: image holds a data URI whose bytes are text/plain, not a PNG, JPEG, WebP, GIF or BMP image');

    const rows = readJsonl(out);
    // Manifest order, each row once: the carried text column counts 0..23.
    expect(rows.map((r) => r['prompt'])).toEqual(Array.from({ length: ROWS }, (_, i) => `Describe the subject ${i}`));
    expect(rows.filter((r) => r['status'] === 'ok')).toHaveLength(ROWS - 1);
    expect(rows[6]).toMatchObject({ status: 'rejected', error: expect.stringMatching(/^row 7: image holds a data URI/) });
    expect(rows[1]).toMatchObject({ image_url: 'img-1.png', 'image.path': 'img-1.png' });

    // Run again: nothing is added, the results file is the same.
    const again = await runCliProcess([...args, '--endpoint', 'fal-ai/llava-next'], h.env());
    expect(again.code, again.stderr).toBe(2);
    expect(again.stdout).toContain(`${ROWS} rows read; 0 added, ${ROWS - 1} already present, 1 rejected`);
    expect(readJsonl(out)).toEqual(rows);
  });

  it("uploads a Parquet file's embedded images to fal storage once each, like local files, the jobs carrying only their URLs; inline, they are the same rows", async () => {
    const h = await createHarness();
    const manifest = hfParquet(h.dir);
    const input = '{"image_url":"{image:image}","prompt":"Describe the {text}"}';
    const result = await runCliProcess(['enqueue', manifest, '--batch', 'hf', '--endpoint', 'fal-ai/llava-next', '--input', input], h.env());
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toContain(`${ROWS} rows read; ${ROWS - 1} added, 0 already present, 1 rejected`);
    // 11 embedded images (row 7's bytes are no image) and 12 files beside the manifest: each uploaded once.
    expect(h.emulator.stats().uploads).toBe(ROWS - 1);
    const jobs = (await h.ctx.redis.keys(`${h.prefix}:{jobs}:hf/*`)).filter((key) => /\/[0-9a-f]{32}$/.test(key));
    expect(jobs).toHaveLength(ROWS - 1);
    const data = (await Promise.all(jobs.map((key) => h.ctx.redis.hget(key, 'data')))).join('\n');
    expect(data).not.toContain('data:image/png;base64');
    expect(data).toContain(h.emulator.url);
    // The same rows inline: their identities are the same, so the batch already has every row.
    const inline = await runCliProcess(['enqueue', manifest, '--batch', 'hf', '--endpoint', 'fal-ai/llava-next', '--input', input, '--inline-images'], h.env());
    expect(inline.stdout).toContain(`${ROWS} rows read; 0 added, ${ROWS - 1} already present, 1 rejected`);
  });

  it('runs a gzipped JSONL of URLs (LAION / img2dataset style) mapped with --input; a rerun skips the unchanged rows and calls the changed one', async () => {
    const h = await createHarness();
    const objects = Array.from({ length: 12 }, (_, i) => ({
      key: `${String(i).padStart(9, '0')}`,
      url: `https://example.com/laion/${i}.jpg`,
      caption: `a photo number ${i}`,
      meta: { width: 512 + i, source: 'laion' },
    }));
    const write = (list: typeof objects): string => h.file('part-00000.jsonl.gz', gzipSync(`${list.map((o) => JSON.stringify(o)).join('\n')}\n`));
    const manifest = write(objects);
    const out = join(h.dir, 'captions.csv');
    // Against the test's own emulator (FAL_BASE_URL), so its bill counts the calls.
    const args = [
      'run',
      manifest,
      '--batch',
      'laion-part-0',
      '--out',
      out,
      '--endpoint',
      'fal-ai/llava-next',
      '--input',
      '{"image_url":"{url:image}","prompt":"Caption it; alt text: {caption}"}',
    ];
    const first = await runCliProcess(args, h.env());
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('12 rows read; 12 added, 0 already present, 0 rejected');
    const csv = readFileSync(out, 'utf8').trim().split('\n');
    expect(csv[0]).toContain('key,caption,meta.width,meta.source');
    expect(csv.slice(1).map((line) => line.split(',').at(-4))).toEqual(objects.map((o) => o.key));

    // The same rows with one caption changed: eleven are not called again.
    const billed = h.emulator.stats().billed;
    write(objects.map((o, i) => (i === 5 ? { ...o, caption: 'a different caption' } : o)));
    const again = await runCliProcess(args, h.env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('12 rows read; 1 added, 11 already present, 0 rejected');
    expect(h.emulator.stats().billed).toBe(billed + 1);
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(13);
  });

  it('a truncated .jsonl.gz fails with exit 1 naming the file, without a stack and without a half row', async () => {
    const h = await createHarness();
    const text = `${Array.from({ length: 3000 }, (_, i) => JSON.stringify({ image_url: `https://example.com/${i}.jpg`, prompt: `prompt number ${i}` })).join('\n')}\n`;
    const whole = gzipSync(text);
    const manifest = h.file('cut.jsonl.gz', whole.subarray(0, Math.floor(whole.length / 2)));
    const result = await runCliProcess(['enqueue', manifest, '--batch', 'cut'], h.env());
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`Cannot read manifest ${manifest}: the gzip stream stops before its end: the file is truncated`);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    // What was enqueued before the cut is whole rows of the file (as with a CSV whose read fails
    // midway: the same command resumes once the file is whole); the row the cut went through never is.
    const jobs = (await h.ctx.redis.keys(`${h.prefix}:{jobs}:cut/*`)).filter((key) => /\/[0-9a-f]{32}$/.test(key));
    const complete =
      gunzipSync(whole.subarray(0, Math.floor(whole.length / 2)), { finishFlush: constants.Z_SYNC_FLUSH })
        .toString()
        .split('\n').length - 1;
    expect(jobs.length).toBeGreaterThan(0);
    expect(jobs.length).toBeLessThanOrEqual(complete);
    for (const key of jobs) expect(await h.ctx.redis.hget(key, 'data')).toMatch(/"prompt":"prompt number \d+"/);
  });

  it('a Parquet file whose columns do not fit the mapping fails with exit 1 naming the file, the column and the columns it has; nothing is written', async () => {
    const h = await createHarness();
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'url', data: ['https://example.com/a.jpg'], type: 'STRING' },
        { name: 'caption', data: ['a cat'], type: 'STRING' },
      ],
    });
    const manifest = h.file('laion.parquet', Buffer.from(buffer));
    const result = await runCliProcess(['enqueue', manifest], h.env());
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${manifest}: the Parquet file's schema has no "image_url" or "prompt" column. Found: "url", "caption".`);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(await h.ctx.redis.keys(`${h.prefix}:*batch*`)).toEqual([]);
  });

  it('--manifest-format reads a file whose name tells nothing; a format it does not know exits 1 naming the flag', async () => {
    const h = await createHarness();
    const manifest = h.file(
      'export.txt',
      '{"image_url":"https://example.com/a.jpg","prompt":"one"}\n{"image_url":"https://example.com/b.jpg","prompt":"two"}\n',
    );
    const read = await runCliProcess(['enqueue', manifest, '--manifest-format', 'jsonl', '--dry-run'], h.env());
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout).toMatch(/rows\s+2 \(0 rejected\)/);
    const refused = await runCliProcess(['enqueue', manifest, '--manifest-format', 'xlsx'], h.env());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('Expected --manifest-format to be csv, jsonl or parquet, got "xlsx"');
  });
});
