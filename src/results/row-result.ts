/** How a row ended. `rejected`, `skipped` and `pending` exist only in exports (never stored). */
export type RowStatus = 'ok' | 'failed';
/** `skipped`: the row needed no call (its image already had a caption file, in `--caption-mode skip`). */
export type ExportStatus = RowStatus | 'rejected' | 'skipped' | 'pending';

/** A row key's final result, as stored in Redis (the source of truth) and exported. */
export interface RowResult {
  status: RowStatus;
  output?: string;
  /** LLaVA cut the answer at max_tokens. */
  partial?: boolean;
  error?: string;
  /** fal's error_type, or falbatch's error class (e.g. `validation`, `timeout`). */
  error_type?: string;
  /** Attempts made (0 when the answer came from an earlier batch's paid call). */
  attempts: number;
  request_id?: string;
  endpoint: string;
  /** From submit to result, ms. */
  latency_ms?: number;
  /** fal's metrics.inference_time, seconds: what fal bills on per-second endpoints. */
  inference_s?: number;
  submitted_at?: number;
  /**
   * When fal started running the request, as a worker saw it happen: the first IN_PROGRESS status
   * after an IN_QUEUE one (at once with the status stream; within the poll interval with
   * `--wait poll`). Unset when the worker never saw the request queued (it was running at the first
   * look: started at once, or resumed by another worker). Queue wait = started_at − submitted_at;
   * when unset, latency_ms − inference.
   */
  started_at?: number;
  finished_at: number;
  /** Answered from the ledger: an identical row already paid for (in this or another batch). */
  cached?: boolean;
}

/** What the ledger keeps of a paid answer, to answer an identical row later without paying again. */
export interface LedgerEntry {
  /** Always `ok`: failures are not kept (entries of other statuses, from older versions, are ignored). */
  status: RowStatus;
  output?: string;
  partial?: boolean;
  request_id?: string;
  endpoint: string;
  finished_at: number;
}
