import type { FileMetaData, SchemaTree } from 'hyparquet';
import { ManifestError } from '../errors.js';
import { importOnce } from '../load-dependency.js';
import { formatBytes } from './format-bytes.js';
import type { ManifestBytes } from './manifest-bytes.js';
import { DEFAULT_MAX_RECORD_BYTES } from './read-defaults.js';
import type { RawRecord } from './read-records.js';

// hyparquet and the codecs only for a .parquet manifest: a CSV run never loads them.
const loadHyparquet = importOnce('hyparquet', 'Reading a Parquet manifest (.parquet)', () => import('hyparquet'));
const loadCompressors = importOnce('hyparquet-compressors', 'Reading a compressed Parquet manifest (.parquet)', () => import('hyparquet-compressors'));

export interface ReadParquetOptions {
  /** Largest row, in characters of its cells (an image's bytes as their data URI); a larger one is rejected. @default 16 MiB */
  maxRecordBytes?: number | undefined;
}

/**
 * How one column of the manifest is read from a row object: the value at `path`, or (`image`) a
 * Hugging Face image struct {bytes, path} as one image cell.
 */
interface ColumnReader {
  name: string;
  path: string[];
  image: boolean;
}

const PARQUET_MAGIC = 'PAR1';

function isStruct(node: SchemaTree): boolean {
  const element = node.element;
  if (node.children.length === 0) return false;
  const logical = element.logical_type?.type;
  return (
    element.converted_type !== 'LIST' &&
    element.converted_type !== 'MAP' &&
    element.converted_type !== 'MAP_KEY_VALUE' &&
    logical !== 'LIST' &&
    logical !== 'MAP'
  );
}

/** A struct with a binary `bytes` field and maybe a `path` (or only those): how 🤗 datasets stores an Image feature. */
function isImageStruct(node: SchemaTree): boolean {
  const names = node.children.map((child) => child.element.name);
  const bytes = node.children.find((child) => child.element.name === 'bytes');
  return bytes !== undefined && bytes.children.length === 0 && bytes.element.type === 'BYTE_ARRAY' && names.every((n) => n === 'bytes' || n === 'path');
}

/**
 * The columns of a Parquet file, named as a CSV header would name them: top-level columns by
 * their names, fields of a struct as `struct.field` (recursively). A 🤗 image struct
 * (`image: {bytes, path}`) is the column `image` (the image: its bytes as a data URI, else its
 * path) and `image.path`.
 */
function columnReaders(root: SchemaTree): ColumnReader[] {
  const out: ColumnReader[] = [];
  const visit = (node: SchemaTree, prefix: string[]): void => {
    for (const child of node.children) {
      const path = [...prefix, child.element.name];
      const name = path.join('.');
      if (isStruct(child) && isImageStruct(child)) {
        out.push({ name, path, image: true });
        if (child.children.some((c) => c.element.name === 'path')) out.push({ name: `${name}.path`, path: [...path, 'path'], image: false });
      } else if (isStruct(child)) visit(child, path);
      else out.push({ name, path, image: false });
    }
  };
  visit(root, []);
  return out;
}

/** The image type the first bytes announce, for a data URI's MIME type (the resolver checks the bytes themselves again). */
function sniffMime(bytes: Uint8Array): string {
  const starts = (...magic: number[]): boolean => magic.every((byte, i) => bytes[i] === byte);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) return 'image/webp';
  if (starts(0x42, 0x4d)) return 'image/bmp';
  return 'application/octet-stream';
}

