import { describe, expect, it } from 'vitest';
import { readRecords, type RawRecord } from '../../src/manifest/read-records.js';

async function read(text: string | Uint8Array, chunkSize = 0, maxRecordChars?: number): Promise<RawRecord[]> {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text);
  const chunks: Uint8Array[] = [];
  if (chunkSize > 0) for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  else chunks.push(bytes);
  const out: RawRecord[] = [];
  for await (const record of readRecords(chunks, maxRecordChars === undefined ? {} : { maxRecordChars })) out.push(record);
  return out;
}

describe('readRecords', () => {
  it('reads a BOM, CRLF, quoted commas and quoted newlines, numbering each record by its first line', async () => {
    const text = '\uFEFFimage_url,prompt\r\na.png,"hello, world"\r\n\r\nb.png,"multi\r\nline\r\nprompt"\r\nc.png,"say ""hi"""\r\n';
    for (const chunkSize of [0, 1, 3, 7]) {
      expect(await read(text, chunkSize)).toEqual([
        { line: 1, fields: ['image_url', 'prompt'] },
        { line: 2, fields: ['a.png', 'hello, world'] },
        { line: 4, fields: ['b.png', 'multi\nline\nprompt'] },
        { line: 7, fields: ['c.png', 'say "hi"'] },
      ]);
    }
  });

  it('accepts lone CR line endings and a last line without a newline', async () => {
    expect(await read('h,p\ra,1\rb,2')).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['a', '1'] },
      { line: 3, fields: ['b', '2'] },
    ]);
  });

  it('reports a broken record on its line and keeps every good row after it', async () => {
    const text = ['h,p', 'a,x"y', 'b,ok', 'c,"bad"tail', 'd,ok', 'e,"unclosed', 'f,ok', ''].join('\n');
    const records = await read(text);
    expect(records.filter((r) => 'fields' in r).map((r) => r.line)).toEqual([1, 3, 5, 7]);
    expect(records.filter((r) => 'error' in r)).toEqual([
      { line: 2, error: expect.stringMatching(/malformed CSV/) },
      { line: 4, error: expect.stringMatching(/text after a closing quote/) },
      { line: 6, error: expect.stringMatching(/not closed before the end of the file/) },
    ]);
  });

  it('gives up on an open quote after maxRecordChars and resumes on the next line', async () => {
    const text = ['h,p', 'a,"never closed', ...Array.from({ length: 50 }, (_, i) => `row${i},fine`)].join('\n');
    const records = await read(text, 5, 200);
    expect(records[1]).toEqual({ line: 2, error: expect.stringMatching(/runs past 200 characters/) });
    expect(records.slice(2).map((r) => ('fields' in r ? r.fields[0] : 'error'))).toEqual(Array.from({ length: 50 }, (_, i) => `row${i}`));
  });

  it('decodes UTF-16 files with a byte order mark', async () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('h,p\r\nbild.png,"Grüße, Welt"\r\n', 'utf16le')]);
    expect(await read(utf16, 5)).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['bild.png', 'Grüße, Welt'] },
    ]);
  });

  it('splits multi-byte UTF-8 characters across chunks without damage', async () => {
    expect(await read('h,p\nx.png,日本語のキャプション\n', 1)).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['x.png', '日本語のキャプション'] },
    ]);
  });
});
