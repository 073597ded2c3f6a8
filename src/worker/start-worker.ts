import { reportRedisError } from '../queue/redis-outage.js';
import type { Worker, WorkerOptions } from 'bullmq';
import { bullmq } from '../queue/cjs-packages.js';
import type { ResolvedConfig } from '../config.js';
import { signInput } from '../storage/sign-input.js';
import type { FalbatchContext } from '../context.js';
import { createFalCaller, type FalCaller } from '../fal/fal-caller.js';
import { connectionIdOf, isConnectionAlive } from '../queue/connection.js';
import { sweepExpiredBatches } from '../queue/retention.js';
import type { RowJobData } from '../queue/row-job.js';
import { markConnection, submittingMark, type ResultStore } from '../results/result-store.js';
import { SECOND } from '../time.js';
import { RetryableRowError, createRowActions, type WorkerCounts } from './apply-action.js';
import { retryDelay } from '../fal/backoff.js';
import { createBatchGate } from './batch-gate.js';
import type { CancelRowDeps } from './cancel-row.js';
import { closeOnce, closeWithinGrace } from '../close-within-grace.js';
import { AUTO_MAX, startConcurrencyControl, type ConcurrencyMode } from './concurrency-control.js';
import { createLockKeeper, type LockKeeper } from './lock-keeper.js';
import { createOwnBatchFilter } from './own-batch.js';
import type { RowProcessorDeps } from './process-row.js';
import { createRedisMemoryPause, type RedisMemoryPause } from './redis-memory-pause.js';
import { CANCELLED, createRowJobProcessor } from './row-job-processor.js';
import { startRefiller } from './refill-queue.js';
import { createStatusErrorKnowledge } from './status-errors.js';
import { observeRecords, safeListener, type WorkerEventListener } from './worker-events.js';

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

export type { WorkerCounts };

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

const SHUTDOWN = 'falbatch: worker shutting down';

/**
 * BullMQ's "Missing key for job X. moveToFinished": the job was gone when this worker came to end
 * it. Said as what happened rather than as an error: nothing is lost or paid twice by it.
 */
function goneJob(error: Error): string | undefined {
  const match = /^Missing key for job (\S+)\. (\w+)/.exec(error.message);
  if (!match) return undefined;
  return (
    `job ${match[1]} was gone when this worker came to end it (${match[2]}): another worker took it over after this one's lock lapsed ` +
    '(Redis away or the process stalled), or its batch was cancelled or pruned. Its row keeps the result recorded for it.'
  );
}

/**
 * A BullMQ worker over the batch queue: its wiring. What an attempt does is in process-row.ts,
 * what the queue then does with the row in row-decision.ts (a pure function), and the BullMQ calls
 * that carry it out (attempts, rate limits, moving jobs back) in apply-action.ts.
 */
