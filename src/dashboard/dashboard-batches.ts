import type { FalbatchContext } from '../context.js';
import { BatchNotFoundError } from '../errors.js';
import { resolvePrice } from '../fal/pricing.js';
import { getStatus, type BatchStatus } from '../ops/status.js';
import { readBatchMeta } from '../queue/batch-meta.js';
import type { Price } from '../fal/price.js';
import { MINUTE } from '../time.js';

/** A batch as the dashboard shows it: its status, priced at its endpoint. */
export interface DashboardBatch extends BatchStatus {
  /** The batch's default endpoint: the one its spend is priced at. */
  endpoint: string;
  /** Why there is no cost, when there is none. */
  priceNote: string | null;
}

export interface DashboardBatches {
  batches: DashboardBatch[];
  /** Batches in the namespace beyond the newest `limit`, left out. */
  more: number;
}

/** A price asked of fal is asked again after this long (`--price` never changes). */
const PRICE_TTL = 10 * MINUTE;

export type PriceLookup = (endpoint: string) => Promise<{ price: Price | undefined; note: string | undefined }>;

/** resolvePrice for the context's config, remembered per endpoint for a while (the page refreshes every few seconds). */
export function createPriceLookup(ctx: FalbatchContext): PriceLookup {
  const cache = new Map<string, { at: number; answer: ReturnType<PriceLookup> }>();
  return (endpoint) => {
    const now = ctx.clock.now();
    const hit = cache.get(endpoint);
    if (hit && now - hit.at < PRICE_TTL) return hit.answer;
    const answer = resolvePrice(ctx.config, endpoint);
    cache.set(endpoint, { at: now, answer });
    return answer;
  };
}

/**
 * The namespace's newest batches with their status (see ops/status.ts: O(1) per batch) and spend,
 * each priced at its own default endpoint (status prices every batch at --endpoint's).
 */
export async function listDashboardBatches(ctx: FalbatchContext, prices: PriceLookup, limit: number): Promise<DashboardBatches> {
  const total = await ctx.redis.zcard(ctx.keys.batches);
  const names = await ctx.redis.zrevrange(ctx.keys.batches, 0, limit - 1);
  const batches: DashboardBatch[] = [];
  for (const name of names) {
    const meta = await readBatchMeta(ctx.redis, ctx.keys, name);
    if (!meta) continue;
    const endpoint = meta.defaultEndpoint || ctx.config.endpoint;
    const { price, note } = await prices(endpoint);
    try {
      batches.push({ ...(await getStatus(ctx, name, { price })), endpoint, priceNote: price ? null : (note ?? null) });
    } catch (error) {
      // Removed between the listing and the read.
      if (!(error instanceof BatchNotFoundError)) throw error;
    }
  }
  return { batches, more: Math.max(0, total - names.length) };
}
