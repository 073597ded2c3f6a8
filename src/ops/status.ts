import type { FalbatchContext } from '../context.js';
import { readQueueConcurrency, type QueueConcurrency } from '../queue/queue-concurrency.js';
import { BatchNotFoundError } from '../errors.js';
import { runTogether } from '../queue/run-together.js';
import { backlogRowsIn, backlogRowsOf } from '../queue/backlog-rows.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { sweepExpiredBatches, vanishedBatchError } from '../queue/retention.js';
import { aggregateFromStats, figuresOf, rateFromStats, type CallFigures } from '../results/batch-figures.js';
import type { Price } from '../fal/price.js';
import type { FalQueuePriority } from '../queue/batch-control.js';
import { batchControlState } from '../queue/batch-settings.js';
import { queuePause } from '../queue/queue-pause.js';

/** A batch's progress, read in O(1) from its counters (no scan of rows or jobs). */
export interface BatchStatus extends CallFigures {
  batch: string;
  manifest: string;
  createdAt: number;
  updatedAt: number;
  /** How long the batch is kept after its last write (ms; null: until pruned, `--retention forever`). */
  retentionMs: number | null;
  /**
   * When its keys expire (ms since the epoch) unless it is written to again; null when kept until
   * pruned. While rows are pending it is at least 7 days away (config.unfinishedRetentionMs).
   */
  expiresAt: number | null;
  /** Manifest rows, rejected ones included. */
  rows: number;
  rejected: number;
  /** Rows never called: nothing to do (`--captions`: their caption file exists). */
  skipped: number;
  /** Distinct row keys enqueued (identical rows share one). */
  jobs: number;
  ok: number;
  failed: number;
  /** Row keys not ended yet: in flight + waiting. */
  pending: number;
  /**
   * Row keys calling fal right now (submitting, in fal's queue, running, reading the result) on a
   * live worker. A worker killed mid-row counts until its job lock expires (`--lock-duration`).
   */
  inFlight: number;
  /** Row keys not ended and not in flight: queued for a worker, or delayed (retry backoff, rate limit). */
  waiting: number;
  /**
   * Of the waiting rows, those stored in the batch's backlog, not jobs yet (the queue held
   * --max-waiting jobs): they become jobs as workers drain the queue.
   */
  backlog: number;
  /** A producer is still writing the batch. */
  enqueuing: boolean;
  /** Every row key ended and no producer is writing. */
  finished: boolean;
  /**
   * Why the batch's rows are not being called, when they are not: the whole queue paused (fal
   * refused the account, or `falbatch pause`), the batch paused (`falbatch pause --batch`:
   * "paused by an operator"), or its spend cap reached ("spend cap reached: 1.02 of 1.00 USD; …").
   */
  paused: string | undefined;
  /** Who or what holds it (see `paused`): `account` (the whole queue), `operator` (the queue or this batch), `spend-cap`. */
  pausedBy: 'account' | 'operator' | 'spend-cap' | undefined;
  /** Set when the batch was cancelled (`falbatch cancel`): why. Its rows end as failed, error class `cancelled`. */
  cancelled: string | undefined;
  /** The batch's priority: 1 (served last) to 10 (served first, the default). */
  priority: number;
  /** fal's queue priority for its requests. */
  falPriority: FalQueuePriority;
  /** Its spend cap (`--max-spend`) and its spend so far by the price the cap was set with; null without a cap. */
  spend: { amount: number; cap: number; currency: string } | null;
  /**
   * The queue's cap on requests in flight, while a worker holds one: learned from fal
   * (`--concurrency auto`: the account's slots and the target kept in flight) or fixed
   * (`--global-concurrency`), and why. Null when no worker sets one.
   */
  concurrency: QueueConcurrency | null;
  /**
   * Row keys ended (ok or failed) per minute over the last minute (a window of 50 to 60 s, or
   * since the batch was created if later).
   */
  rowsPerMinute: number;
  /** Time left at that rate for the pending row keys, ms; null when nothing is pending or nothing ended in the last minute. */
  etaMs: number | null;
}

export interface GetStatusOptions {
  /** What the batch's endpoint costs: status then estimates the spend so far. */
  price?: Price | undefined;
}

/**
 * A batch's progress and figures, in O(1) of its size: counters and the aggregates kept as rows
 * end (a hash of at most a few hundred fields), never a scan of rows or results.
 */
