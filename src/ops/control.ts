import type { FalbatchContext } from '../context.js';
import { ConfigError } from '../errors.js';
import type { Price } from '../fal/price.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { OPERATOR_CANCEL, OPERATOR_PAUSE, settingFields, type BatchControl, type BatchHold, type SpendCap } from '../queue/batch-control.js';
import { batchControlState } from '../queue/batch-settings.js';
import { spendPriceMissing } from '../queue/batch-settings.js';
import { wakeBatch } from '../queue/parked-jobs.js';

// What an operator does to a batch: pause, resume, cancel (the queue-wide pause is
// queue/queue-pause.ts; a batch's settings and spend, queue/batch-settings.ts).

async function mustExist(ctx: FalbatchContext, batch: string): Promise<void> {
  if (!(await readBatchMeta(ctx.redis, ctx.keys, batch))) throw await batchNotFound(ctx.redis, batch, ctx.keys);
}

export interface PauseBatchSummary {
  batch: string;
  /** The batch's state before: `cancelled` stays cancelled (there is nothing left to pause). */
  previous: BatchControl['state'];
}

/**
 * Pauses one batch: its rows are no longer taken (a worker that takes one parks it, out of the
 * wait list, without spending an attempt); rows in flight finish; other batches go on.
 * `resumeBatch` lets it go on.
 */
export async function pauseBatch(ctx: FalbatchContext, batch: string, reason: string = OPERATOR_PAUSE): Promise<PauseBatchSummary> {
  await mustExist(ctx, batch);
  const { control } = await batchControlState(ctx, batch);
  if (control.state !== 'cancelled') {
    await ctx.redis.hset(ctx.keys.batch(batch).meta, { ctl_state: 'paused', ctl_reason: reason, ctl_at: String(ctx.clock.now()) });
  }
  return { batch, previous: control.state };
}

export interface ResumeBatchOptions {
  /** A new spend cap (`--max-spend`), or `none` to lift it. */
  maxSpend?: number | 'none' | undefined;
  /** The price to measure a new cap with; default: the one the cap was set with. */
  price?: Price | undefined;
}

export interface ResumeBatchSummary {
  batch: string;
  previous: BatchControl['state'];
  /** Parked rows put back in the wait list. */
  woken: number;
  /** The batch's cap after this. */
  cap: SpendCap | undefined;
  /** What still holds it (its spend is still over the cap): nothing was woken. */
  held: BatchHold | undefined;
}

/**
 * Lets a paused, cancelled or capped batch go on: lifts a pause or a cancel (rows already ended
 * as cancelled stay so: `retryFailed` runs them again), sets a new spend cap when asked, and puts
 * its parked rows back in the wait list, unless its spend is still over its cap.
 */
export async function resumeBatch(ctx: FalbatchContext, batch: string, options: ResumeBatchOptions = {}): Promise<ResumeBatchSummary> {
  await mustExist(ctx, batch);
  const meta = ctx.keys.batch(batch).meta;
  const before = await batchControlState(ctx, batch);
  if (options.maxSpend === 'none') await ctx.redis.hdel(meta, 'max_spend', 'spend_price');
  else if (options.maxSpend !== undefined) {
    const price = options.price ?? before.control.cap?.price;
    if (!price) throw new ConfigError(spendPriceMissing());
    await ctx.redis.hset(meta, settingFields({ cap: { amount: options.maxSpend, price } }));
  }
  await ctx.redis.hdel(meta, 'ctl_state', 'ctl_reason', 'ctl_at');
  const after = await batchControlState(ctx, batch);
  const held = after.hold;
  const woken = held ? 0 : await wakeBatch(ctx, batch, 'parked');
  return { batch, previous: before.control.state, woken, cap: after.control.cap, held };
}

export interface CancelBatchSummary {
  batch: string;
  previous: BatchControl['state'];
  /**
   * Distinct calls (row keys, as `status` counts them) not ended when it was cancelled: they end as
   * `cancelled` as workers take them (no fal call), but for those fal had already answered (kept, ok).
   */
  pending: number;
  /** The batch's distinct calls when it was cancelled, and of those, the ones that had ended ok and failed. */
  jobs: number;
  ok: number;
  failed: number;
  /** A producer was enqueuing the batch: the rows it adds are cancelled too (as are rows of any later enqueue). */
  enqueuing: boolean;
  /** Delayed or parked rows put back in the wait list, to end now. */
  woken: number;
}

/**
 * Cancels a batch: rows not yet called end as failed with error class `cancelled` as soon as a
 * worker takes them (no fal call); rows in flight are cancelled at fal (workers look every
 * half second) and end the same way, unless fal had already answered them (paid: the answer is
 * kept). Sticky: rows enqueued into the batch later are cancelled too, until `resumeBatch` or
 * `retryFailed` (which also runs the cancelled rows again).
 */
export async function cancelBatch(ctx: FalbatchContext, batch: string, reason: string = OPERATOR_CANCEL): Promise<CancelBatchSummary> {
  await mustExist(ctx, batch);
  const keys = ctx.keys.batch(batch);
  const { control } = await batchControlState(ctx, batch);
  await ctx.redis.hset(keys.meta, { ctl_state: 'cancelled', ctl_reason: reason, ctl_at: String(ctx.clock.now()) });
  // Counted as it was cancelled, before its delayed rows are woken (which loads BullMQ: workers
  // may end many rows meanwhile).
  const [jobs, ended, enqueuing] = await Promise.all([
    ctx.redis.hlen(keys.keys),
    ctx.redis.hmget(keys.counts, 'ok', 'failed'),
    ctx.redis.exists(keys.enqueuing),
  ]);
  const woken = await wakeBatch(ctx, batch, 'all');
  const [ok, failed] = ended.map((n) => Number(n ?? 0)) as [number, number];
  const pending = Math.max(0, jobs - ok - failed);
  return { batch, previous: control.state, pending, jobs, ok, failed, enqueuing: enqueuing === 1, woken };
}

/**
 * Lifts a batch's cancel (`falbatch retry` runs rows again: they must not be cancelled at once).
 * Returns whether it was cancelled.
 */
export async function liftCancel(ctx: FalbatchContext, batch: string): Promise<boolean> {
  const meta = ctx.keys.batch(batch).meta;
  if ((await ctx.redis.hget(meta, 'ctl_state')) !== 'cancelled') return false;
  await ctx.redis.hdel(meta, 'ctl_state', 'ctl_reason', 'ctl_at');
  return true;
}
