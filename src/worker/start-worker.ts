import { closeOnce, closeWithinGrace } from '../close-within-grace.js';
import { DelayedError, RateLimitError, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import type { FalbatchContext } from '../context.js';
import { createFalCaller, type FalCaller } from '../fal/fal-caller.js';
import { BatchLostError, isRedisOutOfMemory } from '../errors.js';
import { pauseQueue } from '../queue/queue-pause.js';
import { connectionIdOf, isConnectionAlive } from '../queue/connection.js';
import { markConnection, submittingMark } from '../results/result-store.js';
import { REQUEST_STATE_FIELDS, type RowJobData } from '../queue/row-job.js';
import { jobIdFor } from '../manifest/row-key.js';
import { MINUTE, SECOND, formatDuration } from '../time.js';
import { rateLimitDelay, retryDelay } from '../fal/backoff.js';
import { classifyFalError, type Verdict } from './classify-error.js';
import { AttemptError, ResultPendingError, processRow, type RowTimingFields } from './process-row.js';
import { createStatusErrorKnowledge } from './status-errors.js';
import { sweepExpiredBatches } from '../queue/retention.js';
import { createPhaseReporter } from './phase-reporter.js';
import { observeRecords, safeListener, type WorkerEventListener } from './worker-events.js';
import { PARK_MS, type BatchHold } from '../queue/batch-control.js';
import { createBatchGate } from './batch-gate.js';
import { startRefiller } from './refill-queue.js';
import { AUTO_MAX, startConcurrencyControl } from './concurrency-control.js';
import { endCancelledRow } from './cancel-row.js';
import { createOwnBatchFilter } from './own-batch.js';
import { createRedisMemoryPause } from './redis-memory-pause.js';
import { createLockKeeper } from './lock-keeper.js';

export interface StartWorkerOptions {
  /** fal requests in flight in this process. Default: config.concurrency. */
  concurrency?: number;
  /** The fal caller to use. Default: one built from the config (FAL_KEY, FAL_BASE_URL). */
  fal?: FalCaller;
  /** Told what the worker does as it happens (rows recorded, retries, 429s, rows in flight): metrics. */
  onEvent?: WorkerEventListener;
  /**
   * Serve one batch only (`falbatch run`): the batch's name, or undefined until it is known. Rows
   * of other batches are given back untouched (no attempt spent, no fal call): see own-batch.ts.
   * Default: every batch of the namespace (`falbatch work`).
   */
  onlyBatch?: () => string | undefined;
}

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

export interface WorkerHandle {
  counts(): WorkerCounts;
  /**
   * Stops taking rows, lets rows in flight finish for up to `graceMs` (default config.graceMs),
   * then hands the rest back to the queue with their fal request ids, for any worker to resume.
   */
  close(graceMs?: number): Promise<void>;
  /** Resolves when the worker has closed. */
  readonly closed: Promise<void>;
}

/** The row's job data without the state of its fal request. */
function withoutRequestState(data: RowJobData): RowJobData {
  const row = { ...data };
  for (const field of REQUEST_STATE_FIELDS) delete row[field];
  return row;
}

/** Retryable failure carried to BullMQ's backoff strategy with fal's Retry-After, if any. */
class RetryableRowError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
    this.name = 'RetryableRowError';
  }
}

const SHUTDOWN = 'falbatch: worker shutting down';

/** Starts the abort reason of a row whose batch was cancelled (`falbatch cancel`); the batch's reason follows. */
const CANCELLED = 'falbatch: batch cancelled: ';

/** The cancel reason of an aborted attempt, when it was aborted because its batch was cancelled. */
function cancelReason(signal: AbortSignal | undefined): string | undefined {
  const reason: unknown = signal?.reason;
  return typeof reason === 'string' && reason.startsWith(CANCELLED) ? reason.slice(CANCELLED.length) : undefined;
}
/** A row whose last 429 is older than this starts a new run of 429s. */
const RATE_LIMIT_RUN_GAP = 5 * MINUTE;

