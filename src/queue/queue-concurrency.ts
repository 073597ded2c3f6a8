import type { FalbatchContext } from '../context.js';

/** The queue's in-flight cap as status shows it. */
export interface QueueConcurrency {
  mode: 'auto' | 'fixed';
  /** The account's slots as learned (auto). */
  slots: number | undefined;
  /** Requests in flight across every worker: BullMQ's global concurrency. */
  target: number;
  reason: string;
  /** When it was last set (ms). */
  at: number;
}

/** Reads the queue's in-flight cap, if a live worker holds one. */
export async function readQueueConcurrency(ctx: FalbatchContext): Promise<QueueConcurrency | undefined> {
  const fields = await ctx.redis.hgetall(ctx.keys.concurrency);
  if (fields['mode'] !== 'auto' && fields['mode'] !== 'fixed') return undefined;
  const slots = Number(fields['slots']);
  return {
    mode: fields['mode'],
    slots: fields['slots'] && Number.isFinite(slots) ? slots : undefined,
    target: Number(fields['target'] ?? 0),
    reason: fields['reason'] ?? '',
    at: Number(fields['at'] ?? 0),
  };
}
