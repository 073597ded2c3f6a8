import { formatBytes } from './format-bytes.js';
import { DEFAULT_ENCODING, DEFAULT_MAX_RECORD_BYTES } from './read-defaults.js';
import { readLines, type ByteSource, type Line } from './read-lines.js';
import { describeInvalid, type RawRecord, type ReadRecordsOptions } from './read-records.js';

/**
 * One JSON value as a cell: the text a CSV cell would hold. Strings as they are, numbers and
 * booleans as JSON writes them, null as an empty cell; arrays as their JSON text (nested objects
 * never reach here: they are flattened into dotted columns).
 */
export function cellOf(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An object's cells by column name: a nested object's fields become dotted columns
 * (`{"image": {"path": "a.jpg"}}` is the column `image.path`), so a mapping can name them
 * (`--input '{"image_url": "{image.path:image}", …}'`).
 */
export function flattenObject(object: Record<string, unknown>, into = new Map<string, string>(), prefix = ''): Map<string, string> {
  for (const [key, value] of Object.entries(object)) {
    const name = `${prefix}${key}`;
    if (isPlainObject(value) && Object.keys(value).length > 0) flattenObject(value, into, `${name}.`);
    else into.set(name, cellOf(value));
  }
  return into;
}

/** The JSON text of a line as an object, or why it is not one. */
function parseObject(text: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `not valid JSON (${(error as Error).message}); each line must hold one JSON object`;
  }
  if (!isPlainObject(value)) {
    const kind = Array.isArray(value) ? 'an array' : value === null ? 'null' : `a ${typeof value}`;
    return `${kind}, not a JSON object; each line must hold one object, e.g. {"image_url": "…", "prompt": "…"}`;
  }
  return value;
}

function listed(names: readonly string[]): string {
  const shown = names.slice(0, 12).map((n) => `"${n}"`);
  return names.length > shown.length ? `${shown.join(', ')} and ${names.length - shown.length} more` : shown.join(', ');
}

/**
 * Streams a JSON Lines manifest as records, the way a CSV is read: first a header (the columns:
 * the keys of the first object, nested objects flattened into dotted names, numbered with that
 * object's line), then one record per object with the line it is on. A later object may leave
 * keys out (empty cells); a key the first object did not have rejects its line, naming it. A line
 * that is not a JSON object, not valid text, or over maxRecordBytes is rejected on its line, and
 * reading goes on. Blank lines are skipped. Memory stays within about maxRecordBytes.
 */
export async function* readJsonl(source: ByteSource, options: ReadRecordsOptions = {}): AsyncGenerator<RawRecord> {
  const maxBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const limit = `${formatBytes(maxBytes)} (--max-record-bytes)`;
  let columns: Map<string, number> | undefined;
  let names: string[] = [];
  /** Why a line cannot be read at all (too long, not valid text), or undefined. */
  const unreadable = (line: Line): string | undefined => {
    if (line.tooLong) return `the line is ${formatBytes(line.bytes)} long, over the limit of ${limit}; it was skipped`;
    if (line.invalid) return describeInvalid(line, line).replace(/in\.csv > out\.csv/g, 'in.jsonl > out.jsonl');
    return undefined;
  };
  for await (const line of readLines(source, { encoding: options.encoding ?? DEFAULT_ENCODING, maxLineBytes: maxBytes })) {
    if (!line.tooLong && !line.invalid && line.text.trim() === '') continue;
    const parsed = unreadable(line) ?? parseObject(line.text);
    if (!columns) {
      // The first object names the columns: without it there is nothing to map rows by.
      if (typeof parsed === 'string') {
        yield { line: line.number, error: `the first line, which names the columns, is unusable: ${parsed}` };
        return;
      }
      const cells = flattenObject(parsed);
      names = [...cells.keys()];
      columns = new Map(names.map((name, index) => [name, index]));
      yield { line: line.number, fields: names };
      yield { line: line.number, fields: [...cells.values()] };
      continue;
    }
    if (typeof parsed === 'string') {
      yield { line: line.number, error: parsed };
      continue;
    }
    const fields: string[] = new Array<string>(names.length).fill('');
    const unknown: string[] = [];
    for (const [name, value] of flattenObject(parsed)) {
      const index = columns.get(name);
      if (index === undefined) unknown.push(name);
      else fields[index] = value;
    }
    if (unknown.length > 0) {
      yield {
        line: line.number,
        error:
          `${unknown.length === 1 ? 'key' : 'keys'} ${listed(unknown)} ${unknown.length === 1 ? 'is' : 'are'} not among the columns the first line set (${listed(names)}); ` +
          'give the first line every key (null where it has no value)',
      };
      continue;
    }
    yield { line: line.number, fields };
  }
}
