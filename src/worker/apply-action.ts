import type { Job } from 'bullmq';
import { bullmq } from '../queue/cjs-packages.js';
import type { FalbatchContext } from '../context.js';
import { BatchLostError } from '../errors.js';
import { pauseQueue } from '../queue/queue-pause.js';
import { PARK_MS } from '../queue/batch-control.js';
import { withoutRequestState, type RowJobData } from '../queue/row-job.js';
import type { ResultStore } from '../results/result-store.js';
import { formatDuration } from '../time.js';
import type { BatchGate } from './batch-gate.js';
import { endCancelledRow, type CancelledRowEnd, type CancelRowDeps } from './cancel-row.js';
import type { Verdict } from './classify-error.js';
import { jobIdOf } from './job-id.js';
import type { RowTimingFields } from './process-row.js';
import type { RedisMemoryPause } from './redis-memory-pause.js';
import { comeBackMs, type RowAction } from './row-decision.js';
import type { WorkerEventListener } from './worker-events.js';

/** What a worker did since it started. */
export interface WorkerCounts {
  ok: number;
  /** Rows answered from an identical row already paid for (no fal call). */
  fromLedger: number;
  failed: number;
  retried: number;
  rateLimited: number;
  /** Times a paid request's result could not be read and was put off to read again. */
  resultRereads: number;
  /** Rows of batches Redis lost (flushed, or restarted without persistence): nothing recorded. */
  lost: number;
  /** Rows of batches that expired (their retention ran out) or were pruned while the rows waited: dropped, nothing called. */
  gone: number;
  /** Rows of paused batches, or batches over their spend cap, parked until `falbatch resume --batch`. */
  parked: number;
  /** Rows of cancelled batches ended as `cancelled` (their fal requests, if any, cancelled at fal). */
  cancelled: number;
}

/** Retryable failure carried to BullMQ's backoff strategy with fal's Retry-After, if any. */
export class RetryableRowError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
    this.name = 'RetryableRowError';
  }
}

export interface RowActionsDeps {
  store: ResultStore;
  memory: Pick<RedisMemoryPause, 'keepTrying'>;
  gate: Pick<BatchGate, 'check'>;
  tell: WorkerEventListener;
  /** What ending a cancelled row needs (its fal request is cancelled at fal). */
  cancel: CancelRowDeps;
  /** Told after a row of another batch was given back (see own-batch.ts). */
  gaveBack?: () => Promise<void>;
}

/** Does what a row's action says (see row-decision.ts): the one place that turns it into BullMQ calls. */
export interface RowActions {
  readonly counts: WorkerCounts;
  /** Applies `action` to the job; throws what BullMQ must see (DelayedError, UnrecoverableError, ...). */
  apply(job: Job<RowJobData>, token: string | undefined, action: RowAction): Promise<void>;
  /** Records the row as failed (for good), with its fal request if it made one. */
  recordFailure(job: Job<RowJobData>, verdict: Verdict, attempts: number, timing?: RowTimingFields): Promise<void>;
}

/** Whether an action moved the row (delayed it) rather than failed: what BullMQ must see as it is. */
export function isMovedByQueue(error: unknown): boolean {
  return error instanceof bullmq().DelayedError;
}

