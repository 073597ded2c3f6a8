import { gunzip } from './gunzip.js';
import type { ManifestBytes } from './manifest-bytes.js';
import type { ManifestEncoding } from './manifest-format.js';
import { readJsonl } from './read-jsonl.js';
import { readParquet } from './read-parquet.js';
import { readRecords, type RawRecord, type ReadRecordsOptions } from './read-records.js';

/**
 * A manifest's records, whatever its format and wherever its bytes are: header first, then one
 * record per row, each with the line (CSV, JSONL) or row (Parquet) it comes from. Everything after
 * (column mapping, templates, validation, the queue) is the same for every format.
 */
export function manifestRecords(bytes: ManifestBytes, encoding: ManifestEncoding, options: ReadRecordsOptions): AsyncIterable<RawRecord> {
  if (encoding.format === 'parquet') return readParquet(bytes, { maxRecordBytes: options.maxRecordBytes });
  const text = encoding.gzip ? gunzip(bytes.stream(), bytes.name) : bytes.stream();
  return encoding.format === 'jsonl' ? readJsonl(text, options) : readRecords(text, options);
}

/** How a format's header is named in messages (mapColumns' `where`). */
export function headerNameOf(encoding: ManifestEncoding): string {
  switch (encoding.format) {
    case 'parquet':
      return "the Parquet file's schema";
    case 'jsonl':
      return "the first line's keys";
    default:
      return 'the header (line 1)';
  }
}
