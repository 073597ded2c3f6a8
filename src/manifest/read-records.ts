import { TextDecoder } from 'node:util';
import { parse } from 'csv-parse/sync';

/** One CSV record with the line it starts on, or why the text there is not a record. */
export type RawRecord = { line: number; fields: string[] } | { line: number; error: string };

export interface ReadRecordsOptions {
  /**
   * Longest a record (a quoted field spanning lines included) may be. Past it, an open quote is
   * taken as a mistake on the record's first line, and reading resumes on the next line.
   * @default 1 MiB
   */
  maxRecordChars?: number;
}

/** Chunks of the file: a stream, or anything iterable. */
export type ByteSource = AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>;

interface Line {
  number: number;
  text: string;
}

/** Decodes bytes as UTF-8, or UTF-16 when the file starts with a UTF-16 byte order mark; BOMs are dropped. */
async function* decode(source: ByteSource): AsyncGenerator<string> {
  let decoder: TextDecoder | undefined;
  for await (const chunk of source) {
    if (typeof chunk === 'string') {
      yield decoder ? decoder.decode() + chunk : chunk.replace(/^\uFEFF/, '');
      decoder = undefined;
      continue;
    }
    if (!decoder) {
      const utf16 = chunk[0] === 0xff && chunk[1] === 0xfe ? 'utf-16le' : chunk[0] === 0xfe && chunk[1] === 0xff ? 'utf-16be' : undefined;
      decoder = new TextDecoder(utf16 ?? 'utf-8', { fatal: false });
    }
    yield decoder.decode(chunk, { stream: true });
  }
  if (decoder) yield decoder.decode();
}

/** Physical lines, numbered from 1; `\r\n`, `\n` and a lone `\r` all end a line. */
async function* lines(source: ByteSource): AsyncGenerator<Line> {
  let pending = '';
  let number = 0;
  for await (const text of decode(source)) {
    pending += text;
    let start = 0;
    for (;;) {
      const at = pending.slice(start).search(/[\r\n]/);
      if (at < 0) break;
      const end = start + at;
      // A chunk that ends in \r may continue with \n: wait for more text.
      if (pending[end] === '\r' && end === pending.length - 1) break;
      yield { number: ++number, text: pending.slice(start, end) };
      start = end + (pending[end] === '\r' && pending[end + 1] === '\n' ? 2 : 1);
    }
    pending = pending.slice(start);
  }
  if (pending.endsWith('\r')) pending = pending.slice(0, -1);
  if (pending.length > 0) yield { number: ++number, text: pending };
}

function quoteCount(text: string): number {
  let count = 0;
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) count++;
  return count;
}

function parseCandidate(text: string): string[] | string {
  if (!text.includes('"')) return text.split(',');
  try {
    const records = parse(text, { relax_column_count: true, record_delimiter: ['\n'] }) as string[][];
    if (records.length !== 1 || !records[0]) return `malformed CSV record (${records.length} records where one was expected)`;
    return records[0];
  } catch (error) {
    return `malformed CSV (${describeCsvError(error)})`;
  }
}

function describeCsvError(error: unknown): string {
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'CSV_INVALID_OPENING_QUOTE':
    case 'INVALID_OPENING_QUOTE':
      return 'a quote inside an unquoted field; wrap the field in quotes and double the quotes inside it';
    case 'CSV_INVALID_CLOSING_QUOTE':
      return 'text after a closing quote; double the quotes inside a quoted field ("")';
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'a quoted field is not closed';
    default:
      return (error as Error).message.split('\n')[0] ?? 'unknown error';
  }
}

/**
 * Streams CSV records with the line each starts on. Quoted fields may span lines. A record that is
 * not valid CSV is reported on its first line and reading resumes on the next line, so one stray
 * quote costs one row, not the rest of the file. Memory stays within one record (plus the
 * `maxRecordChars` of look-ahead an open quote may need), whatever the size of the file.
 *
 * (csv-parse alone miscounts lines for CRLF inside quoted fields, and after an error it stays in a
 * quoted state and swallows the rows that follow; this framing around it fixes both.)
 */
export async function* readRecords(source: ByteSource, options: ReadRecordsOptions = {}): AsyncGenerator<RawRecord> {
  const maxChars = options.maxRecordChars ?? 1024 * 1024;
  let candidate: Line[] = [];
  let chars = 0;
  let open = false;
  /** Lines to read again, in order, after a bad record: all but its first. */
  const replay: Line[] = [];

  function* feed(line: Line): Generator<RawRecord> {
    candidate.push(line);
    chars += line.text.length + 1;
    if (quoteCount(line.text) % 2 === 1) open = !open;
    if (!open) {
      const done = candidate;
      candidate = [];
      chars = 0;
      const first = done[0] as Line;
      const text = done.length === 1 ? first.text : done.map((l) => l.text).join('\n');
      if (text.trim() === '') return;
      const parsed = parseCandidate(text);
      if (typeof parsed !== 'string') {
        yield { line: first.number, fields: parsed };
        return;
      }
      yield { line: first.number, error: parsed };
      replay.unshift(...done.slice(1));
      return;
    }
    if (chars > maxChars) yield* abandon(`a quoted field runs past ${maxChars} characters without closing`);
  }

  function* abandon(reason: string): Generator<RawRecord> {
    const dropped = candidate;
    candidate = [];
    chars = 0;
    open = false;
    const first = dropped[0];
    if (!first) return;
    yield { line: first.number, error: `malformed CSV (${reason}); close the quote, or double quotes inside a quoted field ("")` };
    replay.unshift(...dropped.slice(1));
  }

  function* drainReplay(): Generator<RawRecord> {
    while (replay.length > 0) {
      const next = replay.shift() as Line;
      yield* feed(next);
    }
  }

  for await (const line of lines(source)) {
    yield* feed(line);
    yield* drainReplay();
  }
  while (candidate.length > 0) {
    yield* abandon('a quoted field is not closed before the end of the file');
    yield* drainReplay();
  }
}
