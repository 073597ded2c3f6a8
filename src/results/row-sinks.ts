import { stringify } from 'csv-stringify/sync';
import type { SchemaElement, Writer } from 'hyparquet-writer';
import { importOnce } from '../load-dependency.js';
import type { AtomicFile } from './atomic-file.js';
import { COLUMN_TYPES, type OutputColumn, type OutputRow, type OutputValue } from './output-row.js';

/** The formats a results file can be written in. */
export type OutputFormat = 'csv' | 'jsonl' | 'parquet';

/** Where exported rows go, page after page, in manifest order. */
export interface RowSink {
  write(rows: readonly OutputRow[]): Promise<void>;
  /** Writes what is still buffered and the format's trailer (the file is then closed by its owner). */
  end(): Promise<void>;
}

/** A field that must be quoted (RFC 4180): it holds the delimiter, a quote or a line break. */
const NEEDS_QUOTES = /[",\n\r]/;

/**
 * One CSV record, byte for byte what csv-stringify writes with its defaults (quoted only when
 * needed, quotes doubled, `\n` after each record), and booleans as words (csv-stringify would
 * write 1 and an empty cell). Written here rather than by csv-stringify, whose general casting and
 * quoting cost ~50 µs a row when the export runs once, cold: 0.15 s of CPU for 3,000 rows, in the
 * time between `run`'s last answer and its exit (issue 19). test/unit/csv-line.test.ts holds the two equal.
 */
export function csvLine(values: readonly (OutputValue | undefined)[]): string {
  let line = '';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const text = value === null || value === undefined ? '' : typeof value === 'boolean' ? (value ? 'true' : 'false') : String(value);
    if (i > 0) line += ',';
    line += NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  }
  return `${line}\n`;
}

export async function csvSink(file: AtomicFile, columns: readonly string[]): Promise<RowSink> {
  await file.write(stringify([[...columns]]));
  return {
    async write(rows) {
      if (rows.length > 0) await file.write(rows.map((row) => csvLine(columns.map((column) => row[column]))).join(''));
    },
    async end() {},
  };
}

export function jsonlSink(file: AtomicFile): RowSink {
  return {
    async write(rows) {
      if (rows.length > 0) await file.write(rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
    },
    async end() {},
  };
}

/** Rows per Parquet row group: memory holds one group at a time, however many rows the batch has. */
export const ROW_GROUP_ROWS = 10_000;
/** A row group is cut sooner when its text reaches this many characters (long prompts, long answers). */
const ROW_GROUP_CHARS = 32 * 1024 * 1024;

/** hyparquet-writer is loaded by a Parquet export only (checkOutput loads it before a batch is paid for). */
export const loadParquetWriter = importOnce('hyparquet-writer', 'Writing Parquet (.parquet)', () => import('hyparquet-writer'));

/**
 * Parquet through hyparquet-writer's ParquetWriter: rows are buffered into row groups of
 * ROW_GROUP_ROWS, each encoded and streamed to the file as soon as it is full (the writer's
 * buffer is flushed after every group), so memory stays bounded. Every column is optional (null
 * where JSONL has null); output columns have their types (attempts INT32, latency_ms INT64,
 * inference_s DOUBLE, partial and cached BOOLEAN), carried columns are strings.
 */
export async function parquetSink(file: AtomicFile, columns: readonly string[]): Promise<RowSink> {
  const { ByteWriter, ParquetWriter } = await loadParquetWriter();
  const typeOf = (name: string): (typeof COLUMN_TYPES)[OutputColumn] => COLUMN_TYPES[name as OutputColumn] ?? 'STRING';
  const schema: SchemaElement[] = [
    { name: 'root', num_children: columns.length },
    ...columns.map((name): SchemaElement => {
      const type = typeOf(name);
      const element: SchemaElement = { name, repetition_type: 'OPTIONAL', type: type === 'STRING' ? 'BYTE_ARRAY' : type };
      if (type === 'STRING') element.converted_type = 'UTF8';
      return element;
    }),
  ];
  const bytes = new ByteWriter();
  const writer: Writer = Object.assign(bytes, {
    // After each row group: hand its bytes to the file (a copy: the buffer is reused) and start over.
    flush: async (): Promise<void> => {
      const chunk = bytes.getBytes().slice();
      bytes.index = 0;
      if (chunk.length > 0) await file.write(chunk);
    },
    finish: async (): Promise<void> => {
      const chunk = bytes.getBytes().slice();
      bytes.index = 0;
      if (chunk.length > 0) await file.write(chunk);
    },
  });
  const parquet = new ParquetWriter({ writer, schema, createdBy: 'falbatch' });
  let group: OutputRow[] = [];
  let groupChars = 0;

  const value = (name: string, raw: OutputValue | undefined): OutputValue | bigint => {
    if (raw === undefined || raw === null) return null;
    const type = typeOf(name);
    if (type === 'INT64') return BigInt(Math.round(Number(raw)));
    if (type === 'STRING') return String(raw);
    return raw;
  };

  const flushGroup = async (): Promise<void> => {
    if (group.length === 0) return;
    const rows = group;
    group = [];
    groupChars = 0;
    await parquet.write({
      columnData: columns.map((name) => ({ name, data: rows.map((row) => value(name, row[name])) })),
      rowGroupSize: rows.length,
    });
  };

  return {
    async write(rows) {
      for (const row of rows) {
        group.push(row);
        for (const name of columns) {
          const cell = row[name];
          if (typeof cell === 'string') groupChars += cell.length;
        }
        if (group.length >= ROW_GROUP_ROWS || groupChars >= ROW_GROUP_CHARS) await flushGroup();
      }
    },
    async end() {
      await flushGroup();
      await parquet.finish();
    },
  };
}
