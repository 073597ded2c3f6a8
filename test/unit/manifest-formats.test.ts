import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parquetMetadata } from 'hyparquet';
import { type ColumnSource, parquetWriteBuffer } from 'hyparquet-writer';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, ManifestError } from '../../src/errors.js';
import { localManifestBytes, type ManifestBytes } from '../../src/manifest/manifest-bytes.js';
import { manifestEncodingOf, parseManifestFormat, recordLabelOf } from '../../src/manifest/manifest-format.js';
import { manifestRecords } from '../../src/manifest/manifest-records.js';
import { checkColumns, openManifestSource } from '../../src/manifest/manifest-source.js';
import { readJsonl } from '../../src/manifest/read-jsonl.js';
import type { RawRecord } from '../../src/manifest/read-records.js';
import { pngBytes } from '../helpers/images.js';

let dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs = [];
});

function file(name: string, content: string | Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-formats-'));
  dirs.push(dir);
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

async function collect(records: AsyncIterable<RawRecord>): Promise<RawRecord[]> {
  const out: RawRecord[] = [];
  for await (const record of records) out.push(record);
  return out;
}

/** Reads until the reader throws: the records that came out first, and the error. */
async function collectUntilError(records: AsyncIterable<RawRecord>): Promise<{ records: RawRecord[]; error: unknown }> {
  const out: RawRecord[] = [];
  try {
    for await (const record of records) out.push(record);
  } catch (error) {
    return { records: out, error };
  }
  return { records: out, error: undefined };
}

function readFile(path: string, maxRecordBytes?: number): AsyncIterable<RawRecord> {
  return manifestRecords(localManifestBytes(path), manifestEncodingOf(path), maxRecordBytes === undefined ? {} : { maxRecordBytes });
}

const jsonl = (...objects: unknown[]): string => `${objects.map((o) => JSON.stringify(o)).join('\n')}\n`;

const utf8 = (name: string, data: Array<string | null>): ColumnSource => ({ name, data, type: 'STRING' });

describe('manifest format by name', () => {
  it.each([
    ['jobs.csv', 'csv', false],
    ['jobs.CSV.gz', 'csv', true],
    ['rows.jsonl', 'jsonl', false],
    ['rows.ndjson.gz', 'jsonl', true],
    ['train-00000-of-00004.parquet', 'parquet', false],
    ['no-extension', 'csv', false],
    ['/data.v2/manifest', 'csv', false],
    ['https://host/rows.jsonl?token=x', 'jsonl', false],
  ])('%s is %s (gzip: %s)', (name, format, gzip) => {
    expect(manifestEncodingOf(name)).toEqual({ format, gzip });
  });

  it('--manifest-format wins over the name; gzip still comes from .gz', () => {
    expect(manifestEncodingOf('export.txt', 'jsonl')).toEqual({ format: 'jsonl', gzip: false });
    expect(manifestEncodingOf('dump.gz', 'jsonl')).toEqual({ format: 'jsonl', gzip: true });
  });

  it('refuses a gzipped Parquet file, saying why and what to do', () => {
    expect(() => manifestEncodingOf('/d/train.parquet.gz')).toThrow(
      /\/d\/train\.parquet\.gz: a gzip-compressed Parquet file cannot be read a row group at a time; decompress it/,
    );
  });

  it('--manifest-format takes csv, jsonl (or ndjson) and parquet, and names itself otherwise', () => {
    expect(parseManifestFormat('--manifest-format', 'Parquet')).toBe('parquet');
    expect(parseManifestFormat('--manifest-format', 'ndjson')).toBe('jsonl');
    expect(parseManifestFormat('--manifest-format', undefined)).toBeUndefined();
    expect(() => parseManifestFormat('--manifest-format', 'xlsx')).toThrow(ConfigError);
    expect(() => parseManifestFormat('--manifest-format', 'xlsx')).toThrow('Expected --manifest-format to be csv, jsonl or parquet, got "xlsx"');
  });

  it("names a Parquet manifest's records rows, a text one's lines", () => {
    expect(recordLabelOf('/d/train.parquet')).toBe('row');
    expect(recordLabelOf('/d/rows.jsonl.gz')).toBe('line');
    expect(recordLabelOf('/d/blob', 'parquet')).toBe('row');
  });
});

describe('JSON Lines manifests', () => {
  it('takes the columns from the first object, flattens nested objects into dotted columns, and writes scalars as CSV would', async () => {
    const text = jsonl(
      { id: 'a', image_url: 'https://x/a.jpg', prompt: 'one', meta: { width: 640, nsfw: false }, score: 0.25, tags: ['cat', 'dog'], note: null },
      { id: 'b', image_url: 'https://x/b.jpg', prompt: 'two', meta: { width: 1024, nsfw: true }, score: 1e21, tags: [], note: 'n' },
    );
    expect(await collect(readJsonl([Buffer.from(text)]))).toEqual([
      { line: 1, fields: ['id', 'image_url', 'prompt', 'meta.width', 'meta.nsfw', 'score', 'tags', 'note'] },
      { line: 1, fields: ['a', 'https://x/a.jpg', 'one', '640', 'false', '0.25', '["cat","dog"]', ''] },
      { line: 2, fields: ['b', 'https://x/b.jpg', 'two', '1024', 'true', '1e+21', '[]', 'n'] },
    ]);
  });

  it('leaves keys a later line omits empty, and rejects on its line a key the first line did not have', async () => {
    const text = `${jsonl({ image_url: 'a.png', prompt: 'p' }, { image_url: 'b.png' })}\n${jsonl({ image_url: 'c.png', prompt: 'q', caption: 'x' })}`;
    const records = await collect(readJsonl([Buffer.from(text)]));
    expect(records[2]).toEqual({ line: 2, fields: ['b.png', ''] });
    expect(records[3]).toEqual({
      line: 4,
      error: 'key "caption" is not among the columns the first line set ("image_url", "prompt"); give the first line every key (null where it has no value)',
    });
  });

  it('rejects a line that is not a JSON object on its line, and goes on with the next', async () => {
    const text = `${jsonl({ image_url: 'a', prompt: 'p' })}{"image_url": "b", "prompt": \n[1,2]\n${jsonl({ image_url: 'c', prompt: 'r' })}`;
    const records = await collect(readJsonl([Buffer.from(text)]));
    expect(records.slice(2)).toEqual([
      { line: 2, error: expect.stringMatching(/^not valid JSON \(.+\); each line must hold one JSON object$/) },
      { line: 3, error: 'an array, not a JSON object; each line must hold one object, e.g. {"image_url": "…", "prompt": "…"}' },
      { line: 4, fields: ['c', 'r'] },
    ]);
  });

  it('rejects a line over --max-record-bytes on its line without holding it, like a CSV line', async () => {
    const text = jsonl({ image_url: 'a', prompt: 'p' }, { image_url: 'b', prompt: 'x'.repeat(5000) }, { image_url: 'c', prompt: 'r' });
    const records = await collect(readJsonl([Buffer.from(text)], { maxRecordBytes: 2048 }));
    expect(records[2]).toEqual({
      line: 2,
      error: expect.stringMatching(/^the line is 4\.9 KiB long, over the limit of 2\.0 KiB \(--max-record-bytes\); it was skipped$/),
    });
    expect(records[3]).toEqual({ line: 3, fields: ['c', 'r'] });
  });

  it('fails the manifest when its first line, which names the columns, is not an object', async () => {
    expect(await collect(readJsonl([Buffer.from('"just a string"\n{"a":1}\n')]))).toEqual([
      { line: 1, error: expect.stringMatching(/^the first line, which names the columns, is unusable: a string, not a JSON object/) },
    ]);
  });
});

describe('gzip-compressed text manifests', () => {
  const rows = Array.from({ length: 2000 }, (_, i) => ({ id: `r${i}`, image_url: `https://x/${i}.jpg`, prompt: `prompt ${i} ${'words '.repeat(5)}` }));

  it('streams a .jsonl.gz and a .csv.gz decompressed, row for row', async () => {
    const jsonlRecords = await collect(readFile(file('rows.jsonl.gz', gzipSync(jsonl(...rows)))));
    expect(jsonlRecords).toHaveLength(2001);
    expect(jsonlRecords[2000]).toEqual({ line: 2000, fields: ['r1999', 'https://x/1999.jpg', rows[1999]?.prompt] });
    const csv = `id,image_url,prompt\n${rows.map((r) => `${r.id},${r.image_url},${r.prompt}`).join('\n')}\n`;
    const csvRecords = await collect(readFile(file('jobs.csv.gz', gzipSync(csv))));
    expect(csvRecords.slice(1)).toEqual(jsonlRecords.slice(1).map((r) => ({ ...r, line: r.line + 1 })));
  });

  it('reads gzip members one after another, as `cat a.gz b.gz` makes them', async () => {
    const joined = Buffer.concat([gzipSync(jsonl(rows[0], rows[1])), gzipSync(jsonl(rows[2]))]);
    expect(await collect(readFile(file('rows.jsonl.gz', joined)))).toHaveLength(4);
  });

  it('a truncated gzip fails naming the file and what happened, after only whole lines came out', async () => {
    const whole = gzipSync(jsonl(...rows));
    const path = file('cut.jsonl.gz', whole.subarray(0, Math.floor(whole.length * 0.6)));
    const { records, error } = await collectUntilError(readFile(path));
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as ManifestError).code).toBe('MANIFEST_UNREADABLE');
    expect((error as Error).message).toBe(
      `Cannot read manifest ${path}: the gzip stream stops before its end: the file is truncated (an interrupted download or upload?); fetch or compress it again.`,
    );
    // Every row that came out is a whole row of the file: none is the line the cut went through.
    const data = records.slice(1) as Array<{ line: number; fields: string[] }>;
    expect(data.length).toBeGreaterThan(100);
    for (const record of data) expect(record.fields).toEqual(Object.values(rows[record.line - 1] ?? {}));
  });

  it('a .gz file that is not gzip fails naming the file and the rename that fixes it', async () => {
    const path = file('plain.csv.gz', 'image_url,prompt\na.png,p\n');
    const { error } = await collectUntilError(readFile(path));
    expect((error as Error).message).toMatch(
      new RegExp(
        `^Cannot read manifest ${path}: it is not valid gzip data \\(.+\\); a name ending in \\.gz is read as gzip: rename the file if it is not compressed\\.$`,
      ),
    );
  });
});

