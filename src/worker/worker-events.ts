import type { ResultStore } from '../results/result-store.js';
import type { RowResult } from '../results/row-result.js';

/**
 * What a worker tells an observer as it happens (metrics implement one; see
 * metrics/worker-metrics.ts). Events are told after the fact and never awaited: an observer that
 * throws is the observer's bug, and the worker ignores it.
 *
 * - `recorded`: this worker stored a row's result, and it was the row's first (so it counts in
 *   the batch's status): answered by fal, from the ledger (`cached`), or failed;
 * - `retried`: an attempt failed and the row will be tried again; `reason` is the failure's class
 *   (`error_type`), or `result_reread` for a paid result read again later;
 * - `rate-limited`: fal answered 429 (the queue waits; no attempt spent);
 * - `row-started` / `row-settled`: a row entered or left this worker's processor (rows in flight).
 */
export type WorkerEvent =
  | { type: 'recorded'; result: RowResult }
  | { type: 'retried'; reason: string }
  | { type: 'rate-limited' }
  | { type: 'row-started' }
  | { type: 'row-settled' };

export type WorkerEventListener = (event: WorkerEvent) => void;

/** Tells a listener, swallowing what it throws (an observer must not fail a row). */
export function safeListener(listener: WorkerEventListener | undefined): WorkerEventListener {
  if (!listener) return () => undefined;
  return (event) => {
    try {
      listener(event);
    } catch {
      // An observer's failure is not the row's.
    }
  };
}

/** The store, telling `recorded` for each result it stores first (every path a row ends by goes through record). */
export function observeRecords(store: ResultStore, tell: WorkerEventListener): ResultStore {
  return {
    ...store,
    async record(batch, key, fingerprint, result, options) {
      const added = await store.record(batch, key, fingerprint, result, options);
      if (added) tell({ type: 'recorded', result });
      return added;
    },
  };
}
