import type { ResolvedConfig } from '../config.js';
import { BatchLostError, FalHttpError, FalTimeoutError, isRedisOutOfMemory } from '../errors.js';
import { readAnswer } from '../fal/endpoints.js';
import { isTransientFalError, type FalCaller, type FalStatus } from '../fal/fal-caller.js';
import type { Logger } from '../log.js';
import type { RowJobData, RowRequestState } from '../queue/row-job.js';
import type { ResultStore, RowStart } from '../results/result-store.js';
import type { LedgerEntry, RowResult } from '../results/row-result.js';
import { hasS3References, redactSignedUrls } from '../storage/sign-input.js';
import { HOUR, MINUTE, type Clock } from '../time.js';
import type { StatusErrorKnowledge, StatusErrorReporting } from './status-errors.js';
import type { BatchHold } from '../queue/batch-control.js';
import { holdFor } from './batch-gate.js';
import type { RedisMemoryPause } from './redis-memory-pause.js';
import { classifyFalError, UnexpectedOutputError, type AttemptPhase, type Verdict } from './classify-error.js';

/** Where a row's fal request is, as a dashboard shows it (see RowAttempt.reportPhase). */
export type RowPhase =
  | { phase: 'submitting' }
  /** In fal's queue; `position` is fal's queue_position (0: next to run), when fal says. */
  | { phase: 'queued'; position?: number }
  | { phase: 'running' }
  /** fal said it completed: its result is being read and stored. */
  | { phase: 'fetching' };

/** One attempt at a row, as the queue hands it over (nothing BullMQ-specific). */
export interface RowAttempt {
  /** The row's job id: owns its claim and its request state. */
  jobId: string;
  data: RowJobData;
  /** 1-based attempt number. */
  attempt: number;
  signal: AbortSignal | undefined;
  /** Persists the row's request state on the job (fields left out are removed) before going on. */
  saveState(state: RowRequestState): Promise<void>;
  /**
   * Keeps the request this delivery made or resumes on the job it holds, in memory only (what
   * a failure then records): Redis has it under the row's request key, where deliveries look.
   */
  noteState?(state: Pick<RowRequestState, 'rid' | 'sub'>): void;
  /** Told each phase of the fal call as it is seen (repeats included: the implementation throttles). */
  reportPhase?(phase: RowPhase): void;
}

export interface RowProcessorDeps {
  fal: FalCaller;
  store: ResultStore;
  clock: Clock;
  config: Pick<ResolvedConfig, 'waitMode' | 'pollIntervalMs' | 'waitBudgetMs' | 'startTimeoutSeconds' | 'callTimeoutMs'>;
  log: Logger;
  scrub: (text: string) => string;
  /** Marks a row as being submitted by this process, and tells whether another marker's process lives. */
  submitter: {
    mark(): Promise<string>;
    /** False when the marking process is surely gone; undefined when Redis cannot tell. */
    alive(mark: string): Promise<boolean | undefined>;
  };
  /** What this worker has learned of whether the server reports failed jobs on their status. */
  statusErrors: StatusErrorKnowledge;
  /** Whether the row (job id) holding an input's claim can still finish: queued, waiting, running or delayed. */
  rowAlive(owner: string): Promise<boolean>;
  /**
   * Waits out a Redis out of memory for the writes that must land (a paid request id, an answer):
   * they are kept in memory meanwhile. Without it, such a write fails the attempt.
   */
  memory?: Pick<RedisMemoryPause, 'keepTrying'>;
  /**
   * Signs the input's `s3://` images into presigned URLs just before a submit (storage/sign-input.ts).
   * Without it, an input holding one is submitted as it is.
   */
  signImages?: (input: Record<string, unknown>) => Promise<Record<string, unknown>>;
}

/**
 * fal could not download one of the row's images and the row has s3:// images: their URLs were
 * signed at submit and expired while the request waited in fal's queue (or the store refused them
 * for a moment). fal bills no download that failed, so submitting again, with URLs signed afresh,
 * pays once. An image fal cannot download for another reason fails the same way on each attempt,
 * until the attempts run out.
 */
