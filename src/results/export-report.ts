import { dirname, extname, join, basename } from 'node:path';
import type { FalbatchContext } from '../context.js';
import type { BatchMeta } from '../queue/batch-meta.js';
import type { RowEntry } from '../queue/batch-rows.js';
import { addToAggregate, emptyAggregate, figuresOf, type CallFigures } from './batch-figures.js';
import type { OutputFormat } from './row-sinks.js';
import type { HfMetadataSummary } from './hf-metadata.js';
import { REJECTED_ERROR_TYPE, type OutputRow } from './output-row.js';
import type { Price } from '../fal/price.js';
import type { ExportStatus, RowResult } from './row-result.js';

/** Columns of `<out>.errors.csv`: one line per failed or rejected manifest row, in manifest order. */
export const ERRORS_COLUMNS = ['id', 'line', 'status', 'error_type', 'error', 'attempts', 'request_id'] as const;

/** The files written beside an output `X.ext`: `X.errors.csv` and `X.report.json`. */
export function sideFiles(out: string): { errors: string; report: string } {
  const stem = join(dirname(out), basename(out, extname(out)));
  return { errors: `${stem}.errors.csv`, report: `${stem}.report.json` };
}

/** The errors-file line of a failed or rejected row; undefined for the others. */
export function errorsRow(entry: RowEntry, result: RowResult | undefined, status: ExportStatus): OutputRow | undefined {
  if (status === 'rejected') {
    return { id: entry.key, line: entry.line, status, error_type: REJECTED_ERROR_TYPE, error: entry.rejected ?? '', attempts: 0, request_id: '' };
  }
  if (status !== 'failed') return undefined;
  return {
    id: entry.key,
    line: entry.line,
    status,
    error_type: result?.error_type ?? '',
    error: result?.error ?? '',
    attempts: result?.attempts ?? 0,
    request_id: result?.request_id ?? '',
  };
}

/** Manifest rows by how they stand. ok + failed + rejected + skipped (+ pending) = rows. */
export interface ReportCounts {
  rows: number;
  ok: number;
  failed: number;
  rejected: number;
  /** Rows that needed no call (e.g. their image already had a caption file). */
  skipped: number;
  /** Rows not ended yet: only in the report of a batch exported before it finished. */
  pending?: number;
}

/** `<out>.report.json`: what a batch did, reconciled, with its timings and cost. */
export interface ExportReport extends CallFigures {
  batch: string;
  manifest: string;
  /** The results file this report goes with. */
  out: string;
  format: OutputFormat;
  /** ISO time of the export. */
  writtenAt: string;
  /** Every manifest row ended, was rejected, or needed no call. */
  finished: boolean;
  counts: ReportCounts;
  time: {
    /** ISO time the batch was first enqueued. */
    createdAt: string;
    /** ISO time its last row ended (null before any did). */
    lastFinishedAt: string | null;
    /** createdAt → lastFinishedAt, ms. */
    wallMs: number | null;
    /** Rows that ended (ok or failed; identical rows, sharing one call, count once). */
    rowsEnded: number;
    /** rowsEnded per minute of wall time. */
    rowsPerMinute: number | null;
  };
  files: { output: string; errors: string; report: string; hfMetadata: HfMetadataSummary | null };
}

const round = (value: number, digits: number): number => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Builds the report: `counts` from the export's pass over the rows list (manifest rows), the
 * figures from the batch's results hash (each row key once: identical rows share one call).
 */
export async function buildReport(
  ctx: FalbatchContext,
  meta: BatchMeta,
  written: { out: string; format: OutputFormat; errors: string; report: string; hfMetadata: HfMetadataSummary | undefined },
  counts: Required<ReportCounts>,
  price: Price | undefined,
): Promise<ExportReport> {
  const aggregate = emptyAggregate();
  let lastFinishedAt: number | undefined;
  const results = ctx.keys.batch(meta.name).results;
  let cursor = '0';
  do {
    const [next, fields] = await ctx.redis.hscan(results, cursor, 'COUNT', 1000);
    cursor = next;
    for (let i = 1; i < fields.length; i += 2) {
      let result: RowResult;
      try {
        result = JSON.parse(fields[i] as string) as RowResult;
      } catch {
        continue;
      }
      addToAggregate(aggregate, result);
      if (lastFinishedAt === undefined || result.finished_at > lastFinishedAt) lastFinishedAt = result.finished_at;
    }
  } while (cursor !== '0');
  const figures = figuresOf(aggregate, price);
  const wallMs = lastFinishedAt === undefined ? null : Math.max(0, lastFinishedAt - meta.createdAt);
  const { pending, ...ended } = counts;
  return {
    batch: meta.name,
    manifest: meta.manifest,
    out: written.out,
    format: written.format,
    writtenAt: new Date(ctx.clock.now()).toISOString(),
    finished: pending === 0,
    counts: pending > 0 ? { ...ended, pending } : ended,
    time: {
      createdAt: new Date(meta.createdAt).toISOString(),
      lastFinishedAt: lastFinishedAt === undefined ? null : new Date(lastFinishedAt).toISOString(),
      wallMs,
      rowsEnded: aggregate.ended,
      rowsPerMinute: wallMs === null ? null : round((aggregate.ended * 60_000) / Math.max(wallMs, 1), 2),
    },
    latencyMs: { total: figures.latency.total ?? null, queueWait: figures.latency.queueWait ?? null, inference: figures.latency.inference ?? null },
    inferenceSeconds: round(figures.inferenceSeconds, 3),
    billedCalls: figures.billedCalls,
    reused: figures.reused,
    partial: figures.partial,
    cost: figures.cost ? { ...figures.cost, amount: round(figures.cost.amount, 6) } : null,
    files: { output: written.out, errors: written.errors, report: written.report, hfMetadata: written.hfMetadata ?? null },
  };
}
