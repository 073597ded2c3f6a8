import type { ResolvedConfig } from '../config.js';
import { FalHttpError, FalProtocolError, FalTimeoutError, FalTransportError } from '../errors.js';
import { ENDPOINTS } from '../fal/endpoints.js';
import type { FalCaller, FalStatus } from '../fal/fal-caller.js';
import type { Logger } from '../log.js';
import type { RowJobData } from '../queue/row-job.js';
import type { ResultStore } from '../results/result-store.js';
import type { RowResult } from '../results/row-result.js';
import type { Clock } from '../time.js';
import { classifyFalError, UnexpectedOutputError, type AttemptPhase, type Verdict } from './classify-error.js';

/** One attempt at a row, as the queue hands it over (nothing BullMQ-specific). */
export interface RowAttempt {
  data: RowJobData;
  /** 1-based attempt number. */
  attempt: number;
  signal: AbortSignal | undefined;
  /** Persists the request id (or its removal) on the job before anything else happens. */
  saveRequest(patch: { rid: string; sub: number } | { rid: undefined; sub: undefined }): Promise<void>;
}

export interface RowProcessorDeps {
  fal: FalCaller;
  store: ResultStore;
  clock: Clock;
  config: Pick<ResolvedConfig, 'waitMode' | 'pollIntervalMs' | 'waitBudgetMs' | 'startTimeoutSeconds'>;
  log: Logger;
  scrub: (text: string) => string;
}

/** An attempt failed; the verdict says what the queue should do about it. */
export class AttemptError extends Error {
  readonly verdict: Verdict;
  readonly phase: AttemptPhase;

  constructor(phase: AttemptPhase, verdict: Verdict) {
    super(verdict.reason);
    this.name = 'AttemptError';
    this.phase = phase;
    this.verdict = verdict;
  }
}

export type RowOutcome = 'ok' | 'already-ended' | 'from-ledger';

/** Result reads before a row concludes its fal job failed (when fal's status did not say so). */
const RESULT_READS = 3;

function isTransient(error: unknown): boolean {
  if (error instanceof FalTransportError || error instanceof FalTimeoutError || error instanceof FalProtocolError) return true;
  return error instanceof FalHttpError && (error.status >= 500 || error.status === 429 || error.status === 408);
}

/**
 * One attempt at one row: submit (or resume the saved request), wait, fetch the result, and store
 * it before returning, so the queue acknowledges only stored work. Errors come out as AttemptError
 * with a verdict; when the verdict says the request is gone, its id is cleared from the job first.
 */
