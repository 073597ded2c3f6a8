import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mapColumns } from '../../src/manifest/columns.js';
import { LocalImageReader } from '../../src/manifest/local-image.js';
import { createImageResolver } from '../../src/manifest/resolve-images.js';
import { readRecords, type RawRecord } from '../../src/manifest/read-records.js';
import { validateRow } from '../../src/manifest/validate-row.js';

async function collect(chunks: Uint8Array[], maxRecordBytes?: number): Promise<RawRecord[]> {
  const out: RawRecord[] = [];
  for await (const record of readRecords(chunks, maxRecordBytes === undefined ? {} : { maxRecordBytes })) out.push(record);
  return out;
}

function chunked(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const size of sizes) {
    if (at >= bytes.length) break;
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  if (at < bytes.length) chunks.push(bytes.subarray(at));
  return chunks;
}

function encodeField(value: string): string {
  return /[",\r\n]/.test(value) || value.trim() !== value ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Field text: any characters, commas, quotes and line breaks included. */
const field = fc.string({
  unit: fc.oneof(
    fc.constantFrom(',', '"', '\n', '\r\n', '\r', ' ', '\t', 'é', '日', '\uFEFF'),
    fc.string({ minLength: 1, maxLength: 1, unit: 'grapheme-ascii' }),
  ),
  maxLength: 12,
});
/**
 * One physical line that is not valid CSV in any context: a quote inside an unquoted field, or text
 * after a closing quote. (A line that only opens a quote is not one of them: with what follows it,
 * it may be valid CSV, and the reader rightly takes it so; the dedicated tests cover it at EOF.)
 */
const badLine = fc.oneof(
  fc.tuple(fc.stringMatching(/^[a-z]{1,5}$/), fc.stringMatching(/^[a-z]{1,5}$/)).map(([a, b]) => `${a}"${b},x`),
  fc.tuple(fc.stringMatching(/^[a-z]{1,5}$/), fc.stringMatching(/^[a-z]{1,5}$/)).map(([a, b]) => `"${a}"${b},x`),
);

describe('the manifest reader under fuzzing', () => {
  it('never throws on arbitrary bytes, whatever the chunking, and numbers records in order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 20 }), async (bytes, sizes) => {
        const records = await collect(chunked(bytes, sizes), 64);
        const lines = records.map((r) => r.line);
        expect(lines).toEqual([...lines].sort((a, b) => a - b));
        expect(new Set(lines).size).toBe(lines.length);
        for (const line of lines) expect(line).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps every good record (fields intact, line numbers right) and reports every bad line, wherever bad lines fall', async () => {
    const item = fc.oneof(
      { weight: 4, arbitrary: fc.array(field, { minLength: 2, maxLength: 4 }).map((fields) => ({ kind: 'good' as const, fields })) },
      { weight: 1, arbitrary: badLine.map((line) => ({ kind: 'bad' as const, line })) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(item, { maxLength: 25 }),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.integer({ min: 1, max: 30 }), { maxLength: 10 }),
        async (items, eol, sizes) => {
          let line = 2;
          const expectedGood: Array<{ line: number; fields: string[] }> = [];
          const expectedBad: number[] = [];
          const text = ['h1,h2'];
          for (const entry of items) {
            if (entry.kind === 'bad') {
              expectedBad.push(line);
              text.push(entry.line);
              line += 1;
              continue;
            }
            const encoded = entry.fields.map(encodeField).join(',');
            if (entry.fields.every((f) => f.trim() === '') && !encoded.includes('"')) continue; // a blank line, skipped by design
            // Line breaks inside quoted fields come back as \n, whichever the file used.
            expectedGood.push({ line, fields: entry.fields.map((f) => f.replace(/\r\n?/g, '\n')) });
            text.push(encoded);
            line += encoded.split(/\r\n|\r|\n/).length;
          }
          const bytes = Buffer.from(text.join(eol) + eol, 'utf8');
          const records = (await collect(chunked(bytes, sizes))).slice(1);
          const good = records.filter((r): r is { line: number; fields: string[] } => 'fields' in r);
          expect(good).toEqual(expectedGood);
          expect(records.filter((r) => 'error' in r).map((r) => r.line)).toEqual(expectedBad);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('reports a quote that never closes on its line, and keeps the rows after it, even in huge files', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => `r${i},prompt ${i}`);
    const text = ['id,prompt', 'broken,"never closed', ...rows].join('\n');
    const records = await collect([Buffer.from(text)], 4096);
    expect(records[1]).toEqual({ line: 2, error: expect.stringMatching(/not closed within 4\.0 KiB \(--max-record-bytes\)/) });
    expect(records.slice(2).map((r) => ('fields' in r ? r.fields[0] : 'error'))).toEqual(rows.map((r) => r.split(',')[0]));
  });
});

describe('row validation under fuzzing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-fuzz-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const columns = mapColumns(['id', 'image_url', 'prompt', 'endpoint', 'max_tokens', 'temperature', 'top_p', 'extra'], 'fuzz.csv');
  const ctx = {
    columns,
    defaultEndpoint: 'fal-ai/llava-next',
    images: createImageResolver({ files: new LocalImageReader(dir, 1024), maxImageBytes: 1024 }),
    maxPromptChars: 20_000,
  };
  const cell = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom(
      '',
      ' ',
      '0',
      '-1',
      '1e309',
      'NaN',
      '0.5',
      '64',
      '1.0000001',
      'https://example.com/a.png',
      'data:image/png;base64,iVBORw0KGgo=',
      '../../etc/passwd',
      '/etc/passwd',
      'a|b',
      'fal-ai/mantis-llava-7b-v11',
      'x'.repeat(300),
    ),
  );

  it('never throws: every row is accepted with a complete input, or rejected with a reason on its line', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cell, { minLength: 0, maxLength: 10 }), fc.integer({ min: 2, max: 1_000_000 }), async (fields, line) => {
        const verdict = await validateRow({ line, fields }, ctx);
        if (verdict.ok) {
          expect(verdict.row.line).toBe(line);
          expect(verdict.row.prompt.trim()).not.toBe('');
          expect(verdict.row.key.length).toBeGreaterThan(0);
          const input = verdict.row.input;
          if (verdict.row.endpoint === 'fal-ai/llava-next') expect(typeof input['image_url']).toBe('string');
          else expect(Array.isArray(input['images'])).toBe(true);
        } else {
          expect(verdict.rejected.line).toBe(line);
          expect(verdict.rejected.reason.length).toBeGreaterThan(5);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
