import { describe, expect, it } from 'vitest';
import type { ManifestRow, RejectedRow } from '../../src/manifest/validate-row.js';
import { REPORTED_REJECTIONS, admissionCandidates, admitRows, sortByKnown, tallyChunk, type ChunkTally } from '../../src/queue/chunk-rows.js';
import type { Verdict } from '../../src/queue/validated-chunks.js';

// What an enqueue decides about a chunk's rows, without Redis: which are counted, which add a job,
// and which `admit` (a schedule's --max-rows, --max-spend) defers.

function row(line: number, key: string, fingerprint = `fp-${key}`): ManifestRow {
  return { line, id: key, key, fingerprint, endpoint: 'fal-ai/x', input: {}, outputField: 'output', imageDisplay: '', prompt: '', extras: [], localImages: [] };
}
function rejected(line: number, reason = 'bad'): RejectedRow {
  return { line, reason, id: undefined, endpoint: 'fal-ai/x', imageDisplay: '', prompt: '', extras: [] };
}
const tally = (): ChunkTally => ({ skipped: 0, rejected: 0, shared: 0, rejections: [] });

describe('tallyChunk', () => {
  it('counts skipped, rejected (with line and reason) and shared rows; answers the distinct rows in manifest order', () => {
    const a = row(2, 'a');
    const b = row(3, 'b');
    const chunk: Verdict[] = [
      { ok: true, row: a },
      { ok: false, rejected: rejected(4, 'no prompt') },
      { ok: false, rejected: rejected(5, 'caption exists'), skip: true },
      { ok: true, row: b },
      { ok: true, row: row(6, 'a') },
    ];
    const counts = tally();
    expect(tallyChunk(counts, chunk)).toEqual([a, b]);
    expect(counts).toEqual({ skipped: 1, rejected: 1, shared: 1, rejections: [{ line: 4, reason: 'no prompt' }] });
  });

  it(`lists the first ${REPORTED_REJECTIONS} rejections, counts them all`, () => {
    const counts = tally();
    tallyChunk(
      counts,
      Array.from({ length: REPORTED_REJECTIONS + 5 }, (_, i): Verdict => ({ ok: false, rejected: rejected(i + 2) })),
    );
    expect(counts.rejected).toBe(REPORTED_REJECTIONS + 5);
    expect(counts.rejections).toHaveLength(REPORTED_REJECTIONS);
  });
});

describe('sortByKnown', () => {
  it('a key the batch does not know is fresh; with another fingerprint, edited; with the same, present', () => {
    const rows = [row(2, 'a'), row(3, 'b'), row(4, 'c'), row(5, 'd')];
    expect(sortByKnown(rows, [null, 'fp-other', 'fp-c', undefined])).toEqual({ fresh: [rows[0], rows[3]], edited: [rows[1]], present: [rows[2]] });
  });
});

describe('admission', () => {
  const rows = [row(2, 'a'), row(3, 'b'), row(4, 'c'), row(5, 'd')];
  const [a, b, c, d] = rows as [ManifestRow, ManifestRow, ManifestRow, ManifestRow];
  const adding = { fresh: [a, d], edited: [c], lost: [] };

  it('asks about the rows that add a job, in manifest order', () => {
    expect(admissionCandidates(rows, adding)).toEqual([a, c, d]);
  });

  it('keeps the first rows admitted, in manifest order across kinds; the others are deferred', () => {
    expect(admitRows([a, c, d], adding, 2)).toEqual({ admitted: { fresh: [a], edited: [c], lost: [] }, deferred: 1 });
  });

  it('clamps the answer: fractions cut, below 0 none, above all all', () => {
    expect(admitRows([a, c, d], adding, 1.9)).toEqual({ admitted: { fresh: [a], edited: [], lost: [] }, deferred: 2 });
    expect(admitRows([a, c, d], adding, -3)).toEqual({ admitted: { fresh: [], edited: [], lost: [] }, deferred: 3 });
    expect(admitRows([a, c, d], adding, 99)).toEqual({ admitted: adding, deferred: 0 });
  });

  it('an answer that is not a number admits every row (as before: nothing deferred)', () => {
    expect(admitRows([a, c, d], adding, Number.NaN)).toEqual({ admitted: adding, deferred: 0 });
  });

  it('nothing to admit: nothing deferred', () => {
    expect(admitRows([], { fresh: [], edited: [], lost: [] }, 0)).toEqual({ admitted: { fresh: [], edited: [], lost: [] }, deferred: 0 });
    expect(admissionCandidates([b], { fresh: [], edited: [], lost: [] })).toEqual([]);
  });
});