describe('Parquet manifests', () => {
  const png = pngBytes('row-image');
  const imageSchema: NonNullable<Parameters<typeof parquetWriteBuffer>[0]['schema']> = [
    { name: 'root', num_children: 3 },
    { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
    { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'views', type: 'INT64', repetition_type: 'OPTIONAL' },
  ];

  it('reads every row group in order, rows numbered from 1, columns named as a header would name them', async () => {
    const n = 25;
    const buffer = parquetWriteBuffer({
      columnData: [
        utf8(
          'url',
          Array.from({ length: n }, (_, i) => `https://x/${i}.jpg`),
        ),
        utf8(
          'caption',
          Array.from({ length: n }, (_, i) => (i === 3 ? null : `caption ${i}`)),
        ),
        { name: 'views', data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i) * 10_000_000_000n), type: 'INT64' },
        { name: 'score', data: Float64Array.from({ length: n }, (_, i) => i / 4), type: 'DOUBLE' },
        { name: 'nsfw', data: Array.from({ length: n }, (_, i) => i % 2 === 0), type: 'BOOLEAN' },
      ],
      rowGroupSize: 10,
    });
    const records = await collect(readFile(file('laion.parquet', new Uint8Array(buffer))));
    expect(records[0]).toEqual({ line: 0, fields: ['url', 'caption', 'views', 'score', 'nsfw'] });
    expect(records.slice(1).map((r) => r.line)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(records[4]).toEqual({ line: 4, fields: ['https://x/3.jpg', '', '30000000000', '0.75', 'false'] });
    expect(records[25]).toEqual({ line: 25, fields: ['https://x/24.jpg', 'caption 24', '240000000000', '6', 'true'] });
  });

  it('turns a 🤗 image struct {bytes, path} into an image cell (its bytes as a data URI, else its path) and an image.path column', async () => {
    const buffer = parquetWriteBuffer({
      schema: imageSchema,
      columnData: [
        { name: 'image', data: [{ bytes: new Uint8Array(png), path: 'cat.png' }, { bytes: null, path: 'images/dog.png' }, null] },
        { name: 'text', data: ['a cat', 'a dog', 'nothing'] },
        { name: 'views', data: [1n, 2n, null] },
      ],
    });
    const records = await collect(readFile(file('train.parquet', new Uint8Array(buffer))));
    expect(records).toEqual([
      { line: 0, fields: ['image', 'image.path', 'text', 'views'] },
      { line: 1, fields: [`data:image/png;base64,${png.toString('base64')}`, 'cat.png', 'a cat', '1'] },
      { line: 2, fields: ['images/dog.png', 'images/dog.png', 'a dog', '2'] },
      { line: 3, fields: ['', '', 'nothing', ''] },
    ]);
  });

  it('rejects on its row a row larger than --max-record-bytes, and reads on', async () => {
    const buffer = parquetWriteBuffer({ columnData: [utf8('image_url', ['a', 'b', 'c']), utf8('prompt', ['p', 'x'.repeat(3000), 'q'])] });
    const records = await collect(readFile(file('big.parquet', new Uint8Array(buffer)), 2048));
    expect(records.slice(1)).toEqual([
      { line: 1, fields: ['a', 'p'] },
      { line: 2, error: 'the row is 2.9 KiB of text (images as data URIs), over the limit of 2.0 KiB (--max-record-bytes); it was skipped' },
      { line: 3, fields: ['c', 'q'] },
    ]);
  });

  it('reads by ranges: a row group at a time, never the whole file, never as a stream', async () => {
    // Random text does not compress: each of the 4 row groups takes about a quarter of the file.
    const n = 400;
    const buffer = parquetWriteBuffer({
      columnData: [
        utf8(
          'image_url',
          Array.from({ length: n }, (_, i) => `https://x/${i}.jpg`),
        ),
        utf8(
          'prompt',
          Array.from({ length: n }, () => randomBytes(3000).toString('base64')),
        ),
      ],
      rowGroupSize: 100,
    });
    const local = localManifestBytes(file('ranged.parquet', new Uint8Array(buffer)));
    const slices: number[] = [];
    const counted: ManifestBytes = {
      name: local.name,
      byteLength: () => local.byteLength(),
      slice: (start, end) => {
        slices.push(end - start);
        return local.slice(start, end);
      },
      stream: () => {
        throw new Error('a Parquet manifest must not be streamed whole');
      },
    };
    const records = await collect(manifestRecords(counted, { format: 'parquet', gzip: false }, {}));
    expect(records).toHaveLength(n + 1);
    expect(Math.max(...slices)).toBeLessThan(buffer.byteLength / 2);
  });

  it('names the file, the missing column and the columns it has when the schema does not fit the mapping, before any row is read', async () => {
    const buffer = parquetWriteBuffer({ columnData: [utf8('url', ['https://x/a.jpg']), utf8('caption', ['a cat'])] });
    const path = file('laion.parquet', new Uint8Array(buffer));
    const source = await openManifestSource(path, { encoding: 'utf-8', maxRecordBytes: 1 << 20 });
    expect(source.kind).toBe('parquet');
    const error = await checkColumns(source, undefined).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as ManifestError).code).toBe('MANIFEST_INVALID');
    expect((error as Error).message).toBe(
      `${path}: the Parquet file's schema has no "image_url" or "prompt" column. Found: "url", "caption". ` +
        'A manifest needs image_url and prompt columns; id, endpoint, max_tokens, temperature and top_p are optional.',
    );
  });

  it('a truncated Parquet file, or one that is not Parquet, fails naming the file', async () => {
    const buffer = new Uint8Array(parquetWriteBuffer({ columnData: [utf8('image_url', ['a']), utf8('prompt', ['p'])] }));
    const cut = file('cut.parquet', buffer.subarray(0, buffer.length - 20));
    await expect(collect(readFile(cut))).rejects.toThrow(
      `Cannot read manifest ${cut}: it starts as a Parquet file but does not end as one: it is truncated (an interrupted download or upload?).`,
    );
    const csv = file('really-a.parquet', 'image_url,prompt\na.png,describe it\n');
    await expect(collect(readFile(csv))).rejects.toThrow(
      `Cannot read manifest ${csv}: it is not a Parquet file (no PAR1 marker at its start and end); name it .csv or .jsonl, or pass --manifest-format, if it is one of those.`,
    );
  });

  it('a corrupted row group fails naming the file and the rows it holds', async () => {
    const buffer = Buffer.from(
      parquetWriteBuffer({
        columnData: [
          utf8(
            'image_url',
            Array.from({ length: 20 }, (_, i) => `u${i}`),
          ),
          utf8(
            'prompt',
            Array.from({ length: 20 }, (_, i) => `p${i}`),
          ),
        ],
        rowGroupSize: 10,
        codec: 'UNCOMPRESSED',
      }),
    );
    // Garble the second row group's first page header.
    const second = parquetMetadata(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length)).row_groups[1]?.columns[0]?.meta_data;
    const at = Number(second?.data_page_offset);
    buffer.fill(0xff, at, at + 12);
    const path = file('garbled.parquet', buffer);
    const { records, error } = await collectUntilError(readFile(path));
    expect((error as ManifestError).code).toBe('MANIFEST_UNREADABLE');
    expect((error as Error).message).toMatch(
      new RegExp(`^Cannot read manifest ${path}: row group 2 \\(rows 11–20\\) cannot be decoded \\(.+\\); rows before it were read\\.$`),
    );
    expect(records).toHaveLength(11);
  });
});
