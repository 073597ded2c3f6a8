import { ConfigError, ManifestError } from '../errors.js';

/** How a manifest file is read: CSV with a header row, JSON Lines (one object a line), or Parquet. */
export type ManifestFormat = 'csv' | 'jsonl' | 'parquet';

export const MANIFEST_FORMATS: readonly ManifestFormat[] = ['csv', 'jsonl', 'parquet'];

/** A manifest's format and whether its bytes are gzip-compressed (text formats only: Parquet compresses its own pages). */
export interface ManifestEncoding {
  format: ManifestFormat;
  gzip: boolean;
}

const BY_EXTENSION: Readonly<Record<string, ManifestFormat>> = {
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.parquet': 'parquet',
  '.pq': 'parquet',
};

/** `--manifest-format`: csv, jsonl or parquet (each optionally gzip-compressed, told by the name's `.gz`). */
export function parseManifestFormat(flag: string, value: unknown): ManifestFormat | undefined {
  if (value === undefined) return undefined;
  const folded = typeof value === 'string' ? value.trim().toLowerCase() : '';
  const format = folded === 'ndjson' ? 'jsonl' : folded;
  if (!(MANIFEST_FORMATS as readonly string[]).includes(format))
    throw new ConfigError(`Expected ${flag} to be csv, jsonl or parquet, got ${JSON.stringify(value)}`);
  return format as ManifestFormat;
}

/**
 * The format a manifest's name tells (`train.parquet`, `rows.jsonl.gz`, `jobs.csv`), or the one
 * `override` (--manifest-format) gives. A name with no known extension is read as CSV, as before
 * other formats were read; a `.gz` name is decompressed (a gzipped Parquet file is refused: its
 * row groups could no longer be read one at a time).
 */
export function manifestEncodingOf(name: string, override?: ManifestFormat): ManifestEncoding {
  const lower = name.toLowerCase().replace(/[?#].*$/, '');
  const gzip = lower.endsWith('.gz');
  const stem = gzip ? lower.slice(0, -3) : lower;
  const dot = stem.lastIndexOf('.');
  const slash = stem.lastIndexOf('/');
  const extension = dot > slash ? stem.slice(dot) : '';
  const format = override ?? BY_EXTENSION[extension] ?? 'csv';
  if (format === 'parquet' && gzip) {
    throw new ManifestError(
      'MANIFEST_INVALID',
      `${name}: a gzip-compressed Parquet file cannot be read a row group at a time; decompress it (gunzip), or write it with Parquet's own compression (zstd, snappy).`,
      { file: name },
    );
  }
  return { format, gzip };
}

/**
 * What a source's records are called in messages: rows of a Parquet file (from 1), lines of a text
 * file, files of a folder or bucket prefix (named by their path, not by a number).
 */
export type RecordLabel = 'row' | 'line' | 'file';

/** What a manifest's records are numbered by, in messages: rows of a Parquet file (from 1), lines of a text file. */
export function recordLabelOf(name: string, format?: ManifestFormat): 'row' | 'line' {
  if (format !== undefined) return format === 'parquet' ? 'row' : 'line';
  return /\.(parquet|pq)$/i.test(name.replace(/[?#].*$/, '')) ? 'row' : 'line';
}

/** The record label of a source of any kind: a folder's or prefix's records are its files. */
export function recordLabelOfSource(source: { path: string; kind: ManifestFormat | 'folder' | 'prefix' }): RecordLabel {
  return source.kind === 'folder' || source.kind === 'prefix' ? 'file' : recordLabelOf(source.path, source.kind);
}