export function createRowActions(ctx: FalbatchContext, deps: RowActionsDeps): RowActions {
  const { clock, log, config } = ctx;
  const { store, memory, gate, tell } = deps;
  const counts: WorkerCounts = { ok: 0, fromLedger: 0, failed: 0, retried: 0, rateLimited: 0, resultRereads: 0, lost: 0, gone: 0, parked: 0, cancelled: 0 };
  const lostBatches = new Set<string>();
  const goneBatches = new Set<string>();
  // A batch whose retention ran out (or that was pruned) with rows still queued: say so once, drop them.
  const noteGone = (batch: string): void => {
    if (!goneBatches.has(batch)) {
      goneBatches.add(batch);
      log.warn(`batch ${batch} is gone (its retention ran out, or it was pruned): its rows still in the queue are dropped without calling fal`, { batch });
    }
    counts.gone++;
  };
  // A batch Redis lost has nothing to record under: say so once per batch, and let its jobs go.
  const noteLost = (error: BatchLostError): void => {
    if (!lostBatches.has(error.batch)) {
      lostBatches.add(error.batch);
      log.error(error.message, { batch: error.batch });
    }
    counts.lost++;
  };
  const later = async (job: Job<RowJobData>, token: string | undefined, at: number): Promise<never> => {
    await job.moveToDelayed(at, token);
    throw new (bullmq().DelayedError)();
  };

  const recordFailure = async (job: Job<RowJobData>, verdict: Verdict, attempts: number, timing: RowTimingFields = {}): Promise<void> => {
    const { data } = job;
    const jobId = jobIdOf(job);
    // The row's fal request, for its result: on the job when this delivery made or resumed it, else
    // where every delivery saves it (a job failed outside the processor).
    const saved = data.rid === undefined ? await store.savedRequest(jobId).catch(() => undefined) : undefined;
    const request = saved?.kind === 'request' ? { rid: saved.requestId, sub: saved.submittedAt } : { rid: data.rid, sub: data.sub };
    const now = clock.now();
    // The row's end must land: with Redis out of memory, it waits for room (BullMQ fails the job once it has).
    const recorded = memory.keepTrying(() =>
      store.record(
        data.b,
        data.k,
        data.f,
        {
          status: 'failed',
          error: verdict.reason,
          error_type: verdict.errorType,
          attempts,
          endpoint: data.e,
          finished_at: now,
          ...(request.rid !== undefined ? { request_id: request.rid } : {}),
          ...(request.sub !== undefined ? { submitted_at: request.sub, latency_ms: now - request.sub } : {}),
          ...timing,
        },
        // Failures stay out of the ledger: a later batch may retry an identical row (the image may be
        // reachable by then). Within this batch the row has ended and is not called again. Identical
        // rows waiting on this one may go on now.
        { remember: false, releaseFor: jobId },
      ),
    );
    try {
      await recorded;
    } catch (error) {
      if (!(error instanceof BatchLostError)) throw error;
      noteLost(error);
      return;
    }
    counts.failed++;
    log.warn(`row failed: ${verdict.reason}`, { batch: data.b, key: data.k, attempts });
  };

  // Batch control (falbatch pause/cancel, --max-spend): rows of a paused batch, or of one over its
  // spend cap, are parked (BullMQ's delayed set, PARK_MS, no attempt spent) until `resume` promotes
  // them; rows of a cancelled batch end without calling fal.
  const park = async (job: Job<RowJobData>, token: string | undefined, why: string): Promise<never> => {
    counts.parked++;
    log.debug(`row parked: ${why}`, { batch: job.data.b, key: job.data.k });
    await job.moveToDelayed(clock.now() + PARK_MS, token);
    // A resume between the check and the park found nothing to wake: look again, now that it is parked.
    if ((await gate.check(jobIdOf(job), job.data)) === undefined) await job.promote().catch(() => undefined);
    throw new (bullmq().DelayedError)();
  };
  const endCancelled = async (job: Job<RowJobData>, token: string | undefined, reason: string, attempts: number): Promise<void> => {
    let end: CancelledRowEnd;
    try {
      end = await endCancelledRow({ jobId: jobIdOf(job), data: job.data, attempts, reason }, deps.cancel);
    } catch (error) {
      if (!(error instanceof BatchLostError)) throw error;
      noteLost(error);
      return;
    }
    // Another delivery is submitting it: come back once its request id is saved, to cancel that.
    if (end.kind === 'submitting') return later(job, token, clock.now() + comeBackMs(config.pollIntervalMs));
    if (end.kind === 'answered' || end.kind === 'ended') {
      if (end.kind === 'answered') counts.ok++;
      return;
    }
    // Ended; its job is kept (parked, not failed: the failed set keeps only the newest 10,000) for
    // `falbatch retry`, which requeues it. A paid request fal completed goes with it, to be read.
    counts.cancelled++;
    if (end.kind === 'unreadable')
      await job.updateData({ ...withoutRequestState(job.data), rid: end.requestId, ...(end.submittedAt !== undefined ? { sub: end.submittedAt } : {}) });
    return later(job, token, clock.now() + PARK_MS);
  };

  const apply = async (job: Job<RowJobData>, token: string | undefined, action: RowAction): Promise<void> => {
    switch (action.kind) {
      case 'complete':
        if (action.count) counts[action.count]++;
        return;
      case 'gone':
        return noteGone(action.batch);
      case 'lost':
        return noteLost(action.error);
      case 'come-back':
        return later(job, token, action.at);
      case 'park':
        return park(job, token, action.reason);
      case 'end-cancelled':
        return endCancelled(job, token, action.reason, action.attempts);
      case 'redis-full':
        throw action.error;
      case 'reread':
        counts.resultRereads++;
        tell({ type: 'retried', reason: 'result_reread' });
        await job.updateData({ ...withoutRequestState(job.data), ...action.state });
        log.info(`reading the result again in ${formatDuration(action.delayMs)}: ${action.reason}`, {
          batch: job.data.b,
          key: job.data.k,
          request_id: action.state.rid,
        });
        return later(job, token, action.at);
      case 'hand-back':
        // Shutdown past its grace period: hand the row back; its saved request id goes with it (on
        // the job too, for whoever looks at the queue).
        if (job.data.rid !== undefined) await job.updateData(job.data);
        await job.moveToWait(token);
        throw new (bullmq().WaitingError)();
      case 'fail':
        if (action.state) await job.updateData({ ...withoutRequestState(job.data), ...action.state });
        await recordFailure(job, action.verdict, action.attempts, action.timing);
        throw new (bullmq().UnrecoverableError)(action.message);
      case 'retry':
        counts.retried++;
        tell({ type: 'retried', reason: action.verdict.errorType });
        log.info(`retrying row: ${action.verdict.reason}`, { batch: job.data.b, key: job.data.k, attempt: action.attempt });
        throw new RetryableRowError(action.verdict.reason, action.retryAfterMs);
      case 'rate-limit':
        counts.rateLimited++;
        tell({ type: 'rate-limited' });
        await job.updateData({ ...job.data, rl: action.since, rla: action.now });
        // Every worker on the queue waits, not only this one; the row keeps its attempts.
        await ctx.queue.rateLimit(action.delayMs);
        throw new (bullmq().RateLimitError)();
      case 'pause-queue':
        log.error(`PAUSED: ${action.reason}`);
        await pauseQueue(ctx, action.reason);
        await job.moveToWait(token);
        throw new (bullmq().WaitingError)();
      case 'give-back':
        await job.moveToDelayed(clock.now(), token);
        await deps.gaveBack?.();
        throw new (bullmq().DelayedError)();
      case 'leave-locked':
        throw new (bullmq().WaitingError)();
    }
  };
  return { counts, apply, recordFailure };
}
