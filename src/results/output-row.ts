import type { RecordLabel } from '../manifest/manifest-format.js';
import type { RowEntry } from '../queue/batch-rows.js';
import type { ExportStatus, RowResult } from './row-result.js';

/**
 * Output columns, in order; the manifest's extra columns follow. A contract: columns are added at
 * the end (before the extras), never renamed or reordered.
 */
export const OUTPUT_COLUMNS = [
  'id',
  'status',
  'output',
  'error',
  'attempts',
  'request_id',
  'endpoint',
  'image_url',
  'prompt',
  'latency_ms',
  'partial',
  'error_type',
  'inference_s',
  'cached',
] as const;

export type OutputColumn = (typeof OUTPUT_COLUMNS)[number];

/** Parquet type of each output column (carried manifest columns are strings). */
export const COLUMN_TYPES: Readonly<Record<OutputColumn, 'STRING' | 'INT32' | 'INT64' | 'DOUBLE' | 'BOOLEAN'>> = {
  id: 'STRING',
  status: 'STRING',
  output: 'STRING',
  error: 'STRING',
  attempts: 'INT32',
  request_id: 'STRING',
  endpoint: 'STRING',
  image_url: 'STRING',
  prompt: 'STRING',
  latency_ms: 'INT64',
  partial: 'BOOLEAN',
  error_type: 'STRING',
  inference_s: 'DOUBLE',
  cached: 'BOOLEAN',
};

/** The error class of a rejected row (never called: the manifest row is bad). */
export const REJECTED_ERROR_TYPE = 'invalid_row';

export type OutputValue = string | number | boolean | null;
export type OutputRow = Record<string, OutputValue>;

/** How a manifest row stands, from its rows-list entry and its key's result. */
export function exportStatusOf(entry: RowEntry, result: RowResult | undefined): ExportStatus {
  if (entry.rejected !== undefined) return 'rejected';
  if (entry.skipped !== undefined) return 'skipped';
  return result?.status ?? 'pending';
}

/**
 * One manifest row as every output format writes it (`extras`: the carried columns' output names).
 * A string the row does not have (no answer, no error, no request) is null: an empty cell in CSV,
 * null in JSONL and Parquet, like the numbers and booleans it does not have. `caption`: for a
 * skipped row, the caption it already has (the batch's earlier answer, or its caption file's text).
 */
export function outputRow(
  entry: RowEntry,
  result: RowResult | undefined,
  extras: readonly string[],
  caption?: string,
  /** What the manifest's records are numbered by: lines, rows of a Parquet file, or files (named by the reason itself). */
  recordLabel: RecordLabel = 'line',
): { row: OutputRow; status: ExportStatus } {
  const status = exportStatusOf(entry, result);
  const ended = status === 'ok' || status === 'failed';
  const row: OutputRow = {
    id: entry.key === '' ? null : entry.key,
    status,
    output: status === 'skipped' ? (caption ?? null) : (result?.output ?? null),
    error:
      entry.rejected !== undefined
        ? recordLabel === 'file'
          ? entry.rejected
          : `${recordLabel} ${entry.line}: ${entry.rejected}`
        : entry.skipped !== undefined
          ? entry.skipped
          : (result?.error ?? null),
    attempts: result?.attempts ?? 0,
    request_id: result?.request_id ?? null,
    endpoint: entry.endpoint,
    image_url: entry.imageDisplay,
    prompt: entry.prompt,
    latency_ms: result?.latency_ms ?? null,
    // Known only for an answer: false means the model ended it itself.
    partial: status === 'ok' ? result?.partial === true : null,
    error_type: status === 'rejected' ? REJECTED_ERROR_TYPE : status === 'failed' ? (result?.error_type ?? null) : null,
    inference_s: result?.inference_s ?? null,
    cached: ended ? result?.cached === true : null,
  };
  extras.forEach((name, i) => {
    row[name] = entry.extras[i] ?? '';
  });
  return { row, status };
}

/** Extra columns keep their names unless one collides with an output column; then it gets `manifest_`. */
export function extraNames(extras: readonly string[]): string[] {
  return extras.map((name) => ((OUTPUT_COLUMNS as readonly string[]).includes(name.toLowerCase()) ? `manifest_${name}` : name));
}
