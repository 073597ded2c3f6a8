/**
 * A row's BullMQ job data. Short names: a million of these sit in Redis.
 * The request a row submits is saved right after submit, before waiting, under its request key
 * (`request:<job id>`, see results/result-store.ts), where every delivery looks first: a worker
 * that picks the job up after a crash resumes the paid request instead of submitting it again.
 * `rid`/`sub` are written on the job when the row is put off or ended keeping its request (a
 * result to read again later, a cancelled row fal had answered), for the delivery or the
 * `falbatch retry` that reads it.
 */
export interface RowJobData {
  /** Batch name. */
  b: string;
  /** Row key within the batch. */
  k: string;
  /** fal endpoint id. */
  e: string;
  /** Content fingerprint (ledger key). */
  f: string;
  /** The fal input, as sent. */
  in: Record<string, unknown>;
  /** The output field that holds the answer (a dotted path), when not `output` (--output-field). */
  o?: string;
  /** fal's queue priority for the request, when not `normal` (`--fal-priority low`). */
  qp?: 'low';
  /** fal request_id of the request in flight, if any. */
  rid?: string;
  /** When that request was submitted (ms). */
  sub?: number;
  /**
   * Result reads of a COMPLETED request that failed in a row (attempt after attempt, each a few
   * reads), while the request is kept: it is paid for, so its answer is read, not bought again.
   */
  rf?: number;
  /** When the first of those failures happened (ms): the result budget counts from here. */
  ru?: number;
  /** What the last one was (`503:runner_connection_error`, `transport`): only an unchanging failure may be the job's own. */
  rs?: string;
  /** Start of the row's current run of 429s (ms), to bound how long rate limits may hold it. */
  rl?: number;
  /** Its latest 429 (ms): a long gap since then starts a new run. */
  rla?: number;
}

/** The part of a row's job data that changes while it runs. */
export type RowRequestState = Pick<RowJobData, 'rid' | 'sub' | 'rf' | 'ru' | 'rs' | 'rl' | 'rla'>;

/** Every field of RowRequestState, to drop them all before saving a new state. */
export const REQUEST_STATE_FIELDS = ['rid', 'sub', 'rf', 'ru', 'rs', 'rl', 'rla'] as const satisfies ReadonlyArray<keyof RowRequestState>;

/** The row's job data without the state of its fal request. */
export function withoutRequestState(data: RowJobData): RowJobData {
  const row = { ...data };
  for (const field of REQUEST_STATE_FIELDS) delete row[field];
  return row;
}
