import { Job } from 'bullmq';
import pLimit from 'p-limit';
import type { FalbatchContext } from '../context.js';
import { ConfigError } from '../errors.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { runTogether } from '../queue/run-together.js';
import {
  CONTROL_FIELDS,
  OPERATOR_CANCEL,
  OPERATOR_PAUSE,
  PARKED_BEYOND_MS,
  controlFrom,
  holdOf,
  readBatchControl,
  settingFields,
  spendOf,
  type BatchControl,
  type BatchHold,
  type FalQueuePriority,
  type SpendCap,
} from '../queue/batch-control.js';
import type { Price } from '../fal/price.js';

/**
 * Pauses the whole queue (every batch: they share one fal account) and says why, for account-level
 * fal errors: a bad key or an empty balance would fail every row, so rows wait instead.
 */
export async function pauseQueue(ctx: FalbatchContext, reason: string): Promise<void> {
  await ctx.redis.set(ctx.keys.paused, reason);
  await ctx.queue.pause();
}

/**
 * Pauses the whole queue for an operator (`falbatch pause`): no row of any batch is taken, rows in
 * flight finish. No reason is stored, so `run` (which lifts account-level pauses, taking a new run
 * for "the key is fixed") leaves it alone; `falbatch resume` lifts it.
 */
export async function pauseQueueByOperator(ctx: FalbatchContext): Promise<void> {
  await ctx.queue.pause();
}

/** Why the queue is paused, or undefined when it runs. */
export async function pausedReason(ctx: FalbatchContext): Promise<string | undefined> {
  return (await queuePause(ctx))?.reason;
}

/** Whether the whole queue is paused, by whom and why: `account` (fal refused it) or `operator`. */
export async function queuePause(ctx: FalbatchContext): Promise<{ by: 'account' | 'operator'; reason: string } | undefined> {
  if (!(await ctx.queue.isPaused())) return undefined;
  const reason = await ctx.redis.get(ctx.keys.paused);
  return reason === null ? { by: 'operator', reason: OPERATOR_PAUSE } : { by: 'account', reason };
}

/** Lets workers take rows again (after the key or the balance was fixed). */
export async function resumeQueue(ctx: FalbatchContext): Promise<void> {
  await ctx.redis.del(ctx.keys.paused);
  await ctx.queue.resume();
}

/** A batch's control, its spend by its cap's price (when it has a cap), and what holds it now. */
export interface BatchControlState {
  control: BatchControl;
  /** Spend so far by the cap's price; undefined without a cap. */
  spent: number | undefined;
  hold: BatchHold | undefined;
}

/** Reads a batch's control and spend in one round trip (no check that the batch exists). */
export async function batchControlState(ctx: FalbatchContext, batch: string): Promise<BatchControlState> {
  const keys = ctx.keys.batch(batch);
  const replies = await runTogether(ctx.redis, (commands) => commands.hmget(keys.meta, ...CONTROL_FIELDS).hmget(keys.stats, 'billed', 'inference_ms'));
  const control = controlFrom((replies[0]?.[1] as Array<string | null>) ?? []);
  const [billed, inferenceMs] = (replies[1]?.[1] as Array<string | null>) ?? [];
  const spent = control.cap ? spendOf(control.cap.price, billed, inferenceMs) : undefined;
  return { control, spent, hold: holdOf(batch, control, spent) };
}

async function mustExist(ctx: FalbatchContext, batch: string): Promise<void> {
  if (!(await readBatchMeta(ctx.redis, ctx.keys, batch))) throw await batchNotFound(ctx.redis, batch, ctx.keys);
}

/** Jobs promoted at once by wakeBatch. */
const PROMOTE_AT_ONCE = 32;

/**
 * Moves a batch's delayed jobs back to the wait list: `parked` ones only (held by a pause or the
 * spend cap, see PARK_MS), or `all` (retry backoffs and re-reads too: a cancelled batch's rows end
 * now rather than when their delay runs out). Jobs of rows that ended stay (see endCancelled in
 * start-worker.ts). O(delayed jobs of the namespace) to find them, one promote per job.
 */