function isExpiredSignedImage(error: unknown, data: RowJobData): boolean {
  if (!(error instanceof FalHttpError) || error.status !== 422 || !hasS3References(data.in)) return false;
  const detail = (error.body as { detail?: unknown } | undefined)?.detail;
  return Array.isArray(detail) && detail.some((d) => (d as { type?: unknown } | null)?.type === 'file_download_error');
}

/** An attempt failed; the verdict says what the queue should do about it. */
export class AttemptError extends Error {
  readonly verdict: Verdict;
  readonly phase: AttemptPhase;
  /** What fal said of the request's run, when it got that far (a model error is billed): for the row's result. */
  readonly timing: RowTimingFields;

  constructor(phase: AttemptPhase, verdict: Verdict, timing: RowTimingFields = {}) {
    super(verdict.reason);
    this.name = 'AttemptError';
    this.phase = phase;
    this.verdict = verdict;
    this.timing = timing;
  }
}

/** The timing fields of a RowResult that fal's statuses tell. */
export type RowTimingFields = Pick<RowResult, 'started_at' | 'inference_s'>;

function timingFields(startedAt: number | undefined, status: FalStatus | undefined): RowTimingFields {
  return {
    ...(startedAt !== undefined ? { started_at: startedAt } : {}),
    ...(status?.inferenceSeconds !== undefined ? { inference_s: status.inferenceSeconds } : {}),
  };
}

/**
 * - `ok`: answered by fal and stored; `from-ledger`: an identical row was already paid for;
 * - `already-ended`: the row had a final result (a duplicate delivery);
 * - `twin-in-flight`: an identical row is being called right now: wait for its answer, don't pay twice;
 * - `submit-in-flight`: another delivery of this row is submitting it: wait for the request it saves;
 * - `stale`: the row was edited and enqueued again since this job was made: a newer job answers it;
 * - `batch-gone`: the row's batch expired (its retention ran out) or was pruned: nothing to do;
 * - `{ held }`: its batch is paused, cancelled or over its spend cap (see holdFor): nothing was done.
 */
export type RowOutcome = 'ok' | 'already-ended' | 'from-ledger' | 'twin-in-flight' | 'submit-in-flight' | 'stale' | 'batch-gone' | { held: BatchHold };

/** A claim outlives its row only this long if nobody releases it (crashes are handled by liveness). */
const CLAIM_TTL = 24 * HOUR;

/** A saved request outlives its row only this long if nobody ends the row (fal keeps results 30 days). */
const SAVED_REQUEST_TTL = 30 * 24 * HOUR;

/**
 * How long a submitting mark lasts if nobody lifts it: only matters where Redis cannot say whether
 * the marking process lives (CLIENT LIST disabled). Longer than any submit call.
 */
function submitMarkTtl(config: Pick<ResolvedConfig, 'callTimeoutMs'>): number {
  return Math.max(2 * config.callTimeoutMs, MINUTE);
}

/** Result reads, within one attempt, before a read failure is handed to the queue. */
const RESULT_READS = 3;
/**
 * Result attempts (each RESULT_READS reads, spread over growing delays) failing the same way in a
 * row, after a COMPLETED status without error, before the job is taken for failed and submitted
 * again; by what the worker knows of the server (see status-errors.ts):
 * - `reported`: never. The server reports failed jobs on their status (fal does): this one ran
 *   and was billed, and its answer exists;
 * - `not-reported`: 6 attempts (18 reads): a gateway failing 70 % of reads at random does that once
 *   in 600 rows; a job that really failed fails every read;
 * - `unknown` (no failed job seen yet): 8 attempts (24 reads, minutes apart with the default
 *   backoff), once in 5,000 rows for the same gateway.
 */
export const RESULT_FAILURES_FOR_JOB_FAILURE: Readonly<Record<StatusErrorReporting, number>> = {
  reported: Number.POSITIVE_INFINITY,
  'not-reported': 6,
  unknown: 8,
};

/**
 * A COMPLETED request whose result could not be read: it is paid for, so the row keeps it and
 * reads it again later (the queue delays the row; no attempt is spent), until the result budget
 * runs out. `state` is what to save on the row first.
 */
export class ResultPendingError extends Error {
  constructor(
    readonly reason: string,
    readonly state: RowRequestState,
    /** When the first failed read of this run happened: the result budget counts from it. */
    readonly since: number,
  ) {
    super(reason);
    this.name = 'ResultPendingError';
  }
}

