import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { describe, expect, it } from 'vitest';
import { waitForBatch } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { captionOptions } from '../../src/results/caption-files.js';
import { exportResults } from '../../src/results/export.js';
import { writeCaptions } from '../../src/results/write-captions.js';
import { createHarness, readCsv, runCliProcess } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

function readJsonl(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function readParquet(path: string): Promise<Array<Record<string, unknown>>> {
  return (await parquetReadObjects({ file: await asyncBufferFromFile(path) })) as Array<Record<string, unknown>>;
}

function byId<T extends Record<string, unknown>>(rows: T[], key = 'id'): Record<string, T> {
  return Object.fromEntries(rows.map((row) => [String(row[key]), row]));
}

/** metadata.jsonl must say, image by image, exactly what the caption files say. */
function expectMetadataMirrorsCaptionFiles(folder: string, images: string[]): Array<Record<string, unknown>> {
  const lines = readJsonl(join(folder, 'metadata.jsonl'));
  expect(lines.map((line) => line['file_name']).sort()).toEqual([...images].sort());
  for (const line of lines) {
    const txt = join(folder, String(line['file_name']).replace(/\.png$/, '.txt'));
    expect(line['text'], String(line['file_name'])).toBe(readFileSync(txt, 'utf8'));
  }
  return lines;
}

/** A folder of real images (`sub/` included), and the maintainer's caption command for it. */
async function captionedFolder(dir: string, images: string[], out: string): Promise<{ folder: string; args: string[] }> {
  const folder = join(dir, 'set');
  mkdirSync(join(folder, 'sub'), { recursive: true });
  for (const image of images) writeFileSync(join(folder, image), pngBytes(image));
  return { folder, args: ['run', folder, '--prompt', 'Caption this', '--captions', '--caption-prefix', 'ohwx, ', '--hf-metadata', '--out', out] };
}

async function runOk(args: string[], env: Record<string, string>): Promise<string> {
  const result = await runCliProcess(args, env);
  expect(result.code, result.stderr).toBe(0);
  return result.stdout;
}

const IMAGES = ['a.png', 'b.png', 'sub/c.png'];

describe('running the same caption command again keeps the dataset whole', () => {
  it('metadata.jsonl lists every captioned image after a rerun, and after an image is added', async () => {
    const h = await createHarness();
    const { folder, args } = await captionedFolder(h.dir, IMAGES, join(h.dir, 'caps.parquet'));
    await runOk(args, h.env());
    expect(readJsonl(join(folder, 'metadata.jsonl')).map((line) => line['file_name'])).toEqual(IMAGES);
    await runOk(args, h.env());
    expect(h.emulator.stats()).toMatchObject({ accepted: 3 });
    expect(readJsonl(join(folder, 'metadata.jsonl')).map((line) => line['file_name'])).toEqual(IMAGES);
    writeFileSync(join(folder, 'sub', 'new.png'), pngBytes('new'));
    const added = await runOk(args, h.env());
    expect(h.emulator.stats()).toMatchObject({ accepted: 4 });
    expect(added).toContain(`hf metadata  ${join(folder, 'metadata.jsonl')}: 4 images captioned`);
    expect(readJsonl(join(folder, 'metadata.jsonl')).map((line) => line['file_name'])).toEqual([...IMAGES, 'sub/new.png']);
  }, 90_000);

  it("metadata.jsonl's text is byte for byte its caption file, trigger word included, for images captioned now, before, or by hand", async () => {
    const h = await createHarness();
    const { folder, args } = await captionedFolder(h.dir, [...IMAGES, 'hand.png'], join(h.dir, 'caps.parquet'));
    writeFileSync(join(folder, 'hand.txt'), 'ohwx, a hand-written caption\n');
    await runOk(args, h.env());
    const lines = expectMetadataMirrorsCaptionFiles(folder, [...IMAGES, 'hand.png']);
    expect(lines.every((line) => String(line['text']).startsWith('ohwx, '))).toBe(true);
    await runOk(args, h.env());
    expect(expectMetadataMirrorsCaptionFiles(folder, [...IMAGES, 'hand.png'])).toEqual(lines);
  }, 60_000);

  it('the results of a rerun carry the caption of every skipped row: the answer the batch made it from, else its file', async () => {
    const h = await createHarness();
    const out = join(h.dir, 'caps.parquet');
    const { folder, args } = await captionedFolder(h.dir, [...IMAGES, 'hand.png'], out);
    writeFileSync(join(folder, 'hand.txt'), 'ohwx, a hand-written caption\n');
    await runOk(args, h.env());
    const first = byId(await readParquet(out));
    expect(first['hand.png']).toMatchObject({ status: 'skipped', output: 'ohwx, a hand-written caption\n', attempts: 0 });
    const answers = Object.fromEntries(IMAGES.map((id) => [id, first[id]?.['output']]));
    await runOk(args, h.env());
    const rerun = byId(await readParquet(out));
    expect(Object.values(rerun).map((row) => row['status'])).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
    for (const id of IMAGES) {
      expect(answers[id]).toMatch(/\w/);
      expect(rerun[id]).toMatchObject({
        status: 'skipped',
        output: answers[id],
        attempts: 0,
        request_id: null,
        error: expect.stringContaining('exists (--caption-mode skip)'),
      });
    }
    expect(rerun['hand.png']?.['output']).toBe('ohwx, a hand-written caption\n');
  }, 60_000);

  it('a string a row does not have is NULL in Parquet and null in JSONL (an empty cell in CSV), like its numbers and booleans', async () => {
    const h = await createHarness();
    const out = join(h.dir, 'caps.parquet');
    const { args } = await captionedFolder(h.dir, ['a.png'], out);
    const batch = /batch (\S+):/.exec(await runOk(args, h.env()))?.[1] ?? '';
    expect((await readParquet(out))[0]).toMatchObject({ id: 'a.png', status: 'ok', error: null, error_type: null, latency_ms: expect.anything() });
    const jsonl = join(h.dir, 'caps.jsonl');
    await runOk(['export', '--batch', batch, '--out', jsonl], h.env());
    expect(readJsonl(jsonl)[0]).toMatchObject({ status: 'ok', error: null, error_type: null });
    const csv = join(h.dir, 'caps.csv');
    await runOk(['export', '--batch', batch, '--out', csv], h.env());
    expect((await readCsv(csv))[0]).toMatchObject({ status: 'ok', error: '', error_type: '' });
  }, 60_000);

  it('export --batch after a rerun, without the caption flags, writes the whole dataset too (the batch knows its caption files)', async () => {
    const h = await createHarness();
    const { folder, args } = await captionedFolder(h.dir, IMAGES, join(h.dir, 'caps.parquet'));
    await runOk(args, h.env());
    const batch = /batch (\S+):/.exec(await runOk(args, h.env()))?.[1] ?? '';
    const jsonl = join(h.dir, 'again.jsonl');
    const exported = await runOk(['export', '--batch', batch, '--out', jsonl, '--hf-metadata'], h.env());
    expect(exported).toContain(`hf metadata  ${join(folder, 'metadata.jsonl')}: 3 images captioned`);
    expectMetadataMirrorsCaptionFiles(folder, IMAGES);
    for (const row of readJsonl(jsonl))
      expect(`ohwx, ${String(row['output'])}`).toBe(readFileSync(join(folder, String(row['id']).replace('.png', '.txt')), 'utf8'));
  }, 60_000);

  it("export --batch --captions after a separate enqueue writes the caption files as that enqueue's caption flags said (trigger word, extension)", async () => {
    // Seen from outside: `enqueue --captions --caption-prefix "tok, "`, `work`, then
    // `export --batch B --captions` wrote captions without the trigger word.
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(folder);
    for (const image of ['a.png', 'b.png']) writeFileSync(join(folder, image), pngBytes(image));
    const enqueued = await runOk(
      ['enqueue', folder, '--prompt', 'Caption this', '--captions', '--caption-prefix', 'tok, ', '--caption-suffix', ' [end]', '--caption-ext', '.caption'],
      h.env(),
    );
    const batch = /batch (\S+):/.exec(enqueued)?.[1] ?? '';
    const worker = await h.startWorker();
    try {
      await waitForBatch(h.ctx, batch, { intervalMs: 100 });
    } finally {
      await worker.close();
    }
    const out = join(h.dir, 'out.jsonl');
    await runOk(['export', '--batch', batch, '--captions', '--out', out, '--hf-metadata'], h.env());
    for (const row of readJsonl(out)) {
      expect(readFileSync(join(folder, String(row['id']).replace('.png', '.caption')), 'utf8')).toBe(`tok, ${String(row['output'])} [end]`);
    }
    // A flag given to export wins over the batch's.
    await runOk(['export', '--batch', batch, '--captions', '--caption-mode', 'overwrite', '--caption-prefix', 'other, '], h.env());
    expect(readFileSync(join(folder, 'a.caption'), 'utf8')).toMatch(/^other, .* \[end\]$/);
  }, 60_000);

  it('export --batch --captions in another mode writes the files first, and metadata.jsonl says what they now hold', async () => {
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(folder);
    for (const image of ['a.png', 'b.png']) writeFileSync(join(folder, image), pngBytes(image));
    const batch =
      /batch (\S+):/.exec(await runOk(['run', folder, '--prompt', 'Caption this', '--captions', '--out', join(h.dir, 'out.csv')], h.env()))?.[1] ?? '';
    await runOk(
      ['export', '--batch', batch, '--out', join(h.dir, 'out.jsonl'), '--hf-metadata', '--captions', '--caption-mode', 'append', '--caption-suffix', ' [v2]'],
      h.env(),
    );
    const lines = expectMetadataMirrorsCaptionFiles(folder, ['a.png', 'b.png']);
    expect(lines.every((line) => String(line['text']).endsWith(' [v2]'))).toBe(true);
  }, 60_000);
});

describe('every file of a folder and every rejected line is accounted for', () => {
  it('a FIFO named as an image is a rejected row saying what it is, and files that are not images are counted (nothing blocks on the FIFO)', async () => {
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.png'), pngBytes('a'));
    execFileSync('mkfifo', [join(folder, 'pipe.png')]);
    // Files that are not images are counted too (a hidden one is not: it is nobody's dataset).
    for (const name of ['notes.txt', 'photo.heic', 'readme', '.DS_Store']) writeFileSync(join(folder, name), 'x');
    const out = join(h.dir, 'out.csv');
    const result = await runCliProcess(['run', folder, '--prompt', 'Caption this', '--out', out], h.env());
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toMatch(/1 rejected/);
    expect(result.stdout).toContain('3 other files in the folder left out, not images (1 .txt, 1 .heic, 1 without an extension)');
    const rows = byId(await readCsv(out));
    expect(rows['a.png']?.['status']).toBe('ok');
    // A folder's records are its files: named by their path, not by a "line" the user never wrote.
    expect(result.stderr).toMatch(/^ {2}local file "pipe\.png" is not a regular file \(a FIFO\)/m);
    expect(result.stderr).not.toMatch(/line \d+:/);
    expect(rows['pipe.png']).toMatchObject({ status: 'rejected', error: expect.stringMatching(/^local file "pipe\.png" is not a regular file \(a FIFO\)/) });
  }, 60_000);

  it('a line rejected for its bytes (too long, not UTF-8) keeps its id in the results and errors files', async () => {
    const h = await createHarness();
    const manifest = h.file(
      'm.csv',
      Buffer.concat([
        Buffer.from('id,image_url,prompt,note\n'),
        Buffer.from(`long-1,https://example.com/a.png,${'x'.repeat(3000)},n1\n`),
        Buffer.from('latin-2,https://example.com/b.png,caf'),
        Buffer.from([0xe9]),
        Buffer.from(',n2\n'),
        Buffer.from('ok-3,https://example.com/c.png,Describe,n3\n'),
      ]),
    );
    const out = join(h.dir, 'out.csv');
    const result = await runCliProcess(['run', manifest, '--out', out, '--max-record-bytes', '1024'], h.env());
    expect(result.code, result.stderr).toBe(2);
    const rows = await readCsv(out);
    expect(rows.map((row) => [row['id'], row['status']])).toEqual([
      ['long-1', 'rejected'],
      ['latin-2', 'rejected'],
      ['ok-3', 'ok'],
    ]);
    expect(rows[0]?.['error']).toContain('over the limit of 1.0 KiB');
    expect(rows[1]?.['error']).toContain('not valid UTF-8');
    const errors = await readCsv(join(h.dir, 'out.errors.csv'));
    expect(errors.map((row) => row['id'])).toEqual(['long-1', 'latin-2']);
  }, 60_000);
});

describe('metadata.jsonl of a batch with caption files, exported before they are written', () => {
  it('leaves out, and counts, answered images whose caption file is not written yet; a hand-written one goes in; writing the captions completes it', async () => {
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(folder);
    for (const image of ['a.png', 'b.png', 'hand.png']) writeFileSync(join(folder, image), pngBytes(image));
    writeFileSync(join(folder, 'hand.txt'), 'by hand');
    const captions = captionOptions({ prefix: 'ohwx, ' });
    const { batch } = await enqueueManifest(h.ctx, { manifest: folder, prompt: 'Caption this', captions });
    const worker = await h.startWorker();
    await waitForBatch(h.ctx, batch, { intervalMs: 50 });
    await worker.close();
    const out = join(h.dir, 'out.jsonl');
    // The batch remembers its caption files: export reads them without being told.
    const before = await exportResults(h.ctx, { batch, out, hfMetadata: {} });
    expect(before.hfMetadata).toMatchObject({ written: 1, leftOut: { noCaptionFile: 2, notAnswered: 0 } });
    expect(readJsonl(join(folder, 'metadata.jsonl'))).toEqual([{ file_name: 'hand.png', text: 'by hand' }]);
    await writeCaptions(h.ctx, { batch, captions });
    const after = await exportResults(h.ctx, { batch, out, hfMetadata: {} });
    expect(after.hfMetadata).toMatchObject({ written: 3, leftOut: { noCaptionFile: 0 } });
    expectMetadataMirrorsCaptionFiles(folder, ['a.png', 'b.png', 'hand.png']);
  }, 60_000);
});
