import type { FalbatchContext } from '../context.js';
import { OPERATOR_PAUSE } from './batch-control.js';

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
  // BullMQ's Queue.isPaused (the `paused` field of the queue's meta hash), read directly: `status`
  // then needs no BullMQ queue (see context.ts).
  const [paused, reason] = await Promise.all([ctx.redis.hexists(ctx.keys.queueMeta, 'paused'), ctx.redis.get(ctx.keys.paused)]);
  if (paused !== 1) return undefined;
  return reason === null ? { by: 'operator', reason: OPERATOR_PAUSE } : { by: 'account', reason };
}

/** Lets workers take rows again (after the key or the balance was fixed). */
export async function resumeQueue(ctx: FalbatchContext): Promise<void> {
  await ctx.redis.del(ctx.keys.paused);
  await ctx.queue.resume();
}
