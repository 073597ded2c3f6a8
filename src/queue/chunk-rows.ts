import type { ManifestRow } from '../manifest/validate-row.js';
import type { Verdict } from './validated-chunks.js';
import { fingerprintOf } from './row-keys.js';

/** What an enqueue reports of the rows it read (see EnqueueSummary). */
export interface ChunkTally {
  skipped: number;
  rejected: number;
  shared: number;
  rejections: Array<{ line: number; reason: string }>;
}

/** Rejections (and changed rows) an enqueue lists; all of them are in the batch's export. */
export const REPORTED_REJECTIONS = 1000;

/** Counts a chunk's skipped, rejected and shared rows into `tally`; answers its distinct rows to call, in manifest order. */
export function tallyChunk(tally: ChunkTally, chunk: readonly Verdict[]): ManifestRow[] {
  const distinct = new Map<string, ManifestRow>();
  for (const verdict of chunk) {
    if (!verdict.ok && verdict.skip) {
      tally.skipped++;
      continue;
    }
    if (!verdict.ok) {
      tally.rejected++;
      if (tally.rejections.length < REPORTED_REJECTIONS) tally.rejections.push({ line: verdict.rejected.line, reason: verdict.rejected.reason });
      continue;
    }
    if (distinct.has(verdict.row.key)) tally.shared++;
    else distinct.set(verdict.row.key, verdict.row);
  }
  return [...distinct.values()];
}

/** A chunk's rows to call, by what the batch knows of their keys. */
export interface SortedRows {
  /** Keys the batch does not know: a job each. */
  fresh: ManifestRow[];
  /** Keys the batch knows with other content (edited rows): called again, their old answer dropped. */
  edited: ManifestRow[];
  /** Keys the batch knows with this content: nothing to add, unless Redis lost their job. */
  present: ManifestRow[];
}

/** Sorts rows by the fingerprint the batch has for each key (`known[i]` for `rows[i]`; null: none). */
export function sortByKnown(rows: readonly ManifestRow[], known: ReadonlyArray<string | null | undefined>): SortedRows {
  const sorted: SortedRows = { fresh: [], edited: [], present: [] };
  rows.forEach((row, i) => {
    const fingerprint = fingerprintOf(row.key, known[i]);
    if (fingerprint === null) sorted.fresh.push(row);
    else if (fingerprint !== row.fingerprint) sorted.edited.push(row);
    else sorted.present.push(row);
  });
  return sorted;
}

/** The rows that add a job: new, edited, and present ones whose job Redis lost. */
export interface RowsToAdd {
  fresh: ManifestRow[];
  edited: ManifestRow[];
  lost: ManifestRow[];
}

/** The rows that would add a job, in manifest order (what `admit` is asked about). */
export function admissionCandidates(rows: readonly ManifestRow[], adding: RowsToAdd): ManifestRow[] {
  const all = new Set([...adding.fresh, ...adding.edited, ...adding.lost]);
  return rows.filter((row) => all.has(row));
}

/**
 * Keeps the first `answer` of `candidates` (what `admit` said, clamped to 0..all, fractions cut):
 * the others are deferred to a later enqueue, as if not read.
 */
export function admitRows(candidates: readonly ManifestRow[], adding: RowsToAdd, answer: number): { admitted: RowsToAdd; deferred: number } {
  const admitted = candidates.length === 0 ? 0 : Math.max(0, Math.min(candidates.length, Math.floor(answer)));
  // (Written so: an answer that is not a number admits every row, as it always has.)
  if (!(admitted < candidates.length)) return { admitted: adding, deferred: 0 };
  const kept = new Set(candidates.slice(0, admitted));
  const keep = (list: ManifestRow[]): ManifestRow[] => list.filter((row) => kept.has(row));
  return { admitted: { fresh: keep(adding.fresh), edited: keep(adding.edited), lost: keep(adding.lost) }, deferred: candidates.length - admitted };
}
