import type { FalbatchContext } from '../context.js';
import { aggregateFromStats, figuresOf } from '../results/batch-figures.js';
import type { Price } from '../fal/price.js';

/** What the calls left to pay for are expected to cost: fal time, and money when a price is known. */
export interface CostForecast {
  /** Mean billed inference seconds per call, measured over earlier batches of this namespace; undefined before any. */
  secondsPerCall: number | undefined;
  /** How many earlier calls that mean is taken over. */
  measuredCalls: number;
  /** Expected billed inference seconds for `calls`; undefined when no call was measured yet. */
  inferenceSeconds: number | undefined;
  /** Expected cost; undefined without a price, or per-second pricing without a measured mean. */
  cost: { amount: number; currency: string } | undefined;
}

/** Earlier batches looked at for the mean inference time (the newest ones). */
const HISTORY = 50;

/**
 * Forecasts the cost of `calls` calls: fal's inference time per call as measured over the
 * namespace's recent batches (their status figures), times the price (per second), or the price
 * times the calls (per call). An estimate: fal's invoice decides.
 */
export async function forecastCost(ctx: FalbatchContext, calls: number, price: Price | undefined): Promise<CostForecast> {
  const names = await ctx.redis.zrevrange(ctx.keys.batches, 0, HISTORY - 1);
  let seconds = 0;
  let measured = 0;
  if (names.length > 0) {
    const pipeline = ctx.redis.pipeline();
    for (const name of names) pipeline.hgetall(ctx.keys.batch(name).stats);
    for (const [, raw] of (await pipeline.exec()) ?? []) {
      const figures = figuresOf(aggregateFromStats((raw ?? {}) as Record<string, string>), undefined);
      seconds += figures.inferenceSeconds;
      measured += figures.billedCalls;
    }
  }
  const secondsPerCall = measured > 0 ? seconds / measured : undefined;
  const inferenceSeconds = secondsPerCall === undefined ? undefined : secondsPerCall * calls;
  let cost: CostForecast['cost'];
  if (price?.unit === 'call') cost = { amount: price.amount * calls, currency: price.currency };
  else if (price?.unit === 'second' && inferenceSeconds !== undefined) cost = { amount: price.amount * inferenceSeconds, currency: price.currency };
  return { secondsPerCall, measuredCalls: measured, inferenceSeconds, cost };
}