/**
 * A BullMQ worker over the batch queue. This file is the only one that knows BullMQ's worker
 * semantics (attempts, rate limits, moving jobs back); what an attempt does is in process-row.ts.
 */
export async function startWorker(ctx: FalbatchContext, options: StartWorkerOptions = {}): Promise<WorkerHandle> {
  const { config, clock, log, keys } = ctx;
  const tell = safeListener(options.onEvent);
  const store = options.onEvent ? observeRecords(ctx.store, tell) : ctx.store;
  const fal =
    options.fal ??
    createFalCaller({ credentials: config.falKey, baseUrl: config.falBaseUrl, callTimeoutMs: config.callTimeoutMs, clock });
  // Redis out of memory: this worker stops taking rows (BullMQ's loop would spin on the refused
  // moves) and its rows wait, attempts untouched, until a probe write gets through.
  let closing = false;
  let bullWorker: Worker<RowJobData> | undefined;
  const locks = createLockKeeper(ctx, config.lockDurationMs);
  const memory = createRedisMemoryPause({
    probe: () => ctx.redis.set(keys.memoryProbe, '1', 'PX', 10_000),
    clock,
    log,
    onPause: () => void bullWorker?.pause(true).catch(() => undefined),
    onResume: () => {
      if (!closing) void bullWorker?.resume();
    },
    // The rows in flight keep their locks (BullMQ's renewal is refused): no second delivery.
    whilePaused: () => locks.keep(),
    maxIntervalMs: Math.min(5 * SECOND, Math.max(100, config.lockDurationMs / 3)),
  });
  // The queue's in-flight cap: --global-concurrency N while this worker runs, else learned from
  // what fal says of the requests (--concurrency auto), else none left over from a run that is gone.
  const concurrency = await startConcurrencyControl(
    ctx,
    config.globalConcurrency !== undefined ? { kind: 'fixed', cap: config.globalConcurrency } : config.autoConcurrency && options.concurrency === undefined ? { kind: 'auto' } : { kind: 'local' },
    { onError: memory.note, holding: () => memory.paused },
  );
  const rowAlive = async (jobId: string): Promise<boolean> => {
    const state = await ctx.queue.getJobState(jobId);
    return state !== 'completed' && state !== 'failed' && state !== 'unknown';
  };
  const submitter = {
    mark: async () => submittingMark(await connectionIdOf(ctx.redis)),
    alive: (mark: string) => isConnectionAlive(ctx.redis, markConnection(mark)),
  };
  const deps = { fal, store, clock, config, log, scrub: ctx.scrub, rowAlive, submitter, statusErrors: createStatusErrorKnowledge(), memory };
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

  const recordFailure = async (job: Job<RowJobData>, verdict: Verdict, attempts: number, timing: RowTimingFields = {}): Promise<void> => {
    const { data } = job;
    const jobId = job.id ?? jobIdFor(data.b, data.k, data.f);
    // The row's fal request, for its result: on the job when this delivery made or resumed it, else
    // where every delivery saves it (a job failed outside the processor).
    const saved = data.rid === undefined ? await store.savedRequest(jobId).catch(() => undefined) : undefined;
    const request = saved?.kind === 'request' ? { rid: saved.requestId, sub: saved.submittedAt } : { rid: data.rid, sub: data.sub };
    const now = clock.now();
    // The row's end must land: with Redis out of memory, it waits for room (BullMQ fails the job once it has).
    const recorded = memory.keepTrying(() => store.record(
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
    ));
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
  // them; rows of a cancelled batch end without calling fal; rows in flight when their batch is
  // cancelled are aborted (the gate looks twice a second) and cancelled at fal.
  const gate = createBatchGate(ctx, (jobId, reason) => worker.cancelJob(jobId, `${CANCELLED}${reason}`));
  const park = async (job: Job<RowJobData>, token: string | undefined, why: string): Promise<never> => {
    counts.parked++;
    log.debug(`row parked: ${why}`, { batch: job.data.b, key: job.data.k });
    await job.moveToDelayed(clock.now() + PARK_MS, token);
    // A resume between the check and the park found nothing to wake: look again, now that it is parked.
    if ((await gate.check(job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f), job.data)) === undefined) await job.promote().catch(() => undefined);
    throw new DelayedError();
  };
  const endCancelled = async (job: Job<RowJobData>, token: string | undefined, reason: string, attempts: number): Promise<void> => {
    const jobId = job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f);
    let end;
    try {
      end = await endCancelledRow({ jobId, data: job.data, attempts, reason }, deps);
    } catch (error) {
      if (!(error instanceof BatchLostError)) throw error;
      noteLost(error);
      return;
    }
    if (end.kind === 'submitting') {
      // Another delivery is submitting it: come back once its request id is saved, to cancel that.
      await job.moveToDelayed(clock.now() + Math.max(4 * config.pollIntervalMs, 200), token);
      throw new DelayedError();
    }
    if (end.kind === 'answered' || end.kind === 'ended') {
      if (end.kind === 'answered') counts.ok++;
      return;
    }
    // Ended; its job is kept (parked, not failed: the failed set keeps only the newest 10,000) for
    // `falbatch retry`, which requeues it. A paid request fal completed goes with it, to be read.
    counts.cancelled++;
    if (end.kind === 'unreadable') await job.updateData({ ...withoutRequestState(job.data), rid: end.requestId, ...(end.submittedAt !== undefined ? { sub: end.submittedAt } : {}) });
    await job.moveToDelayed(clock.now() + PARK_MS, token);
    throw new DelayedError();
  };

  const ownBatch = options.onlyBatch ? createOwnBatchFilter(ctx, options.onlyBatch) : undefined;
  const attemptRow = async (job: Job<RowJobData>, token?: string, signal?: AbortSignal): Promise<void> => {
    const attempt = job.attemptsMade + 1;
    // A batch's pause, cancel and spend cap are asked in the row's begin script (gated), which
    // answers `{ held }` below: no round trip of their own.
    const unwatch = gate.watch(job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f), job.data.b);
    // The row's fal phase on its job's progress, for dashboards: throttled to a few writes per row.
    const phases = createPhaseReporter((phase) => job.updateProgress(phase), clock);
    const flightId = job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f);
    concurrency.tracker.begin(flightId, clock.now());
    let held: BatchHold | undefined;
    try {
      const outcome = await processRow(
        {
          jobId: job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f),
          data: job.data,
          attempt,
          signal,
          saveState: async (state) => {
            await job.updateData({ ...withoutRequestState(job.data), ...state });
          },
          noteState: (state) => {
            job.data = { ...job.data, ...state };
          },
          reportPhase: (phase) => {
            concurrency.tracker.phase(flightId, phase, clock.now());
            phases.report(phase);
          },
        },
        deps,
      ).finally(() => {
        phases.stop();
        concurrency.tracker.end(flightId);
      });
      if (typeof outcome === 'object') held = outcome.held;
      else if (outcome === 'ok') counts.ok++;
      else if (outcome === 'from-ledger') counts.fromLedger++;
      else if (outcome === 'batch-gone') noteGone(job.data.b);
      else if (outcome === 'twin-in-flight' || outcome === 'submit-in-flight') {
        // An identical row is being called, or this row is being submitted by a worker that lost
        // its lock: come back when its answer (or request id) is likely saved.
        await job.moveToDelayed(clock.now() + Math.max(4 * config.pollIntervalMs, 200), token);
        throw new DelayedError();
      }
    } catch (error) {
      if (error instanceof DelayedError) throw error;
      // Redis refusing writes: no verdict on the row (see processor below).
      if (isRedisOutOfMemory(error)) throw error;
      if (error instanceof BatchLostError) {
        noteLost(error);
        return;
      }
      const cancelled = cancelReason(signal);
      if (cancelled !== undefined) return endCancelled(job, token, cancelled, attempt);
      if (error instanceof ResultPendingError && !signal?.aborted) {
        const now = clock.now();
        if (now - error.since >= config.resultBudgetMs) {
          await job.updateData({ ...withoutRequestState(job.data), ...error.state });
          const reason =
            `${error.reason.replace(/ \(fal said the request completed: its result will be read again\)$/, '')}: fal said request ${error.state.rid ?? ''} completed, ` +
            `but its result could not be read for ${formatDuration(now - error.since)} (the result budget). It is paid for: ` +
            `\`falbatch retry --batch ${job.data.b} --error result_unavailable\` reads it again without paying.`;
          await recordFailure(job, { kind: 'permanent', reason: ctx.scrub(reason), errorType: 'result_unavailable' }, attempt);
          throw new UnrecoverableError(reason);
        }
        counts.resultRereads++;
        tell({ type: 'retried', reason: 'result_reread' });
        await job.updateData({ ...withoutRequestState(job.data), ...error.state });
        const delay = retryDelay(error.state.rf ?? 1, { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs });
        log.info(`reading the result again in ${formatDuration(delay)}: ${error.reason}`, { batch: job.data.b, key: job.data.k, request_id: error.state.rid });
        await job.moveToDelayed(now + delay, token);
        throw new DelayedError();
      }
      if (signal?.aborted) {
        // Shutdown past its grace period: hand the row back; its saved request id goes with it (on
        // the job too, for whoever looks at the queue).
        if (job.data.rid !== undefined) await job.updateData(job.data);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const verdict = error instanceof AttemptError ? error.verdict : classifyFalError(error, 'submit');
      const timing = error instanceof AttemptError ? error.timing : {};
      switch (verdict.kind) {
        case 'permanent':
          await recordFailure(job, verdict, attempt, timing);
          throw new UnrecoverableError(verdict.reason);
        case 'retry':
          if (attempt >= (job.opts.attempts ?? 1)) {
            await recordFailure(job, verdict, attempt, timing);
            throw new UnrecoverableError(verdict.reason);
          }
          counts.retried++;
          tell({ type: 'retried', reason: verdict.errorType });
          log.info(`retrying row: ${verdict.reason}`, { batch: job.data.b, key: job.data.k, attempt });
          throw new RetryableRowError(verdict.reason, verdict.retryAfterMs);
        case 'rate-limited': {
          const now = clock.now();
          // Only an unbroken run of 429s counts against the budget: a long gap since the last one
          // (the row waited in the queue, or the queue was paused) starts a new run.
          const { rl, rla } = job.data;
          const since = rl !== undefined && rla !== undefined && now - rla <= RATE_LIMIT_RUN_GAP ? rl : now;
          if (now - since > config.rateLimitBudgetMs) {
            await recordFailure(job, { ...verdict, reason: `${verdict.reason} (rate limited for longer than the rate-limit budget)` }, attempt);
            throw new UnrecoverableError(verdict.reason);
          }
          counts.rateLimited++;
          tell({ type: 'rate-limited' });
          await job.updateData({ ...job.data, rl: since, rla: now });
          // Every worker on the queue waits, not only this one; the row keeps its attempts.
          await ctx.queue.rateLimit(rateLimitDelay(verdict.retryAfterMs, now - since, { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs }));
          throw new RateLimitError();
        }
        case 'account':
          log.error(`PAUSED: ${verdict.reason}`);
          await pauseQueue(ctx, verdict.reason);
          await job.moveToWait(token);
          throw new WaitingError();
      }
    } finally {
      unwatch();
    }
    if (held?.kind === 'cancelled') return endCancelled(job, token, held.reason, job.attemptsMade);
    if (held) return park(job, token, held.reason);
  };

  // A Redis that refuses writes is no verdict on the row: wait for room, and begin the row again
  // (what was paid is saved, or kept in hand until it is: nothing is submitted twice); BullMQ sees
  // nothing of it, so no attempt is spent.
  const processor = async (job: Job<RowJobData>, token?: string, signal?: AbortSignal): Promise<void> => {
    if (ownBatch && !ownBatch.owns(job.data.b)) {
      // Another batch's row: back to the end of the queue as it was, for the workers that serve it.
      await job.moveToDelayed(clock.now(), token);
      await ownBatch.gaveBack();
      throw new DelayedError();
    }
    const jobId = job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f);
    locks.track(jobId, token);
    try {
      for (;;) {
        try {
          await attemptRow(job, token, signal);
          // BullMQ ends the job next, a write too: after Redis has room again.
          await memory.whenWritable(signal).catch(() => undefined);
          return;
        } catch (error) {
          if (!memory.note(error)) throw error;
          try {
            await memory.whenWritable(signal);
          } catch {
            // Shutting down while Redis is full: the row stays as it is; its lock runs out and the
            // stalled check hands it to a worker (its saved request id with it).
            throw new WaitingError();
          }
        }
      }
    } finally {
      locks.untrack(jobId);
    }
  };

  const observed = async (job: Job<RowJobData>, token?: string, signal?: AbortSignal): Promise<void> => {
    tell({ type: 'row-started' });
    try {
      await processor(job, token, signal);
    } finally {
      tell({ type: 'row-settled' });
    }
  };
  const worker = new Worker<RowJobData>(keys.queueName, options.onEvent ? observed : processor, {
    connection: ctx.redis,
    prefix: keys.bullPrefix,
    // Auto: as many as the learned cap lets through (BullMQ's global concurrency holds the rest).
    concurrency: options.concurrency ?? (config.autoConcurrency && config.globalConcurrency === undefined ? AUTO_MAX : config.concurrency),
    lockDuration: config.lockDurationMs,
    stalledInterval: config.lockDurationMs,
    // A stalled row resumes its saved fal request, so a crash costs nothing: let it survive any number.
    maxStalledCount: Number.MAX_SAFE_INTEGER,
    // BullMQ honours queue.rateLimit() (a 429 from fal) only on workers that have a limiter; this
    // one never trips by itself, it only lets every worker see the queue-wide pause.
    limiter: { max: Number.MAX_SAFE_INTEGER, duration: 1000 },
    settings: {
      backoffStrategy: (attemptsMade: number, _type?: string, error?: Error) =>
        retryDelay(attemptsMade, { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs }, error instanceof RetryableRowError ? error.retryAfterMs : undefined),
    },
  });
  bullWorker = worker;
  // Redis became full while this worker started (its concurrency control met it first).
  if (memory.paused) void worker.pause(true).catch(() => undefined);
  worker.on('error', (error) => {
    // Redis out of memory: said once when it starts and once when it ends, not for each refused write.
    if (memory.note(error)) return;
    (memory.paused ? log.debug : log.warn)('worker error', { error: ctx.scrub(error.message) });
  });
  worker.on('failed', (job, error) => {
    // Safety net: a job failed outside the processor (e.g. its lock was lost) still gets a result.
    if (!job?.finishedOn || error instanceof UnrecoverableError) return;
    void recordFailure(job, { kind: 'permanent', reason: ctx.scrub(error.message), errorType: 'worker' }, job.attemptsMade).catch(() => undefined);
  });
  await worker.waitUntilReady();
  // Rows stored in batches' backlogs become jobs as this worker drains the queue.
  const refiller = startRefiller(ctx, undefined, memory.note);
  worker.on('completed', refiller.nudge);
  worker.on('failed', refiller.nudge);
  worker.on('drained', refiller.nudge);
  // Batches whose retention ran out leave the batches list (also done by every enqueue and status).
  await sweepExpiredBatches(ctx).catch((error: unknown) => log.warn('could not sweep expired batches', { error: ctx.scrub((error as Error).message) }));

  const closer = closeOnce(async (graceMs) => {
    closing = true;
    ownBatch?.close();
    try {
      await closeWithinGrace(worker, {
        graceMs,
        clock,
        reason: SHUTDOWN,
        onExpired: () => log.warn(`grace period of ${graceMs} ms over: handing rows in flight back to the queue`),
      });
      memory.close();
      gate.close();
      await refiller.close();
      await concurrency.close();
    } finally {
      // Its connections to fal go with it (a caller passed in is its owner's to close).
      if (options.fal === undefined) fal.close?.();
    }
  });
  return {
    closed: closer.closed,
    counts: () => ({ ...counts }),
    close: (graceMs = config.graceMs) => closer.close(graceMs),
  };
}