export async function processRow(attempt: RowAttempt, deps: RowProcessorDeps): Promise<RowOutcome> {
  const { data } = attempt;
  const { fal, store, clock, config } = deps;
  if (await store.get(data.b, data.k)) return 'already-ended';
  const paid = await store.ledger(data.f);
  if (paid) {
    const { status, output, partial, error, error_type, request_id } = paid;
    await store.record(
      data.b,
      data.k,
      data.f,
      {
        status,
        attempts: 0,
        endpoint: data.e,
        finished_at: clock.now(),
        cached: true,
        ...(output !== undefined ? { output } : {}),
        ...(partial ? { partial } : {}),
        ...(error !== undefined ? { error } : {}),
        ...(error_type !== undefined ? { error_type } : {}),
        ...(request_id !== undefined ? { request_id } : {}),
      },
      false,
    );
    return 'from-ledger';
  }

  let phase: AttemptPhase = 'submit';
  let requestId = data.rid;
  let submittedAt = data.sub ?? clock.now();
  let saved = requestId !== undefined;
  try {
    if (!requestId) {
      // The submit is not aborted with the attempt: once fal may have accepted it, its id must be
      // saved, or a handed-back row would pay again. It is bounded by the call time-out instead.
      const startTimeout = config.startTimeoutSeconds === undefined ? {} : { startTimeoutSeconds: config.startTimeoutSeconds };
      ({ requestId } = await fal.submit(data.e, data.in, startTimeout));
      submittedAt = clock.now();
      await attempt.saveRequest({ rid: requestId, sub: submittedAt });
      saved = true;
      attempt.signal?.throwIfAborted();
    } else {
      deps.log.debug('resuming fal request', { batch: data.b, key: data.k, request_id: requestId });
    }

    phase = 'wait';
    const status = await waitFor(data, requestId, submittedAt, attempt, deps);

    phase = 'result';
    const body = await readResult(data.e, requestId, status, attempt.signal, deps);
    const spec = ENDPOINTS.get(data.e);
    const answer = spec?.readOutput(body);
    if (!answer) throw new UnexpectedOutputError(data.e, body);
    const finishedAt = clock.now();
    const result: RowResult = {
      status: 'ok',
      output: answer.output,
      ...(answer.partial ? { partial: true } : {}),
      attempts: attempt.attempt,
      request_id: requestId,
      endpoint: data.e,
      latency_ms: Math.max(0, finishedAt - submittedAt),
      ...(status.inferenceSeconds !== undefined ? { inference_s: status.inferenceSeconds } : {}),
      submitted_at: submittedAt,
      finished_at: finishedAt,
    };
    await store.record(data.b, data.k, data.f, result, true);
    return 'ok';
  } catch (error) {
    if (error instanceof AttemptError) throw error;
    if (attempt.signal?.aborted) throw error;
    const verdict = classifyFalError(error, phase);
    const scrubbed = { ...verdict, reason: deps.scrub(verdict.reason) } as Verdict;
    // The request is gone or failed at fal: forget it, so the next attempt submits anew.
    if (scrubbed.kind === 'retry' && scrubbed.resubmit && saved) await attempt.saveRequest({ rid: undefined, sub: undefined });
    throw new AttemptError(phase, scrubbed);
  }
}

async function waitFor(data: RowJobData, requestId: string, submittedAt: number, attempt: RowAttempt, deps: RowProcessorDeps): Promise<FalStatus> {
  const { fal, clock, config } = deps;
  // A resumed request keeps its original budget; even past it, it gets one look at its status.
  const deadline = submittedAt + config.waitBudgetMs;
  try {
    return await fal.waitForCompletion(data.e, requestId, {
      mode: config.waitMode,
      pollIntervalMs: config.pollIntervalMs,
      deadline,
      ...(attempt.signal ? { signal: attempt.signal } : {}),
    });
  } catch (error) {
    if (error instanceof FalTimeoutError && error.operation === 'status') {
      // Out of budget: cancel at fal so the abandoned request stops (and stops costing), then submit anew.
      await fal.cancel(data.e, requestId).catch((cancelError: unknown) =>
        deps.log.warn('could not cancel a timed-out fal request', { request_id: requestId, error: (cancelError as Error).message }),
      );
    }
    throw error;
  }
}

/**
 * Reads the result of a COMPLETED request. A failing read is repeated unless its answer is surely
 * the job's own: a 4xx, or the server error fal's status already reported (same error_type). A flaky
 * gateway must not make a paid answer look like a failed job: that would submit, and pay, again.
 */
async function readResult(endpoint: string, requestId: string, status: FalStatus, signal: AbortSignal | undefined, deps: RowProcessorDeps): Promise<unknown> {
  let lastError: unknown;
  for (let i = 0; i < RESULT_READS; i++) {
    try {
      return (await deps.fal.result(endpoint, requestId, signal)).data;
    } catch (error) {
      lastError = error;
      if (!isTransient(error) || isJobsOwnFailure(error, status) || i === RESULT_READS - 1) break;
      await deps.clock.sleep(500 * 2 ** i, signal);
    }
  }
  // Classified by phase: an HTTP 5xx here is the job's failure (resubmit); a transport failure or
  // time-out says nothing about the job (keep the request for the next attempt).
  throw lastError;
}

function isJobsOwnFailure(error: unknown, status: FalStatus): boolean {
  if (!(error instanceof FalHttpError) || status.error === undefined) return false;
  return status.errorType === undefined || error.errorType === status.errorType;
}