/**
 * One attempt at one row: submit (or resume the saved request), wait, fetch the result, and store
 * it before returning, so the queue acknowledges only stored work. Errors come out as AttemptError
 * with a verdict; when the verdict says the request is gone, its id is cleared from the job first.
 */
export async function processRow(attempt: RowAttempt, deps: RowProcessorDeps): Promise<RowOutcome> {
  const { data } = attempt;
  const { fal, store, clock, config } = deps;
  const mustLand = <T>(write: () => Promise<T>): Promise<T> => (deps.memory ? deps.memory.keepTrying(write, attempt.signal) : write());
  // One paid call per distinct input at a time, across rows and batches: the others wait for its
  // answer, for as long as the row holding the claim can still give one (the TTL is a backstop).
  const owner = attempt.jobId;
  const mark = await deps.submitter.mark();
  const begin = (gated: boolean): Promise<RowStart> =>
    store.begin(data.b, data.k, data.f, {
      owner,
      claimTtlMs: CLAIM_TTL,
      resume: data.rid !== undefined,
      mark,
      markTtlMs: submitMarkTtl(config),
      now: clock.now(),
      gated,
    });
  // Gated: a batch paused, cancelled or under a spend cap answers what holds it, in the same round
  // trip; a row it does not hold begins ungated.
  let start = await begin(true);
  if (start.kind === 'control') {
    const hold = holdFor(data.b, data, start);
    if (hold) return { held: hold };
    start = await begin(false);
  }
  if (start.kind === 'held') {
    if ((await deps.rowAlive(start.owner)) || !(await store.takeOver(data.f, start.owner, owner, CLAIM_TTL))) return 'twin-in-flight';
    start = await begin(false);
  }
  if (start.kind === 'ended') return 'already-ended';
  if (start.kind === 'stale') return 'stale';
  if (start.kind === 'lost') throw new BatchLostError(data.b);
  if (start.kind === 'gone') return 'batch-gone';
  if (start.kind === 'ledger') {
    await recordFromLedger(data, start.entry, deps);
    return 'from-ledger';
  }
  if (start.kind === 'held') return 'twin-in-flight';
  if (start.kind === 'control') throw new Error(`an ungated begin of row ${data.k} answered with its batch's control`);
  if (start.kind === 'submitting') {
    // Another delivery of this row is submitting it: a worker that lost its lock (a stalled event
    // loop) but lives on, and will save the request it pays for. Wait for it, unless its
    // connection is gone: then its process died, and this delivery takes over.
    const alive = await deps.submitter.alive(start.holder);
    if (alive !== false || !(await store.takeOverSubmit(owner, start.holder, mark, submitMarkTtl(config)))) {
      await store.leave(data.b, owner);
      return 'submit-in-flight';
    }
    deps.log.info('taking over a row whose submitting worker is gone', { batch: data.b, key: data.k });
  }

  let phase: AttemptPhase = 'submit';
  let requestId = start.kind === 'resume' ? start.requestId : data.rid;
  let submittedAt = start.kind === 'resume' ? start.submittedAt : (data.sub ?? clock.now());
  let status: FalStatus | undefined;
  // When fal started the request, if this delivery sees it happen: IN_QUEUE, then IN_PROGRESS (see
  // RowResult.started_at). A request already running at the first look started at some unknown
  // point before it.
  const began: { queued: boolean; at: number | undefined } = { queued: false, at: undefined };
  try {
    if (!requestId) {
      // The submit is not aborted with the attempt: once fal may have accepted it, its id must be
      // saved, or a handed-back row would pay again. It is bounded by the call time-out instead.
      const submitOptions = {
        ...(config.startTimeoutSeconds === undefined ? {} : { startTimeoutSeconds: config.startTimeoutSeconds }),
        ...(data.qp !== undefined ? { priority: data.qp } : {}),
      };
      attempt.reportPhase?.({ phase: 'submitting' });
      // s3:// images become URLs signed now, valid for --presign-expiry from this submit.
      const input = deps.signImages && hasS3References(data.in) ? await deps.signImages(data.in) : data.in;
      ({ requestId } = await fal.submit(data.e, input, submitOptions));
      submittedAt = clock.now();
      // Saved, before waiting, where every delivery of the row looks first (its begin script: this
      // also lifts the submitting mark). The job's data is not written too: a second copy, for
      // one more script per row, that no delivery needs while this one lives. A Redis out of
      // memory is waited out with the id in hand (the submitting mark keeps other deliveries off).
      attempt.noteState?.({ rid: requestId, sub: submittedAt });
      const paid = { requestId, submittedAt };
      await mustLand(() => store.saveRequest(owner, paid.requestId, paid.submittedAt, SAVED_REQUEST_TTL));
      attempt.signal?.throwIfAborted();
    } else {
      if (start.kind === 'resume') attempt.noteState?.({ rid: requestId, sub: submittedAt });
      deps.log.debug('resuming fal request', { batch: data.b, key: data.k, request_id: requestId });
    }

    phase = 'wait';
    status = await waitFor(data, requestId, submittedAt, attempt, deps, (seen) => {
      if (seen.state === 'IN_QUEUE') began.queued = true;
      else if (seen.state === 'IN_PROGRESS' && began.queued && began.at === undefined) began.at = clock.now();
      if (seen.state === 'IN_QUEUE')
        attempt.reportPhase?.(seen.queuePosition === undefined ? { phase: 'queued' } : { phase: 'queued', position: seen.queuePosition });
      else if (seen.state === 'IN_PROGRESS') attempt.reportPhase?.({ phase: 'running' });
    });

    if (status.error !== undefined) deps.statusErrors.sawStatusError();
    phase = 'result';
    attempt.reportPhase?.({ phase: 'fetching' });
    const body = await readResult(data.e, requestId, status, attempt.signal, deps);
    const answer = readAnswer(body, data.o);
    if (!answer) throw new UnexpectedOutputError(data.e, body, data.o);
    const finishedAt = clock.now();
    const result: RowResult = {
      status: 'ok',
      output: answer.output,
      ...(answer.partial ? { partial: true } : {}),
      attempts: attempt.attempt,
      request_id: requestId,
      endpoint: data.e,
      latency_ms: Math.max(0, finishedAt - submittedAt),
      ...timingFields(began.at, status),
      submitted_at: submittedAt,
      finished_at: finishedAt,
    };
    // A paid answer: kept in hand while Redis has no room for it.
    await mustLand(() => store.record(data.b, data.k, data.f, result, { remember: true, releaseFor: owner }));
    return 'ok';
  } catch (error) {
    // Whatever comes next (retry, put off, handed back, failed), this row stops calling fal now.
    const leave = (): Promise<void> => store.leave(data.b, owner).catch(() => undefined);
    // Redis refusing writes is no verdict on the row: the caller waits it out and begins again.
    if (error instanceof BatchLostError || attempt.signal?.aborted || isRedisOutOfMemory(error)) {
      await leave();
      throw error;
    }
    let verdict = classifyFalError(error, phase);
    if (verdict.kind === 'permanent' && isExpiredSignedImage(error, data)) {
      verdict = {
        kind: 'retry',
        resubmit: true,
        retryAfterMs: undefined,
        reason: `${verdict.reason} (the image URLs are signed again for the next attempt; if fal's queue wait outlasts them, raise --presign-expiry)`,
        errorType: 'image_url_expired',
      };
    }
    verdict = { ...verdict, reason: deps.scrub(redactSignedUrls(verdict.reason)) } as Verdict;
    const saved = requestId !== undefined && phase !== 'submit';
    if (phase === 'result' && status !== undefined && requestId !== undefined && status.error === undefined) {
      if ((isTransientFalError(error) && verdict.kind !== 'rate-limited') || (error instanceof FalHttpError && error.status === 404)) {
        // fal said the job completed without error: it ran, was billed, and its answer exists. A
        // failing read is the gateway's problem: read again later, never pay again. Only for a
        // server known not to report failures on the status may an unchanging failure be the job's.
        const signature = failureSignature(error);
        const failures = data.rs === signature ? (data.rf ?? 0) + 1 : 1;
        const since = data.ru ?? clock.now();
        const mayBeJobs = failures >= RESULT_FAILURES_FOR_JOB_FAILURE[deps.statusErrors.current];
        if (!mayBeJobs) {
          await leave();
          throw new ResultPendingError(
            `${verdict.reason} (fal said the request completed: its result will be read again)`,
            { rid: requestId, sub: submittedAt, rf: failures, ru: since, rs: signature },
            since,
          );
        }
      } else if (error instanceof FalHttpError && error.status >= 400 && error.status < 500 && verdict.kind === 'permanent') {
        // The job's own failure, which the COMPLETED status did not mention: this server does not report them.
        deps.statusErrors.sawUnreportedFailure();
      }
    }
    const resubmit = verdict.kind === 'retry' && verdict.resubmit;
    // One script: the row leaves the active rows; a request gone or failed at fal is forgotten, so
    // the next attempt submits anew (a row that fails for good keeps it: its request id goes into
    // the result); a submit that failed leaves nothing to wait for (other deliveries may submit);
    // the claim goes with the request: kept while this row will resume it, released otherwise.
    const dropRequest = saved && resubmit ? 'any' : phase === 'submit' ? { mark } : undefined;
    const keepsRequest = saved && verdict.kind !== 'permanent' && !resubmit;
    await store.abandon(data.b, owner, data.f, { ...(dropRequest ? { dropRequest } : {}), release: !keepsRequest });
    if (saved && resubmit) await attempt.saveState({});
    throw new AttemptError(phase, verdict, timingFields(began.at, status));
  }
}

