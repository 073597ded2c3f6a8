import type { FalbatchContext } from '../context.js';

/**
 * Pauses the whole queue (every batch: they share one fal account) and says why, for account-level
 * fal errors: a bad key or an empty balance would fail every row, so rows wait instead.
 */
export async function pauseQueue(ctx: FalbatchContext, reason: string): Promise<void> {
  await ctx.redis.set(ctx.keys.paused, reason);
  await ctx.queue.pause();
}

/** Why the queue is paused, or undefined when it runs. */
export async function pausedReason(ctx: FalbatchContext): Promise<string | undefined> {
  if (!(await ctx.queue.isPaused())) return undefined;
  return (await ctx.redis.get(ctx.keys.paused)) ?? 'paused by an operator';
}

/** Lets workers take rows again (after the key or the balance was fixed). */
export async function resumeQueue(ctx: FalbatchContext): Promise<void> {
  await ctx.redis.del(ctx.keys.paused);
  await ctx.queue.resume();
}
