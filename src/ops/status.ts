import type { FalbatchContext } from '../context.js';
import { BatchLostError, BatchNotFoundError } from '../errors.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { pausedReason } from './control.js';

/** A batch's progress, read in O(1) from its counters (no scan of rows or jobs). */
export interface BatchStatus {
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
}

export async function getStatus(ctx: FalbatchContext, batch: string): Promise<BatchStatus> {
  const meta = await readBatchMeta(ctx.redis, ctx.keys, batch);
  if (!meta) throw await batchNotFound(ctx.redis, batch);
  const keys = ctx.keys.batch(batch);
  const [[, jobs], [, counts], [, enqueuing]] = ((await ctx.redis.multi().hlen(keys.keys).hgetall(keys.counts).exists(keys.enqueuing).exec()) ?? []) as [
    [unknown, number],
    [unknown, Record<string, string>],
    [unknown, number],
  ];
  const ok = Number(counts['ok'] ?? 0);
  const failed = Number(counts['failed'] ?? 0);
  const pending = Math.max(0, jobs - ok - failed);
  const isEnqueuing = enqueuing === 1;
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
  };
}

/** Every batch in the namespace, newest first. */
export async function listBatches(ctx: FalbatchContext): Promise<BatchStatus[]> {
  const names = await ctx.redis.zrevrange(ctx.keys.batches, 0, -1);
  const statuses: BatchStatus[] = [];
  for (const name of names) {
    try {
      statuses.push(await getStatus(ctx, name));
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
