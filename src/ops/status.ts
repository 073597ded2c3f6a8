import type { FalbatchContext } from '../context.js';
import { BatchLostError, BatchNotFoundError } from '../errors.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { aggregateFromStats, figuresOf, rateFromStats, type CallFigures } from '../results/batch-figures.js';
import type { Price } from '../results/price.js';
import { pausedReason } from './control.js';

/** A batch's progress, read in O(1) from its counters (no scan of rows or jobs). */
export interface BatchStatus extends CallFigures {
  batch: string;
  manifest: string;
  createdAt: number;
  updatedAt: number;
  /** Manifest rows, rejected ones included. */
  rows: number;
  rejected: number;
  /** Distinct row keys enqueued (identical rows share one). */
  jobs: number;
  ok: number;
  failed: number;
  /** Row keys not ended yet. */
  pending: number;
  /** A producer is still writing the batch. */
  enqueuing: boolean;
  /** Every row key ended and no producer is writing. */
  finished: boolean;
  /** Set when the queue is paused (account-level fal error): why. */
  paused: string | undefined;
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
  if (!meta) throw await batchNotFound(ctx.redis, batch);
  const keys = ctx.keys.batch(batch);
  const [[, jobs], [, counts], [, enqueuing], [, stats]] = ((await ctx.redis.multi().hlen(keys.keys).hgetall(keys.counts).exists(keys.enqueuing).hgetall(keys.stats).exec()) ??
    []) as [[unknown, number], [unknown, Record<string, string>], [unknown, number], [unknown, Record<string, string>]];
  const ok = Number(counts['ok'] ?? 0);
  const failed = Number(counts['failed'] ?? 0);
  const pending = Math.max(0, jobs - ok - failed);
  const isEnqueuing = enqueuing === 1;
  const figures = figuresOf(aggregateFromStats(stats ?? {}), options.price);
  const rowsPerMinute = rateFromStats(stats ?? {}, ctx.clock.now(), meta.createdAt);
  return {
    batch,
    manifest: meta.manifest,
    createdAt: meta.createdAt,
    updatedAt: meta.updatedAt,
    rows: meta.rows,
    rejected: meta.rejected,
    jobs,
    ok,
    failed,
    pending,
    enqueuing: isEnqueuing,
    finished: !isEnqueuing && meta.updatedAt > 0 && pending === 0,
    paused: await pausedReason(ctx),
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

export interface WaitForBatchOptions {
  signal?: AbortSignal;
  /** How often to look. @default 250 ms */
  intervalMs?: number;
  onProgress?: (status: BatchStatus) => void;
}

/**
 * Resolves when the batch has finished, or when the queue was paused (see `paused`). Throws
 * BatchLostError when the batch vanishes from Redis while it is waited for.
 */
export async function waitForBatch(ctx: FalbatchContext, batch: string, options: WaitForBatchOptions = {}): Promise<BatchStatus> {
  let seen = false;
  for (;;) {
    let status: BatchStatus;
    try {
      status = await getStatus(ctx, batch);
    } catch (error) {
      // It was there a moment ago: Redis lost it (flushed, or restarted without persistence).
      if (seen && error instanceof BatchNotFoundError) throw new BatchLostError(batch);
      throw error;
    }
    seen = true;
    options.onProgress?.(status);
    if (status.finished || status.paused !== undefined) return status;
    await ctx.clock.sleep(options.intervalMs ?? 250, options.signal);
  }
}
