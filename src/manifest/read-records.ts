import { parse } from 'csv-parse/sync';
import { formatBytes } from './format-bytes.js';
import { readLines, type ByteSource, type Line } from './read-lines.js';
import { DEFAULT_ENCODING, DEFAULT_MAX_RECORD_BYTES } from './read-defaults.js';
import { encodingLabel } from './text-encoding.js';

export type { ByteSource } from './read-lines.js';

/**
 * One CSV record with the line it starts on, or why the text there is not a record; for a line
 * rejected for its bytes (too long, not valid text), `leading` holds the fields it starts with
 * that could be read whole (its id, when that comes first).
 */
export type RawRecord = { line: number; fields: string[] } | { line: number; error: string; leading?: string[] };

/**
 * The whole fields `text` starts with: each one ended by a comma (the text may stop in the middle
 * of the next). A quoted field is read as CSV reads it; stops at anything unclear.
 */
export function leadingFields(text: string): string[] {
  const fields: string[] = [];
  let at = 0;
  while (at < text.length) {
    if (text[at] === '"') {
      let value = '';
      let from = at + 1;
      for (;;) {
        const quote = text.indexOf('"', from);
        if (quote < 0) return fields;
        value += text.slice(from, quote);
        if (text[quote + 1] === '"') {
          value += '"';
          from = quote + 2;
          continue;
        }
        at = quote + 1;
        break;
      }
      if (text[at] !== ',') return fields;
      fields.push(value);
      at++;
      continue;
    }
    const comma = text.indexOf(',', at);
    if (comma < 0) return fields;
    const value = text.slice(at, comma);
    if (value.includes('"') || value.includes('\n') || value.includes('\r')) return fields;
    fields.push(value);
    at = comma + 1;
  }
  return fields;
}

/** A line rejected for its bytes, with the fields that could still be read. */
function byteError(line: Line, error: string): RawRecord {
  const leading = line.head === undefined ? [] : leadingFields(line.head);
  return leading.length > 0 ? { line: line.number, error, leading } : { line: line.number, error };
}

export interface ReadRecordsOptions {
  /**
   * The file's text encoding: any WHATWG label Node's TextDecoder knows (utf-8, latin1 = windows-1252,
   * utf-16le, shift_jis, …). A byte order mark at the start of the file wins over it. A line with
   * bytes that are not valid in it is rejected on its line (never read with replacement characters).
   * @default 'utf-8'
   */
  encoding?: string;
  /**
   * Longest record, in bytes of the file: a line, or the lines a quoted field spans. A longer line
   * is skipped without being held and reported on its line; a quote still open past it is reported
   * on the line it opened on. Either way reading resumes on the next line. Memory stays within
   * about this much, whatever the size of the file.
   * @default 16 MiB
   */
  maxRecordBytes?: number;
}

const HINT_QUOTES = 'double quotes inside a quoted field ("")';

function quoteCount(text: string): number {
  let count = 0;
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) count++;
  return count;
}

type QuoteProblem = { kind: 'stray' | 'after-close' | 'open'; at: number } | undefined;

/** The first quoting problem in one line read on its own: where csv-parse would stop, found by a plain scan. */
function quoteProblem(text: string): QuoteProblem {
  let fieldStart = true;
  let quoted = false;
  let closed = false;
  let openedAt = -1;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch !== '"') continue;
      if (text[i + 1] === '"') i++;
      else {
        quoted = false;
        closed = true;
      }
      continue;
    }
    if (ch === ',') {
      fieldStart = true;
      closed = false;
      continue;
    }
    if (closed) return { kind: 'after-close', at: i };
    if (ch === '"') {
      if (!fieldStart) return { kind: 'stray', at: i };
      quoted = true;
      openedAt = i;
    }
    fieldStart = false;
  }
  return quoted ? { kind: 'open', at: openedAt } : undefined;
}

/** What is wrong with a line's quotes, for a message, or undefined when the line alone is fine. */
function describeQuoteProblem(line: Line, unclosed: string): string | undefined {
  const problem = quoteProblem(line.text);
  if (!problem) return undefined;
  const where = `on line ${line.number} (character ${problem.at + 1})`;
  switch (problem.kind) {
    case 'stray':
      return `a stray quote (") in an unquoted field ${where}: wrap the field in quotes and double the quotes inside it`;
    case 'after-close':
      return `text after a closing quote ${where}: ${HINT_QUOTES}, or put the whole field in quotes`;
    case 'open':
      return `a quote (") opened on line ${line.number} (character ${problem.at + 1}) ${unclosed}: close it, or ${HINT_QUOTES}`;
  }
}

function csvErrorCause(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case 'CSV_INVALID_OPENING_QUOTE':
    case 'INVALID_OPENING_QUOTE':
      return 'a quote stands in an unquoted field';
    case 'CSV_INVALID_CLOSING_QUOTE':
      return 'text follows a closing quote';
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'a quoted field is not closed';
    default:
      return (error as Error).message.split('\n')[0] ?? 'unknown error';
  }
}

