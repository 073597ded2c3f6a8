import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { readRecords, type RawRecord, type ReadRecordsOptions } from '../../src/manifest/read-records.js';

async function read(text: string | Uint8Array, chunkSize = 0, options: ReadRecordsOptions = {}): Promise<RawRecord[]> {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text);
  const chunks: Uint8Array[] = [];
  if (chunkSize > 0) for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  else chunks.push(bytes);
  const out: RawRecord[] = [];
  for await (const record of readRecords(chunks, options)) out.push(record);
  return out;
}

async function readSource(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: ReadRecordsOptions = {}): Promise<RawRecord[]> {
  const out: RawRecord[] = [];
  for await (const record of readRecords(source, options)) out.push(record);
  return out;
}

/** `bytes` cut into chunks of the given sizes, cycling through them. */
function cut(bytes: Buffer, sizes: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] as number;
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

const MiB = 1024 * 1024;

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

  it('gives up on an open quote after maxRecordBytes and resumes on the next line', async () => {
    const text = ['h,p', 'a,"never closed', ...Array.from({ length: 50 }, (_, i) => `row${i},fine`)].join('\n');
    const records = await read(text, 5, { maxRecordBytes: 200 });
    expect(records[1]).toEqual({ line: 2, error: expect.stringMatching(/not closed within 200 bytes \(--max-record-bytes\)/) });
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

  it('ends lines on \r\n, \n and lone \r wherever chunks are cut, a \r\n split between chunks included', async () => {
    const long = 'L'.repeat(200_000);
    const rows = ['h,p', `a,${long}`, 'b,two', `c,${long}x`, 'd,"quoted\r\nbreak"', 'e,five', `f,${long}y`];
    const eols = ['\r\n', '\n', '\r', '\r\n', '\r', '\n', '\r\n'];
    const text = rows.map((row, i) => row + eols[i]).join('');
    const expected = [
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['a', long] },
      { line: 3, fields: ['b', 'two'] },
      { line: 4, fields: ['c', `${long}x`] },
      { line: 5, fields: ['d', 'quoted\nbreak'] },
      { line: 7, fields: ['e', 'five'] },
      { line: 8, fields: ['f', `${long}y`] },
    ];
    const bytes = Buffer.from(text);
    // Cut right after each \r, and at odd sizes that fall everywhere else.
    const afterCr = [...text.matchAll(/\r/g)].map((m) => (m.index as number) + 1);
    const atCr = afterCr.map((end, i) => end - (afterCr[i - 1] ?? 0));
    for (const sizes of [[65_536], [1, 2, 3, 65_537], [7919], atCr]) {
      expect(await readSource(cut(bytes, sizes))).toEqual(expected);
    }
  });

  it('reads a 30 MB line in time linear in its size (the old reader took ~30 s: it rescanned its buffer per chunk)', { timeout: 10_000 }, async () => {
    const size = 30 * 1000 * 1000;
    const bytes = Buffer.alloc(size + 40, 'a');
    bytes.write('h,p\nx.png,', 0);
    bytes.write('\nlast.png,next row\n', size + 40 - 19);
    const records = await readSource(cut(bytes, [65_536]), { maxRecordBytes: 64 * MiB });
    expect(records.map((r) => r.line)).toEqual([1, 2, 3]);
    const second = records[1] as { fields: string[] };
    expect(second.fields[0]).toBe('x.png');
    expect(second.fields[1]?.length).toBe(size + 40 - 19 - 10);
    expect(records[2]).toEqual({ line: 3, fields: ['last.png', 'next row'] });
  });

  it('skips a line longer than maxRecordBytes without holding it, reports it on its line with the limit and the flag, and reads on', {
    timeout: 20_000,
  }, async () => {
    const block = Buffer.alloc(MiB, 'a');
    let peak = 0;
    const start = process.memoryUsage();
    // A 256 MiB line, made of one reused MiB: a reader that kept it would need 256 MiB of memory.
    async function* source(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('h,p\nfirst.png,ok\nhuge.png,');
      for (let i = 0; i < 256; i++) {
        const now = process.memoryUsage();
        peak = Math.max(peak, now.heapUsed + now.arrayBuffers - start.heapUsed - start.arrayBuffers);
        yield block;
      }
      yield Buffer.from('\r\nafter.png,still read\n');
    }
    const records = await readSource(source());
    expect(records).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['first.png', 'ok'] },
      {
        line: 3,
        error: expect.stringMatching(/the line is 256\.0 MiB long, over the limit of 16\.0 MiB \(--max-record-bytes\); it was skipped/),
        leading: ['huge.png'],
      },
      { line: 4, fields: ['after.png', 'still read'] },
    ]);
    expect(peak).toBeLessThan(64 * MiB);
  });

  it('counts an open quoted record against maxRecordBytes, the over-long line in it included', async () => {
    const text = ['h,p', 'a,"opens', 'x'.repeat(300), 'b,ok', ''].join('\n');
    const records = await read(text, 7, { maxRecordBytes: 100 });
    expect(records).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, error: expect.stringMatching(/a quote \("\) opened on line 2 \(character 3\) is not closed within 100 bytes \(--max-record-bytes\)/) },
      { line: 3, error: expect.stringMatching(/the line is 300 bytes long, over the limit of 100 bytes \(--max-record-bytes\)/) },
      { line: 4, fields: ['b', 'ok'] },
    ]);
  });

  it('rejects a line that is not valid UTF-8, naming the byte, its offsets and how to convert the file; never sends U+FFFD', async () => {
    // "café" in Latin-1: é is the single byte 0xE9. The lines around it are UTF-8 (multi-byte included).
    const bytes = Buffer.concat([Buffer.from('h,p\nuno.png,日本語\ndos.png,caf'), Buffer.from([0xe9]), Buffer.from(' au lait\ntres.png,ok\n')]);
    const offset = bytes.indexOf(0xe9);
    for (const chunkSize of [0, 1, 2, 5]) {
      const records = await read(bytes, chunkSize);
      expect(records).toEqual([
        { line: 1, fields: ['h', 'p'] },
        { line: 2, fields: ['uno.png', '日本語'] },
        { line: 3, error: expect.stringContaining(`not valid UTF-8: byte 0xE9 at byte 12 of the line (offset ${offset} in the file)`), leading: ['dos.png'] },
        { line: 4, fields: ['tres.png', 'ok'] },
      ]);
      const error = (records[2] as { error: string }).error;
      expect(error).toContain('--encoding latin1');
      expect(error).toContain('iconv -f latin1 -t utf-8 in.csv > out.csv');
      expect(JSON.stringify(records)).not.toContain('\uFFFD');
    }
  });

  it('keeps two rows apart that differ only in a non-UTF-8 byte (both rejected, not collapsed into one U+FFFD key)', async () => {
    const bytes = Buffer.concat([Buffer.from('h,p\na.png,caf'), Buffer.from([0xe9]), Buffer.from('\na.png,caf'), Buffer.from([0xe8]), Buffer.from('\n')]);
    const records = await read(bytes);
    expect(records.slice(1)).toEqual([
      { line: 2, error: expect.stringContaining('byte 0xE9'), leading: ['a.png'] },
      { line: 3, error: expect.stringContaining('byte 0xE8'), leading: ['a.png'] },
    ]);
  });

  it('reads a Latin-1 file as is with encoding latin1', async () => {
    const bytes = Buffer.concat([Buffer.from('h,p\na.png,caf'), Buffer.from([0xe9]), Buffer.from('\nb.png,na'), Buffer.from([0xef]), Buffer.from('ve\n')]);
    expect(await read(bytes, 3, { encoding: 'latin1' })).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['a.png', 'café'] },
      { line: 3, fields: ['b.png', 'naïve'] },
    ]);
  });

  it('reads UTF-16LE without a byte order mark when told, and rejects a lone surrogate on its line', async () => {
    const good = Buffer.from('h,p\r\nbild.png,Grüße\r\n', 'utf16le');
    const bad = Buffer.concat([Buffer.from('x.png,', 'utf16le'), Buffer.from([0x00, 0xd8]), Buffer.from('\r\ny.png,ok\r\n', 'utf16le')]);
    expect(await read(Buffer.concat([good, bad]), 3, { encoding: 'utf-16le' })).toEqual([
      { line: 1, fields: ['h', 'p'] },
      { line: 2, fields: ['bild.png', 'Grüße'] },
      { line: 3, error: expect.stringContaining('not valid utf-16le'), leading: ['x.png'] },
      { line: 4, fields: ['y.png', 'ok'] },
    ]);
  });

  it('a line rejected for its bytes keeps the whole fields it starts with (its id), in any chunking', async () => {
    const long = Buffer.concat([Buffer.from('"id, ""7""",é-ü.png,'), Buffer.from('日'.repeat(2000)), Buffer.from('\n')]);
    const invalid = Buffer.concat([Buffer.from('r2,b.png,caf'), Buffer.from([0xe9]), Buffer.from(',more\n')]);
    const firstCut = Buffer.concat([Buffer.from('r3'), Buffer.from([0xff]), Buffer.from(',c.png,x\n')]);
    const bytes = Buffer.concat([Buffer.from('id,image_url,prompt\n'), long, invalid, firstCut, Buffer.from('r4,d.png,fine\n')]);
    for (const chunkSize of [0, 1, 5, 64]) {
      expect(await read(bytes, chunkSize, { maxRecordBytes: 1000 })).toEqual([
        { line: 1, fields: ['id', 'image_url', 'prompt'] },
        { line: 2, error: expect.stringContaining('over the limit of 1000 bytes'), leading: ['id, "7"', 'é-ü.png'] },
        { line: 3, error: expect.stringContaining('not valid UTF-8'), leading: ['r2', 'b.png'] },
        // Its first field holds the bad byte: nothing can be named.
        { line: 4, error: expect.stringContaining('not valid UTF-8') },
        { line: 5, fields: ['r4', 'd.png', 'fine'] },
      ]);
    }
    // The kept start of a line too long is cut mid-character: the whole fields before it still come out.
    const cutMid = Buffer.concat([Buffer.from('h\n'), Buffer.from('a,'), Buffer.from('日'.repeat(5000)), Buffer.from(',x\n')]);
    expect((await read(cutMid, 7, { maxRecordBytes: 100 }))[1]).toEqual({ line: 2, error: expect.stringContaining('over the limit'), leading: ['a'] });
  });

  it('refuses an encoding it does not know, with a ConfigError naming the flag', async () => {
    await expect(read('h,p\n', 0, { encoding: 'klingon' })).rejects.toThrow(ConfigError);
    await expect(read('h,p\n', 0, { encoding: 'klingon' })).rejects.toThrow(/--encoding.*"klingon"/);
  });

  it('names an unclosed quote and the line it opened on, and keeps the good rows after it', async () => {
    const text = ['image_url,prompt', 'a.png,fine', 'b.png,"what is this', 'c.png,good one', 'd.png,good two', ''].join('\n');
    expect(await read(text, 4)).toEqual([
      { line: 1, fields: ['image_url', 'prompt'] },
      { line: 2, fields: ['a.png', 'fine'] },
      { line: 3, error: expect.stringMatching(/a quote \("\) opened on line 3 \(character 7\) is not closed before the end of the file/) },
      { line: 4, fields: ['c.png', 'good one'] },
      { line: 5, fields: ['d.png', 'good two'] },
    ]);
  });

  it('names a stray quote in the middle of an unquoted field, on its line', async () => {
    const text = ['image_url,prompt', 'a.png,describe the 5" screen', 'b.png,good', 'c.png,say "hi" please', 'd.png,good', ''].join('\n');
    expect(await read(text)).toEqual([
      { line: 1, fields: ['image_url', 'prompt'] },
      {
        line: 2,
        error: expect.stringMatching(
          /a stray quote \("\) in an unquoted field on line 2 \(character 21\): wrap the field in quotes and double the quotes inside it/,
        ),
      },
      { line: 3, fields: ['b.png', 'good'] },
      { line: 4, error: expect.stringMatching(/a stray quote \("\) in an unquoted field on line 4 \(character 11\)/) },
      { line: 5, fields: ['d.png', 'good'] },
    ]);
  });

  it('names the line a quote opened on and the line it went wrong on when a quoted field runs over lines', async () => {
    const text = ['image_url,prompt', 'a.png,"one', 'b.png,good', 'c.png,a 5" screen', 'd.png,good', ''].join('\n');
    expect(await read(text, 3)).toEqual([
      { line: 1, fields: ['image_url', 'prompt'] },
      {
        line: 2,
        error: expect.stringMatching(
          /a quoted field opened on line 2 \(character 7\) runs on to line 4, where text follows a closing quote; if that quote was not meant to span lines, close it on line 2/,
        ),
      },
      { line: 3, fields: ['b.png', 'good'] },
      { line: 4, error: expect.stringMatching(/a stray quote \("\) in an unquoted field on line 4 \(character 10\)/) },
      { line: 5, fields: ['d.png', 'good'] },
    ]);
  });
});