function dataUri(bytes: Uint8Array): string {
  return `data:${sniffMime(bytes)};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A Parquet value as the text of a cell, or an Error saying why it cannot be one. */
function cellOf(value: unknown, column: string): string | Error {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? '' : value.toISOString();
  if (value instanceof Uint8Array) {
    // Binary: an image (as a data URI, as an image cell takes it), or text stored without its annotation.
    if (sniffMime(value) !== 'application/octet-stream') return dataUri(value);
    try {
      return strictUtf8.decode(value);
    } catch {
      return new Error(
        `column ${column} holds ${formatBytes(value.byteLength)} of binary data that is neither a PNG, JPEG, WebP, GIF or BMP image nor UTF-8 text`,
      );
    }
  }
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? String(v) : v instanceof Uint8Array ? `<${v.byteLength} bytes>` : v));
}

function valueAt(row: Record<string, unknown>, path: readonly string[]): unknown {
  let value: unknown = row;
  for (const key of path) {
    if (value === null || value === undefined || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function imageCell(value: unknown, column: string): string | Error {
  if (value === null || value === undefined || typeof value !== 'object') return '';
  const { bytes, path } = value as { bytes?: unknown; path?: unknown };
  if (bytes instanceof Uint8Array && bytes.byteLength > 0) return dataUri(bytes);
  return cellOf(path, `${column}.path`);
}

/** A failure of the file itself (not Parquet, cut short, a codec not supported) as a ManifestError naming it. */
function unreadable(name: string, reason: string, cause: unknown): ManifestError {
  return new ManifestError('MANIFEST_UNREADABLE', `Cannot read manifest ${name}: ${reason}.`, { file: name }, { cause });
}

async function metadataOf(bytes: ManifestBytes, size: number): Promise<FileMetaData> {
  const notParquet = `it is not a Parquet file (${size < 12 ? `only ${size} bytes` : 'no PAR1 marker at its start and end'}); name it .csv or .jsonl, or pass --manifest-format, if it is one of those`;
  if (size < 12) throw unreadable(bytes.name, notParquet, undefined);
  const [head, tail] = await Promise.all([bytes.slice(0, 4), bytes.slice(size - 4, size)]);
  const marker = (buffer: ArrayBuffer): string => Buffer.from(buffer).toString('latin1');
  if (marker(head) !== PARQUET_MAGIC || marker(tail) !== PARQUET_MAGIC) {
    const cut =
      marker(head) === PARQUET_MAGIC ? 'it starts as a Parquet file but does not end as one: it is truncated (an interrupted download or upload?)' : notParquet;
    throw unreadable(bytes.name, cut, undefined);
  }
  const { parquetMetadataAsync } = await loadHyparquet();
  try {
    return await parquetMetadataAsync({ byteLength: size, slice: (start, end) => bytes.slice(start, end ?? size) });
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    throw unreadable(bytes.name, `its Parquet footer cannot be read (${(error as Error).message})`, error);
  }
}

/**
 * Streams a Parquet manifest as records, the way a CSV is read: first a header (its columns, see
 * columnReaders; numbered row 0), then one record per row numbered from 1. Reads by ranges: the
 * footer, then one row group at a time, so memory holds one row group (as decoded), never the
 * file. Codecs: snappy, gzip, zstd, brotli, lz4. A row whose cells cannot be text, or larger than
 * maxRecordBytes, is rejected on its row; a file that is not Parquet, cut short, or whose pages
 * cannot be decoded fails with a MANIFEST_UNREADABLE error naming it (and the row group).
 */
export async function* readParquet(bytes: ManifestBytes, options: ReadParquetOptions = {}): AsyncGenerator<RawRecord> {
  const maxBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const size = await bytes.byteLength();
  const metadata = await metadataOf(bytes, size);
  const [{ parquetReadObjects, parquetSchema }, { compressors }] = await Promise.all([loadHyparquet(), loadCompressors()]);
  const readers = columnReaders(parquetSchema(metadata));
  yield { line: 0, fields: readers.map((r) => r.name) };
  const file = { byteLength: size, slice: (start: number, end?: number) => bytes.slice(start, end ?? size) };
  let rowStart = 0;
  for (const [group, rowGroup] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(rowGroup.num_rows);
    if (rowEnd === rowStart) continue;
    let rows: Array<Record<string, unknown>>;
    try {
      rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd, compressors, utf8: false });
    } catch (error) {
      if (error instanceof ManifestError) throw error;
      throw unreadable(
        bytes.name,
        `row group ${group + 1} (rows ${rowStart + 1}–${rowEnd}) cannot be decoded (${(error as Error).message}); rows before it were read`,
        error,
      );
    }
    for (const [i, row] of rows.entries()) {
      const number = rowStart + i + 1;
      const fields: string[] = [];
      let chars = 0;
      let problem: string | undefined;
      for (const reader of readers) {
        const value = valueAt(row, reader.path);
        const cell = reader.image ? imageCell(value, reader.name) : cellOf(value, reader.name);
        if (cell instanceof Error) {
          problem = cell.message;
          break;
        }
        chars += cell.length;
        fields.push(cell);
      }
      if (problem === undefined && chars > maxBytes)
        problem = `the row is ${formatBytes(chars)} of text (images as data URIs), over the limit of ${formatBytes(maxBytes)} (--max-record-bytes); it was skipped`;
      yield problem === undefined ? { line: number, fields } : { line: number, error: problem };
    }
    rowStart = rowEnd;
  }
}
