/**
 * A row's BullMQ job data. Short names: a million of these sit in Redis.
 * `rid`/`sub` are written (job.updateData) right after submit and before waiting, so a worker that
 * picks the job up after a crash resumes the paid request instead of submitting it again.
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
  /** fal request_id of the request in flight, if any. */
  rid?: string;
  /** When that request was submitted (ms). */
  sub?: number;
  /** Attempts whose result reads failed while fal reported the job completed without error. */
  rf?: number;
  /** Start of the row's current run of 429s (ms), to bound how long rate limits may hold it. */
  rl?: number;
  /** Its latest 429 (ms): a long gap since then starts a new run. */
  rla?: number;
}

/** The part of a row's job data that changes while it runs. */
export type RowRequestState = Pick<RowJobData, 'rid' | 'sub' | 'rf' | 'rl' | 'rla'>;