/** The record's fields, or why its lines are not one CSV record (naming the line where the cause is). */
function parseCandidate(lines: Line[]): string[] | string {
  const first = lines[0] as Line;
  const text = lines.length === 1 ? first.text : lines.map((l) => l.text).join('\n');
  if (!text.includes('"')) return text.split(',');
  try {
    const records = parse(text, { relax_column_count: true, record_delimiter: ['\n'] }) as string[][];
    if (records.length !== 1 || !records[0]) return `malformed CSV: ${records.length} records where one was expected, from line ${first.number}`;
    return records[0];
  } catch (error) {
    // Mostly the cause is on the first line: a stray quote there opened the record.
    const problem = quoteProblem(first.text);
    if (lines.length === 1 || (problem !== undefined && problem.kind !== 'open')) {
      return `malformed CSV: ${describeQuoteProblem(first, 'is not closed') ?? `${csvErrorCause(error)} on line ${first.number}`}`;
    }
    const at = (error as { lines?: number }).lines;
    const last = typeof at === 'number' ? first.number + at - 1 : (lines[lines.length - 1] as Line).number;
    return (
      `malformed CSV: a quoted field opened on line ${first.number}${problem ? ` (character ${problem.at + 1})` : ''} runs on to line ${last}, where ${csvErrorCause(error)}; ` +
      `if that quote was not meant to span lines, close it on line ${first.number}, or ${HINT_QUOTES}`
    );
  }
}

/** Why a line is not valid text in its encoding, and how to fix the file. */
export function describeInvalid(line: Line, first: Line): string {
  const { encoding, at } = line.invalid ?? { encoding: 'utf-8', at: undefined };
  const which = line.number === first.number ? 'the line' : `line ${line.number}`;
  const subject = line.number === first.number ? '' : `line ${line.number} (inside this record's quoted field) is `;
  if (encoding === 'utf-8') {
    const position = at
      ? `: byte 0x${at.byte.toString(16).toUpperCase().padStart(2, '0')} at byte ${at.index + 1} of ${which} (offset ${at.offset} in the file)`
      : '';
    return (
      `${subject}not valid UTF-8${position}; if the file is Latin-1 or Windows-1252, pass --encoding latin1, ` +
      `or convert it: iconv -f latin1 -t utf-8 in.csv > out.csv`
    );
  }
  return `${subject}not valid ${encodingLabel(encoding)} text; pass the file's own --encoding, or convert it to UTF-8: iconv -f <its encoding> -t utf-8 in.csv > out.csv`;
}

/**
 * Streams CSV records with the line each starts on. Quoted fields may span lines. A record that is
 * not valid CSV, or not valid text in the file's encoding, is reported on its first line (naming the
 * line and the cause: a stray quote, an unclosed one, a bad byte) and reading resumes on the next
 * line, so one mistake costs one row, not the rest of the file. Time is linear in the size of the
 * file; memory stays within about `maxRecordBytes`.
 *
 * (csv-parse alone miscounts lines for CRLF inside quoted fields, and after an error it stays in a
 * quoted state and swallows the rows that follow; this framing around it fixes both.)
 */
export async function* readRecords(source: ByteSource, options: ReadRecordsOptions = {}): AsyncGenerator<RawRecord> {
  const maxBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const limit = `${formatBytes(maxBytes)} (--max-record-bytes)`;
  let candidate: Line[] = [];
  let bytes = 0;
  let open = false;
  /** Lines to read again after a bad record (all but its first): a stack, the next line on top. */
  const replay: Line[] = [];
  const readAgain = (lines: Line[]): void => {
    for (let i = lines.length - 1; i >= 1; i--) replay.push(lines[i] as Line);
  };

  function* feed(line: Line): Generator<RawRecord> {
    if (line.tooLong) {
      if (candidate.length > 0) {
        candidate.push(line);
        yield* abandon(`is not closed within ${limit}`);
        return;
      }
      yield byteError(line, `the line is ${formatBytes(line.bytes)} long, over the limit of ${limit}; it was skipped`);
      return;
    }
    candidate.push(line);
    bytes += line.bytes + 1;
    if (quoteCount(line.text) % 2 === 1) open = !open;
    if (!open) yield* close();
    else if (bytes > maxBytes) yield* abandon(`is not closed within ${limit}`);
  }

  function* close(): Generator<RawRecord> {
    const done = candidate;
    candidate = [];
    bytes = 0;
    const first = done[0] as Line;
    if (done.length === 1 && first.invalid) {
      yield byteError(first, describeInvalid(first, first));
      return;
    }
    if (done.length === 1 && first.text.trim() === '') return;
    const parsed = parseCandidate(done);
    if (typeof parsed === 'string') {
      yield { line: first.number, error: parsed };
      readAgain(done);
      return;
    }
    const invalid = done.find((l) => l.invalid);
    if (invalid) {
      yield { line: first.number, error: describeInvalid(invalid, first) };
      return;
    }
    yield { line: first.number, fields: parsed };
  }

  function* abandon(unclosed: string): Generator<RawRecord> {
    const dropped = candidate;
    candidate = [];
    bytes = 0;
    open = false;
    const first = dropped[0];
    if (!first) return;
    const cause = describeQuoteProblem(first, unclosed) ?? `a quoted field opened on line ${first.number} ${unclosed}: close it, or ${HINT_QUOTES}`;
    yield { line: first.number, error: `malformed CSV: ${cause}` };
    readAgain(dropped);
  }

  function* drainReplay(): Generator<RawRecord> {
    for (let next = replay.pop(); next !== undefined; next = replay.pop()) yield* feed(next);
  }

  for await (const line of readLines(source, { encoding: options.encoding ?? DEFAULT_ENCODING, maxLineBytes: maxBytes })) {
    yield* feed(line);
    yield* drainReplay();
  }
  while (candidate.length > 0) {
    yield* abandon('is not closed before the end of the file');
    yield* drainReplay();
  }
}