export async function wakeBatch(ctx: FalbatchContext, batch: string, which: 'parked' | 'all'): Promise<number> {
  const ids = await delayedJobIds(ctx, batch, which);
  const results = ctx.keys.batch(batch).results;
  const limit = pLimit(PROMOTE_AT_ONCE);
  const promoted = await Promise.all(
    ids.map((id) =>
      limit(async () => {
        const job = await Job.fromId(ctx.queue, id);
        // A row that ended (cancelled: its job is kept parked for `retry`) stays parked.
        if (!job || (await ctx.redis.hexists(results, (job.data as { k?: string }).k ?? '')) === 1) return 0;
        // No longer delayed (its time came, or another resume took it): nothing to do.
        return job.promote().then(
          () => 1,
          () => 0,
        );
      }),
    ),
  );
  return promoted.reduce<number>((sum, n) => sum + n, 0);
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
  const woken = await wakeBatch(ctx, batch, 'all');
  const [jobs, ended, enqueuing] = await Promise.all([ctx.redis.hlen(keys.keys), ctx.redis.hmget(keys.counts, 'ok', 'failed'), ctx.redis.exists(keys.enqueuing)]);
  const [ok, failed] = ended.map((n) => Number(n ?? 0)) as [number, number];
  const pending = Math.max(0, jobs - ok - failed);
  return { batch, previous: control.state, pending, jobs, ok, failed, enqueuing: enqueuing === 1, woken };
}

/** The message for a spend cap without a price to measure it. */
export function spendPriceMissing(): string {
  return "--max-spend needs a price to measure spend with: pass --price 0.002/call (or 0.0005/s), or set FAL_KEY so falbatch asks fal's pricing API for the endpoint's price";
}

/** A batch's settings, as `enqueue` and `run` take them (`--priority`, `--fal-priority`, `--max-spend`). */
export interface BatchSettings {
  /** 1 (served last) to 10 (served first, the default): see DEFAULT_PRIORITY. */
  priority?: number | undefined;
  /** fal's own queue priority for the batch's requests. */
  falPriority?: FalQueuePriority | undefined;
  /** The batch's spend cap, measured with `price`. */
  maxSpend?: number | undefined;
  /** The price the cap is measured with (needed with maxSpend). */
  price?: Price | undefined;
}

/** Throws when the settings cannot work (a spend cap without a price), before anything is written. */
export function checkBatchSettings(settings: BatchSettings): void {
  if (settings.maxSpend !== undefined && settings.price === undefined) throw new ConfigError(spendPriceMissing());
}

/**
 * Stores the settings given on the batch (those not given stay as they were: an enqueue without
 * `--priority` keeps the batch's), and returns its control after.
 */
export async function applyBatchSettings(ctx: FalbatchContext, batch: string, settings: BatchSettings): Promise<BatchControl> {
  checkBatchSettings(settings);
  const fields = settingFields({
    priority: settings.priority,
    falPriority: settings.falPriority,
    cap: settings.maxSpend !== undefined && settings.price !== undefined ? { amount: settings.maxSpend, price: settings.price } : undefined,
  });
  if (Object.keys(fields).length > 0) await ctx.redis.hset(ctx.keys.batch(batch).meta, fields);
  if (settings.maxSpend === undefined) return readBatchControl(ctx.redis, ctx.keys, batch);
  // A new cap may free rows parked by the old one (a `run` again with a higher --max-spend).
  const { control, hold } = await batchControlState(ctx, batch);
  if (hold === undefined) await wakeBatch(ctx, batch, 'parked');
  return control;
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

/**
 * The ids of a batch's jobs in BullMQ's delayed set, all of them or only the parked ones (held by
 * a pause, the spend cap, or ended by a cancel and kept for `retry`). O(delayed jobs of the
 * namespace): a ZSCAN matching the batch's job ids.
 */
export async function delayedJobIds(ctx: FalbatchContext, batch: string, which: 'parked' | 'all'): Promise<string[]> {
  const delayed = ctx.queue.keys['delayed'];
  if (delayed === undefined) return [];
  const parkedFrom = (ctx.clock.now() + PARKED_BEYOND_MS) * 0x1000;
  const ids: string[] = [];
  let cursor = '0';
  do {
    // Job ids are `<batch>/<key>` (row-key.ts), and batch names hold no glob characters.
    const [next, entries] = await ctx.redis.zscan(delayed, cursor, 'MATCH', `${batch}/*`, 'COUNT', 1000);
    cursor = next;
    for (let i = 0; i + 1 < entries.length; i += 2) {
      if (which === 'all' || Number(entries[i + 1]) >= parkedFrom) ids.push(entries[i] as string);
    }
  } while (cursor !== '0');
  return ids;
}