export async function startWorker(ctx: FalbatchContext, options: StartWorkerOptions = {}): Promise<WorkerHandle> {
  const { config, clock, log, keys } = ctx;
  const tell = safeListener(options.onEvent);
  const store = options.onEvent ? observeRecords(ctx.store, tell) : ctx.store;
  const fal = options.fal ?? createFalCaller({ credentials: config.falKey, baseUrl: config.falBaseUrl, callTimeoutMs: config.callTimeoutMs, clock });
  const state: { closing: boolean; worker?: Worker<RowJobData> } = { closing: false };
  const locks = createLockKeeper(ctx, config.lockDurationMs);
  const memory = memoryPauseFor(ctx, locks, state);
  // The queue's in-flight cap: --global-concurrency N while this worker runs, else learned from
  // what fal says of the requests (--concurrency auto), else none left over from a run that is gone.
  const concurrency = await startConcurrencyControl(ctx, concurrencyModeFor(config, options), { onError: memory.note, holding: () => memory.paused });
  const deps = rowDeps(ctx, fal, store, memory);
  // Rows in flight when their batch is cancelled are aborted (the gate looks twice a second) and cancelled at fal.
  const gate = createBatchGate(ctx, (jobId, reason) => void state.worker?.cancelJob(jobId, `${CANCELLED}${reason}`));
  const ownBatch = options.onlyBatch ? createOwnBatchFilter(ctx, options.onlyBatch) : undefined;
  const actions = createRowActions(ctx, { store, memory, gate, tell, cancel: deps, ...(ownBatch ? { gaveBack: () => ownBatch.gaveBack() } : {}) });
  const processor = createRowJobProcessor(ctx, { deps, actions, gate, tracker: concurrency.tracker, locks, memory, ownBatch, tell });
  const RowWorker = bullmq().Worker;
  const worker = new RowWorker<RowJobData>(keys.queueName, processor, bullWorkerOptions(ctx, options));
  state.worker = worker;
  // Redis became full while this worker started (its concurrency control met it first).
  if (memory.paused) void worker.pause(true).catch(() => undefined);
  worker.on('error', (error) => {
    // Redis out of memory: said once when it starts and once when it ends, not for each refused write.
    if (memory.note(error)) return;
    if (memory.paused) log.debug('worker error', { error: ctx.scrub(error.message) });
    else {
      const gone = goneJob(error);
      if (gone !== undefined) log.info(gone);
      else reportRedisError(ctx.redis, log, 'worker', error, ctx.scrub);
    }
  });
  worker.on('failed', (job, error) => {
    // Safety net: a job failed outside the processor (e.g. its lock was lost) still gets a result.
    if (!job?.finishedOn || error instanceof bullmq().UnrecoverableError) return;
    void actions.recordFailure(job, { kind: 'permanent', reason: ctx.scrub(error.message), errorType: 'worker' }, job.attemptsMade).catch(() => undefined);
  });
  await worker.waitUntilReady();
  // Rows stored in batches' backlogs become jobs as this worker drains the queue.
  const refiller = startRefiller(ctx, undefined, memory.note);
  for (const event of ['completed', 'failed', 'drained'] as const) worker.on(event, refiller.nudge);
  // Batches whose retention ran out leave the batches list (also done by every enqueue and status).
  await sweepExpiredBatches(ctx).catch((error: unknown) => log.warn('could not sweep expired batches', { error: ctx.scrub((error as Error).message) }));

  const closer = closeOnce(async (graceMs) => {
    state.closing = true;
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
    counts: () => ({ ...actions.counts }),
    close: (graceMs = config.graceMs) => closer.close(graceMs),
  };
}

/**
 * Redis out of memory: this worker stops taking rows (BullMQ's loop would spin on the refused
 * moves) and its rows wait, attempts untouched, until a probe write gets through.
 */
function memoryPauseFor(ctx: FalbatchContext, locks: LockKeeper, state: { closing: boolean; worker?: Worker<RowJobData> }): RedisMemoryPause {
  const { config } = ctx;
  return createRedisMemoryPause({
    probe: () => ctx.redis.set(ctx.keys.memoryProbe, '1', 'PX', 10_000),
    clock: ctx.clock,
    log: ctx.log,
    onPause: () => void state.worker?.pause(true).catch(() => undefined),
    onResume: () => {
      if (!state.closing) void state.worker?.resume();
    },
    // The rows in flight keep their locks (BullMQ's renewal is refused): no second delivery.
    whilePaused: () => locks.keep(),
    maxIntervalMs: Math.min(5 * SECOND, Math.max(100, config.lockDurationMs / 3)),
  });
}

function concurrencyModeFor(config: ResolvedConfig, options: StartWorkerOptions): ConcurrencyMode {
  if (config.globalConcurrency !== undefined) return { kind: 'fixed', cap: config.globalConcurrency };
  return config.autoConcurrency && options.concurrency === undefined ? { kind: 'auto' } : { kind: 'local' };
}

/** What one attempt at a row needs besides the row (see process-row.ts). */
function rowDeps(ctx: FalbatchContext, fal: FalCaller, store: ResultStore, memory: RedisMemoryPause): RowProcessorDeps & CancelRowDeps {
  const rowAlive = async (jobId: string): Promise<boolean> => {
    const state = await ctx.queue.getJobState(jobId);
    return state !== 'completed' && state !== 'failed' && state !== 'unknown';
  };
  const submitter = {
    mark: async () => submittingMark(await connectionIdOf(ctx.redis)),
    alive: (mark: string) => isConnectionAlive(ctx.redis, markConnection(mark)),
  };
  const { clock, config, log, scrub } = ctx;
  // Loaded (the AWS SDK with it) only by the first row with an s3:// image.
  const signImages = (input: Record<string, unknown>) => signInput(input, { store: ctx.objects(), expiresInMs: config.presignExpiryMs, clock });
  return { fal, store, clock, config, log, scrub, rowAlive, submitter, statusErrors: createStatusErrorKnowledge(), memory, signImages };
}

function bullWorkerOptions(ctx: FalbatchContext, options: StartWorkerOptions): WorkerOptions {
  const { config } = ctx;
  return {
    connection: ctx.redis,
    prefix: ctx.keys.bullPrefix,
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
        retryDelay(
          attemptsMade,
          { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs },
          error instanceof RetryableRowError ? error.retryAfterMs : undefined,
        ),
    },
  };
}