/** Answers the row with an identical row's paid answer. */
async function recordFromLedger(data: RowJobData, paid: LedgerEntry, deps: RowProcessorDeps): Promise<void> {
  const { output, partial, request_id } = paid;
  await deps.store.record(
    data.b,
    data.k,
    data.f,
    {
      status: 'ok',
      attempts: 0,
      endpoint: data.e,
      finished_at: deps.clock.now(),
      cached: true,
      ...(output !== undefined ? { output } : {}),
      ...(partial ? { partial } : {}),
      ...(request_id !== undefined ? { request_id } : {}),
    },
    { remember: false },
  );
}

async function waitFor(
  data: RowJobData,
  requestId: string,
  submittedAt: number,
  attempt: RowAttempt,
  deps: RowProcessorDeps,
  onStatus: (status: FalStatus) => void,
): Promise<FalStatus> {
  const { fal, config } = deps;
  // A resumed request keeps its original budget; even past it, it gets one look at its status.
  const deadline = submittedAt + config.waitBudgetMs;
  try {
    return await fal.waitForCompletion(data.e, requestId, {
      mode: config.waitMode,
      pollIntervalMs: config.pollIntervalMs,
      deadline,
      onStatus,
      ...(attempt.signal ? { signal: attempt.signal } : {}),
    });
  } catch (error) {
    if (!(error instanceof FalTimeoutError && error.operation === 'status')) throw error;
    // Out of budget: cancel at fal so the abandoned request stops (and stops costing), then submit anew.
    await fal.cancel(data.e, requestId).catch((cancelError: unknown) => {
      deps.log.warn('could not cancel a timed-out fal request', { request_id: requestId, error: (cancelError as Error).message });
    });
    // Whatever the cancel answered (servers differ), look once more: a request that finished in the
    // meantime was paid for, and is read rather than submitted again.
    const last = await fal.status(data.e, requestId, attempt.signal).catch(() => undefined);
    if (last?.state === 'COMPLETED') return last;
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
      if (!isTransientFalError(error) || isJobsOwnFailure(error, status) || i === RESULT_READS - 1) break;
      await deps.clock.sleep(deps.config.pollIntervalMs * 2 ** i, signal);
    }
  }
  throw lastError;
}

/** A result read's failure, for telling an unchanging one (the job's) from a flaky gateway's. */
function failureSignature(error: unknown): string {
  if (error instanceof FalHttpError) return `${error.status}:${error.errorType ?? ''}`;
  return error instanceof Error ? error.name : 'unknown';
}

function isJobsOwnFailure(error: unknown, status: FalStatus): boolean {
  if (!(error instanceof FalHttpError) || status.error === undefined) return false;
  return status.errorType === undefined || error.errorType === status.errorType;
}
