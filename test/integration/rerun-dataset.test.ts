import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { describe, expect, it } from 'vitest';
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

describe('running the same caption command again keeps the dataset whole', () => {
  it('metadata.jsonl and the results list every captioned image, made now or before, with the text of its caption file; missing strings are NULL in Parquet', async () => {
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(join(folder, 'sub'), { recursive: true });
    const images = ['a.png', 'b.png', 'sub/c.png', 'hand.png'];
    for (const image of images) writeFileSync(join(folder, image), pngBytes(image));
    // Captioned by hand before falbatch ever ran: the dataset has it too.
    writeFileSync(join(folder, 'hand.txt'), 'ohwx, a hand-written caption\n');
    const out = join(h.dir, 'caps.parquet');
    const args = ['run', folder, '--prompt', 'Caption this', '--captions', '--caption-prefix', 'ohwx, ', '--hf-metadata', '--out', out];

    const first = await runCliProcess(args, h.env());
    expect(first.code, first.stderr).toBe(0);
    const batch = /batch (\S+):/.exec(first.stdout)?.[1] ?? '';
    expect(h.emulator.stats()).toMatchObject({ accepted: 3 });
    // The trigger word is in metadata.jsonl, as in the .txt files.
    const firstLines = expectMetadataMirrorsCaptionFiles(folder, images);
    expect(firstLines.every((line) => String(line['text']).startsWith('ohwx, '))).toBe(true);
    const firstRows = byId(await readParquet(out));
    expect(firstRows['a.png']).toMatchObject({ status: 'ok', error: null, error_type: null });
    expect(firstRows['hand.png']).toMatchObject({ status: 'skipped', output: 'ohwx, a hand-written caption\n', request_id: null, error_type: null, attempts: 0 });
    const answers = Object.fromEntries(['a.png', 'b.png', 'sub/c.png'].map((id) => [id, firstRows[id]?.['output']]));
    for (const [id, answer] of Object.entries(answers)) expect(readFileSync(join(folder, id.replace('.png', '.txt')), 'utf8')).toBe(`ohwx, ${answer}`);

    // The same command again: nothing to call, and the outputs still describe the whole folder.
    const again = await runCliProcess(args, h.env());
    expect(again.code, again.stderr).toBe(0);
    expect(h.emulator.stats()).toMatchObject({ accepted: 3 });
    expect(expectMetadataMirrorsCaptionFiles(folder, images)).toEqual(firstLines);
    const rerunRows = byId(await readParquet(out));
    expect(Object.values(rerunRows).map((row) => row['status'])).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
    // Each skipped row carries its caption: the answer this batch made it from, else its file's text.
    for (const [id, answer] of Object.entries(answers)) expect(rerunRows[id]).toMatchObject({ status: 'skipped', output: answer, attempts: 0, request_id: null });
    expect(rerunRows['hand.png']?.['output']).toBe('ohwx, a hand-written caption\n');

    // One image more: it alone is called, and every image is in the dataset.
    writeFileSync(join(folder, 'sub', 'new.png'), pngBytes('new'));
    const added = await runCliProcess(args, h.env());
    expect(added.code, added.stderr).toBe(0);
    expect(h.emulator.stats()).toMatchObject({ accepted: 4 });
    expectMetadataMirrorsCaptionFiles(folder, [...images, 'sub/new.png']);
    const addedRows = byId(await readParquet(out));
    expect(addedRows['sub/new.png']).toMatchObject({ status: 'ok', error: null });
    expect(Object.values(addedRows).filter((row) => row['status'] === 'skipped')).toHaveLength(4);

    // export --batch, without the caption flags (the batch knows its caption files): the same dataset.
    const before = readFileSync(join(folder, 'metadata.jsonl'), 'utf8');
    const jsonl = join(h.dir, 'again.jsonl');
    const exported = await runCliProcess(['export', '--batch', batch, '--out', jsonl, '--hf-metadata'], h.env());
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toContain(`hf metadata  ${join(folder, 'metadata.jsonl')}: 5 images captioned`);
    expect(readFileSync(join(folder, 'metadata.jsonl'), 'utf8')).toBe(before);
    const jsonlRows = byId(readJsonl(jsonl));
    expect(jsonlRows['a.png']).toMatchObject({ status: 'skipped', output: answers['a.png'], request_id: null });
    expect(jsonlRows['sub/new.png']).toMatchObject({ status: 'ok', error: null, error_type: null });
    // CSV has an empty cell where JSONL and Parquet have null.
    const csv = join(h.dir, 'again.csv');
    expect((await runCliProcess(['export', '--batch', batch, '--out', csv], h.env())).code).toBe(0);
    expect(byId(await readCsv(csv))['sub/new.png']).toMatchObject({ status: 'ok', error: '', error_type: '' });
  }, 90_000);

  it('export --batch --captions in another mode writes the files first, and metadata.jsonl says what they now hold', async () => {
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(folder);
    for (const image of ['a.png', 'b.png']) writeFileSync(join(folder, image), pngBytes(image));
    const first = await runCliProcess(['run', folder, '--prompt', 'Caption this', '--captions', '--out', join(h.dir, 'out.csv')], h.env());
    expect(first.code, first.stderr).toBe(0);
    const batch = /batch (\S+):/.exec(first.stdout)?.[1] ?? '';
    const result = await runCliProcess(['export', '--batch', batch, '--out', join(h.dir, 'out.jsonl'), '--hf-metadata', '--captions', '--caption-mode', 'append', '--caption-suffix', ' [v2]'], h.env());
    expect(result.code, result.stderr).toBe(0);
    const lines = expectMetadataMirrorsCaptionFiles(folder, ['a.png', 'b.png']);
    expect(lines.every((line) => String(line['text']).endsWith(' [v2]'))).toBe(true);
  }, 60_000);
});

describe('every file of a folder and every rejected line is accounted for', () => {
  it('a FIFO named as an image is a rejected row saying what it is, not left out unseen (and nothing blocks on it)', async () => {
    const h = await createHarness();
    const folder = join(h.dir, 'set');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.png'), pngBytes('a'));
    execFileSync('mkfifo', [join(folder, 'pipe.png')]);
    const out = join(h.dir, 'out.csv');
    const result = await runCliProcess(['run', folder, '--prompt', 'Caption this', '--out', out], h.env());
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toMatch(/1 rejected/);
    const rows = byId(await readCsv(out));
    expect(rows['a.png']?.['status']).toBe('ok');
    expect(rows['pipe.png']).toMatchObject({ status: 'rejected', error: expect.stringContaining('is not a regular file (a FIFO)') });
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