export async function getStatus(ctx: FalbatchContext, batch: string, options: GetStatusOptions = {}): Promise<BatchStatus> {
  const meta = await readBatchMeta(ctx.redis, ctx.keys, batch);
  if (!meta) throw await batchNotFound(ctx.redis, batch, ctx.keys);
  const keys = ctx.keys.batch(batch);
  const [[[, jobs], [, counts], [, enqueuing], [, stats], [, backlogElements], [, backlogLeft]], inFlight] = await Promise.all([
    runTogether(ctx.redis, (commands) =>
      backlogRowsIn(ctx, commands.hlen(keys.keys).hgetall(keys.counts).exists(keys.enqueuing).hgetall(keys.stats), batch),
    ).then(
      (replies) =>
        replies as [
          [unknown, number],
          [unknown, Record<string, string>],
          [unknown, number],
          [unknown, Record<string, string>],
          [unknown, number],
          [unknown, unknown],
        ],
    ),
    ctx.store.inFlight(batch),
  ]);
  // Its keys expire one by one: a meta read just before the row index went is a batch expiring (or
  // lost), not one finished with no row. Said as such, not as finished (an `export --wait` ending empty).
  if (jobs === 0 && enqueuing !== 1 && meta.rows > meta.rejected + meta.skipped) throw await batchNotFound(ctx.redis, batch, ctx.keys);
  const backlog = backlogRowsOf(backlogElements, backlogLeft);
  const ok = Number(counts['ok'] ?? 0);
  const failed = Number(counts['failed'] ?? 0);
  const pending = Math.max(0, jobs - ok - failed);
  const isEnqueuing = enqueuing === 1;
  const figures = figuresOf(aggregateFromStats(stats ?? {}), options.price);
  const rowsPerMinute = rateFromStats(stats ?? {}, ctx.clock.now(), meta.createdAt);
  const [queue, { control, spent, hold }, concurrency] = await Promise.all([queuePause(ctx), batchControlState(ctx, batch), readQueueConcurrency(ctx)]);
  const retentionMs = meta.retentionMs ?? ctx.config.retentionMs;
  const left = await ctx.redis.pttl(keys.meta);
  // A batch with nothing left to call is held back by nothing (a cap reached by its last rows, a pause after its end).
  const held =
    pending === 0
      ? undefined
      : hold?.kind === 'paused'
        ? { by: 'operator' as const, reason: hold.reason }
        : hold?.kind === 'capped'
          ? { by: 'spend-cap' as const, reason: hold.reason }
          : undefined;
  return {
    batch,
    manifest: meta.manifest,
    createdAt: meta.createdAt,
    updatedAt: meta.updatedAt,
    retentionMs: Number.isFinite(retentionMs) ? retentionMs : null,
    expiresAt: left >= 0 ? ctx.clock.now() + left : null,
    rows: meta.rows,
    rejected: meta.rejected,
    skipped: meta.skipped,
    jobs,
    ok,
    failed,
    pending,
    // Clamped: a row may end between the two reads above.
    inFlight: Math.min(inFlight, pending),
    waiting: Math.max(0, pending - inFlight),
    backlog: Math.min(backlog, Math.max(0, pending - inFlight)),
    enqueuing: isEnqueuing,
    // Nothing left to do: no producer writing, no row pending (a batch whose producer died before
    // it stored a row, too: nothing will come).
    finished: !isEnqueuing && pending === 0,
    paused: (queue ?? held)?.reason,
    pausedBy: (queue ?? held)?.by,
    cancelled: hold?.kind === 'cancelled' ? hold.reason : undefined,
    priority: control.priority,
    falPriority: control.falPriority,
    spend: control.cap && spent !== undefined ? { amount: Math.round(spent * 1e6) / 1e6, cap: control.cap.amount, currency: control.cap.price.currency } : null,
    concurrency: concurrency ?? null,
    rowsPerMinute: Math.round(rowsPerMinute * 100) / 100,
    etaMs: pending > 0 && rowsPerMinute > 0 ? Math.round((pending / rowsPerMinute) * 60_000) : null,
    latencyMs: { total: figures.latency.total ?? null, queueWait: figures.latency.queueWait ?? null, inference: figures.latency.inference ?? null },
    inferenceSeconds: Math.round(figures.inferenceSeconds * 1000) / 1000,
    billedCalls: figures.billedCalls,
    reused: figures.reused,
    partial: figures.partial,
    cost: figures.cost ?? null,
  };
}

/** Every batch in the namespace, newest first. */
export async function listBatches(ctx: FalbatchContext, options: GetStatusOptions = {}): Promise<BatchStatus[]> {
  // Batches whose retention ran out leave the list first.
  await sweepExpiredBatches(ctx);
  const names = await ctx.redis.zrevrange(ctx.keys.batches, 0, -1);
  const statuses: BatchStatus[] = [];
  for (const name of names) {
    try {
      statuses.push(await getStatus(ctx, name, options));
    } catch (error) {
      if (!(error instanceof BatchNotFoundError)) throw error;
    }
  }
  return statuses;
}

export interface WaitForBatchOptions extends GetStatusOptions {
  signal?: AbortSignal;
  /** How often to look. @default 250 ms */
  intervalMs?: number;
  onProgress?: (status: BatchStatus) => void;
  /**
   * Waits between two looks. Default: the context's clock. `falbatch run` passes one that its own
   * worker cuts short when it has no row left in flight, so the last answer is seen at once.
   */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Resolves when the batch has finished, when fal refused the account (the queue pauses itself:
 * `pausedBy` is `account`), or when the batch reached its spend cap (`spend-cap`): nothing
 * goes on until someone acts. A pause by an operator (of the queue or the batch) is waited
 * through: `falbatch resume` lets it go on. Throws BatchLostError (BatchPrunedError after `prune --force`) when the batch vanishes from
 * Redis while it is waited for.
 */
export async function waitForBatch(ctx: FalbatchContext, batch: string, options: WaitForBatchOptions = {}): Promise<BatchStatus> {
  let seen = false;
  for (;;) {
    let status: BatchStatus;
    try {
      status = await getStatus(ctx, batch, options.price ? { price: options.price } : {});
    } catch (error) {
      // It was there a moment ago: Redis lost it (flushed, or restarted without persistence), or `prune --force` dropped it.
      if (seen && error instanceof BatchNotFoundError) throw await vanishedBatchError(ctx, batch);
      throw error;
    }
    seen = true;
    options.onProgress?.(status);
    if (status.finished || status.pausedBy === 'account' || status.pausedBy === 'spend-cap') return status;
    await (options.sleep ?? ctx.clock.sleep)(options.intervalMs ?? 250, options.signal);
  }
}
