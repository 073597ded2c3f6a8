import type { ResolvedConfig } from '../config.js';
import { readAnswer } from '../fal/endpoints.js';
import { isTransientFalError, type FalCaller, type FalStatus } from '../fal/fal-caller.js';
import type { Logger } from '../log.js';
import type { RowJobData } from '../queue/row-job.js';
import type { ResultStore } from '../results/result-store.js';
import type { RowResult } from '../results/row-result.js';
import type { Clock } from '../time.js';

/** The error class of rows ended by `falbatch cancel`: `falbatch retry --batch B --error cancelled` runs them again. */
export const CANCELLED_ERROR_TYPE = 'cancelled';

/**
 * How long a cancelled request is watched for its end after fal's cancel: a request fal had
 * finished (or finishes anyway) was paid for, and its answer is kept rather than thrown away.
 */
export const CANCEL_SETTLE_MS = 5_000;

export interface CancelRowDeps {
  fal: FalCaller;
  store: ResultStore;
  clock: Clock;
  config: Pick<ResolvedConfig, 'pollIntervalMs'>;
  log: Logger;
  scrub: (text: string) => string;
  submitter: {
    mark(): Promise<string>;
    alive(mark: string): Promise<boolean | undefined>;
  };
}

export interface CancelledRow {
  jobId: string;
  data: RowJobData;
  /** Attempts made, for the result. */
  attempts: number;
  /** Why (the batch's cancel reason). */
  reason: string;
}

/**
 * - `answered`: fal had answered the row's request before the cancel took: the answer is stored (paid);
 * - `ended`: nothing to do: the row had ended ok (a repeated delivery), or the job's content is no
 *   longer the row's (it was edited since);
 * - `cancelled`: stored as failed, error class `cancelled` (its fal request, if any, cancelled at
 *   fal), or it had already ended so;
 * - `unreadable`: fal had completed the request but its result could not be read: stored as
 *   `result_unavailable` with its request id, for `falbatch retry --error result_unavailable`;
 * - `submitting`: another live delivery is submitting the row: come back when its request id is saved.
 */
export type CancelledRowEnd =
  | { kind: 'answered' | 'ended' | 'cancelled' | 'submitting' }
  | { kind: 'unreadable'; requestId: string; submittedAt: number | undefined };

/**
 * Ends one row of a cancelled batch, in place of calling fal: cancels the fal request it made, if
 * any (PUT …/cancel), and records the row. Throws BatchLostError when Redis lost the batch.
 */
export async function endCancelledRow(row: CancelledRow, deps: CancelRowDeps): Promise<CancelledRowEnd> {
  const { data, jobId } = row;
  const { store, clock } = deps;
  const ended = await store.get(data.b, data.k);
  if (ended) return { kind: ended.status === 'ok' ? 'ended' : 'cancelled' };
  let saved = await store.savedRequest(jobId);
  if (saved?.kind === 'submitting') {
    // This process's own mark (a submit that failed as the cancel came) left nothing to cancel; a
    // dead process's neither. Another live delivery will save the request it pays for: wait for it.
    const ours = saved.holder === (await deps.submitter.mark());
    if (!ours && (await deps.submitter.alive(saved.holder)) !== false) return { kind: 'submitting' };
    await store.dropRequest(jobId, saved.holder);
    saved = undefined;
  }
  const requestId = saved?.kind === 'request' ? saved.requestId : data.rid;
  const submittedAt = saved?.kind === 'request' ? saved.submittedAt : data.sub;
  const base = { attempts: row.attempts, endpoint: data.e } as const;
  let result: RowResult;
  if (requestId === undefined) {
    result = { ...base, status: 'failed', error: `${row.reason}: not called`, error_type: CANCELLED_ERROR_TYPE, finished_at: clock.now() };
  } else {
    result = await cancelAtFal(data, requestId, submittedAt, row, deps);
  }
  const recorded = await store.record(data.b, data.k, data.f, result, { remember: result.status === 'ok', releaseFor: jobId });
  if (!recorded) {
    // Ended meanwhile by another delivery, or a stale job (the row was edited): keep what is there.
    const now = await store.get(data.b, data.k);
    return { kind: now === undefined || now.status === 'ok' ? 'ended' : 'cancelled' };
  }
  if (result.status === 'ok') return { kind: 'answered' };
  if (result.error_type === CANCELLED_ERROR_TYPE || requestId === undefined) return { kind: 'cancelled' };
  return { kind: 'unreadable', requestId, submittedAt };
}

async function cancelAtFal(data: RowJobData, requestId: string, submittedAt: number | undefined, row: CancelledRow, deps: CancelRowDeps): Promise<RowResult> {
  const { fal, clock, log } = deps;
  let said: 'requested' | 'already-completed' | undefined;
  try {
    said = await fal.cancel(data.e, requestId);
  } catch (error) {
    log.warn('could not cancel a fal request of a cancelled batch', {
      batch: data.b,
      key: data.k,
      request_id: requestId,
      error: deps.scrub((error as Error).message),
    });
  }
  // Watch it end: cancelled, or finished anyway (then it ran, and was paid for).
  const deadline = clock.now() + CANCEL_SETTLE_MS;
  let status: FalStatus | undefined;
  for (;;) {
    status = await fal.status(data.e, requestId).catch(() => undefined);
    if (status?.state === 'COMPLETED' || clock.now() >= deadline) break;
    await clock.sleep(Math.max(50, deps.config.pollIntervalMs));
  }
  const finishedAt = (): number => clock.now();
  const timing = {
    request_id: requestId,
    ...(submittedAt !== undefined ? { submitted_at: submittedAt } : {}),
    ...(status?.inferenceSeconds !== undefined ? { inference_s: status.inferenceSeconds } : {}),
  };
  if (status?.state === 'COMPLETED' && status.error === undefined) {
    try {
      const answer = readAnswer((await fal.result(data.e, requestId)).data, data.o);
      if (answer) {
        const at = finishedAt();
        return {
          status: 'ok',
          output: answer.output,
          ...(answer.partial ? { partial: true } : {}),
          attempts: Math.max(1, row.attempts),
          endpoint: data.e,
          ...timing,
          ...(submittedAt !== undefined ? { latency_ms: Math.max(0, at - submittedAt) } : {}),
          finished_at: at,
        };
      }
    } catch (error) {
      if (said === 'already-completed' && isTransientFalError(error)) {
        // fal ran it to the end before the cancel: it is paid for, and its answer exists.
        return {
          status: 'failed',
          error: deps.scrub(
            `${row.reason}, but fal had already completed request ${requestId}, whose result could not be read (${(error as Error).message}): \`falbatch retry --batch ${data.b} --error result_unavailable\` reads it again without paying`,
          ),
          error_type: 'result_unavailable',
          attempts: Math.max(1, row.attempts),
          endpoint: data.e,
          ...timing,
          finished_at: finishedAt(),
        };
      }
    }
  }
  const unsettled = status?.state !== 'COMPLETED' ? ` (fal had not confirmed the cancel within ${CANCEL_SETTLE_MS / 1000} s)` : '';
  return {
    status: 'failed',
    error: `${row.reason}: fal request ${requestId} cancelled${unsettled}`,
    error_type: CANCELLED_ERROR_TYPE,
    attempts: Math.max(1, row.attempts),
    endpoint: data.e,
    ...timing,
    finished_at: finishedAt(),
  };
}
