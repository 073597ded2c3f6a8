import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mapColumns } from '../../src/manifest/columns.js';
import { LocalImageReader } from '../../src/manifest/local-image.js';
import { createImageResolver } from '../../src/manifest/resolve-images.js';
import { readRecords, type ReadRecordsOptions } from '../../src/manifest/read-records.js';
import { validateRow, type RowContext, type RowVerdict } from '../../src/manifest/validate-row.js';
import { pngDataUri as paddedPngDataUri } from '../helpers/images.js';

const dir = mkdtempSync(join(tmpdir(), 'falbatch-validate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = ['id', 'image_url', 'prompt', 'endpoint', 'max_tokens', 'note'];
const ctx: RowContext = {
  columns: mapColumns(HEADER, 'm.csv'),
  defaultEndpoint: 'fal-ai/llava-next',
  images: createImageResolver({ files: new LocalImageReader(dir, 1024), maxImageBytes: 1024 }),
  maxPromptChars: 20_000,
};

function row(cells: Partial<Record<(typeof HEADER)[number], string>>): { line: number; fields: string[] } {
  return {
    line: 7,
    fields: HEADER.map((name) => cells[name] ?? (name === 'image_url' ? 'https://example.com/a.png' : name === 'prompt' ? 'describe it' : '')),
  };
}

function reason(verdict: RowVerdict): string {
  if (verdict.ok) throw new Error(`expected a rejection, the row was accepted: ${JSON.stringify(verdict.row.input).slice(0, 200)}`);
  return verdict.rejected.reason;
}

/** Reads a manifest text and validates its rows, as enqueue does. */
async function verdicts(text: string, options: ReadRecordsOptions = {}): Promise<Array<{ line: number; ok: boolean; reason?: string }>> {
  const out: Array<{ line: number; ok: boolean; reason?: string }> = [];
  let columns: RowContext['columns'] | undefined;
  for await (const record of readRecords([Buffer.from(text)], options)) {
    if ('error' in record) {
      out.push({ line: record.line, ok: false, reason: record.error });
      continue;
    }
    if (!columns) {
      columns = mapColumns(record.fields, 'm.csv');
      continue;
    }
    const verdict = await validateRow(record, { ...ctx, columns });
    out.push(verdict.ok ? { line: verdict.row.line, ok: true } : { line: verdict.rejected.line, ok: false, reason: verdict.rejected.reason });
  }
  return out;
}

/** A real PNG of `size` bytes (a padded text chunk), as a data URI. */
function pngDataUri(size: number): string {
  return paddedPngDataUri('padded', size);
}

describe('validateRow limits', () => {
  it('rejects a prompt longer than maxPromptChars, naming the limit and the flag, and keeps only its start for the output', async () => {
    const verdict = await validateRow(row({ prompt: 'a'.repeat(40_000_000) }), ctx);
    expect(reason(verdict)).toBe('prompt is 40,000,000 characters long; the most is 20,000 (--max-prompt-chars)');
    expect(verdict.ok ? 0 : verdict.rejected.prompt.length).toBeLessThan(1000);
    expect((await validateRow(row({ prompt: 'a'.repeat(20_000) }), ctx)).ok).toBe(true);
  });

  it('rejects a 40 MB prompt read from a manifest: over the record limit by default, over the prompt limit when records may be that long', {
    timeout: 20_000,
  }, async () => {
    const text = `image_url,prompt\nhttps://example.com/a.png,${'p'.repeat(40_000_000)}\nhttps://example.com/b.png,next\n`;
    expect(await verdicts(text)).toEqual([
      { line: 2, ok: false, reason: expect.stringMatching(/over the limit of 16\.0 MiB \(--max-record-bytes\)/) },
      { line: 3, ok: true },
    ]);
    expect(await verdicts(text, { maxRecordBytes: 64 * 1024 * 1024 })).toEqual([
      { line: 2, ok: false, reason: 'prompt is 40,000,000 characters long; the most is 20,000 (--max-prompt-chars)' },
      { line: 3, ok: true },
    ]);
  });

  it('rejects a data URI whose image is larger than maxImageBytes (decoded bytes, as for local files)', async () => {
    expect((await validateRow(row({ image_url: pngDataUri(1024) }), ctx)).ok).toBe(true);
    expect(reason(await validateRow(row({ image_url: pngDataUri(3000) }), ctx))).toBe(
      'image_url holds a data URI of 2.9 KiB of image data; the most falbatch sends inline is 1.0 KiB (--max-image-bytes); use a URL for larger images',
    );
  });
});

describe('validateRow control characters', () => {
  it.each([
    ['prompt', 'describe th\u0000is', 'prompt contains a control character U+0000 at character 12; remove it'],
    ['prompt', 'bell\u0007', 'prompt contains a control character U+0007 at character 5; remove it'],
    ['id', 'row\u00011', 'id contains a control character U+0001 at character 4; remove it'],
    ['endpoint', 'fal-ai/llava-next\u001b', 'endpoint contains a control character U+001B at character 18; remove it'],
    ['image_url', 'https://example.com/a.png\u007f', 'image_url contains a control character U+007F at character 26; remove it'],
    ['max_tokens', '12\u0000', 'max_tokens contains a control character U+0000 at character 3; remove it'],
    ['note', 'carried\u0000', 'note contains a control character U+0000 at character 8; remove it'],
  ])('rejects a control character in %s', async (column, value, expected) => {
    const verdict = await validateRow(row({ [column]: value }), ctx);
    expect(reason(verdict)).toBe(expected);
    // What the output shows of a rejected row carries no raw control character either.
    expect(JSON.stringify(verdict.ok ? {} : verdict.rejected)).not.toMatch(/\\u00[01][0-9a-f]|\u007f/i);
  });

  it('accepts tabs and line breaks in a prompt', async () => {
    expect((await validateRow(row({ prompt: 'first\tcolumn\nsecond line\r\nthird' }), ctx)).ok).toBe(true);
  });
});

describe('validateRow field counts', () => {
  it('blames a quote, not a comma, when a quoted field ran over several lines and left too many fields', async () => {
    const text = 'image_url,prompt\nhttps://example.com/a.png,"one\nhttps://example.com/b.png,two",x\nhttps://example.com/c.png,three\n';
    expect(await verdicts(text)).toEqual([
      {
        line: 2,
        ok: false,
        reason: expect.stringMatching(/^3 fields, but the header has 2 columns: a quoted field opened on line 2 runs on to line 3 .*stray or unclosed quote/),
      },
      { line: 4, ok: true },
    ]);
  });

  it('still suggests quoting commas when the record is one line', async () => {
    expect(await verdicts('image_url,prompt\nhttps://example.com/a.png,one, two\n')).toEqual([
      { line: 2, ok: false, reason: '3 fields, but the header has 2 columns; quote fields that contain commas' },
    ]);
  });
});
