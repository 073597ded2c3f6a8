import type { ChainableCommander } from 'ioredis';
import { onHomeNode, type RedisClient } from './connection.js';
import { BatchLostError, BatchNotFoundError, ConfigError } from '../errors.js';
import { SECOND } from '../time.js';
import { retentionArg, retentionFromMeta } from './retention-duration.js';
import type { KeyLayout } from './keys.js';
import { scriptsIn, scriptsOn } from './redis-scripts.js';

// The duration format, apart so flag parsing does not load the Redis client.
export { FOREVER, formatRetention, parseRetention, retentionArg, retentionFromMeta } from './retention-duration.js';

/**
 * Retention: how long a batch's keys (its data keys, BatchKeys.retained) and the answers it paid
 * for live after the batch was last written to. Redis 7.0 cannot expire hash fields, so:
 *
 * - a batch's data keys share one PX, set again by every write to the batch (enqueue, a row
 *   beginning or ending, retry), in the same script as the write: an active batch never expires
 *   mid-run, and a batch with rows still to end keeps at least `unfinishedRetentionMs` (7 days);
 * - the batch's expiry time is kept in the `expiries` zset, renewed with the keys; a sweep (at
 *   enqueue, status, worker start, `prune --expired`) takes names whose time has passed off the
 *   `batches` list, so the list never names a batch whose keys are gone for long;
 * - each paid answer is a string key (`ledger:<fingerprint>`) with the retention of the batch that
 *   paid for it, extended (never shortened) by each batch that reuses it.
 *
 * A batch whose meta is gone but whose row job still exists expired (or was pruned): its rows are
 * dropped without calling fal. One whose job is gone too was lost by Redis (flushed, restarted
 * without persistence): BATCH_LOST.
 */

/** The lease value `prune --force` leaves where it stopped a producer or rows in flight. */
export const PRUNED_LEASE = 'pruned';

/** How long that mark lasts: longer than a producer's lease renewal, so the producer reads it. */
export const PRUNED_MARK_MS = 60 * SECOND;

/** What scripts need of the namespace's retention settings. */
export interface RetentionSettings {
  /** config.retentionMs: for batches that say nothing (from before retention), and answers of batches that are gone. */
  retentionMs: number;
  /** config.unfinishedRetentionMs. */
  unfinishedRetentionMs: number;
}

/**
 * The keys a script that writes to a batch passes last (its "tail"), so the retention functions
 * (redis-scripts/includes/retention.lua) find them: batches, expiries, the producer lease, then the
 * batch's data keys, meta, row keys and counts first. Every data key from `meta` on gets the batch's PX.
 */
export function retentionTail(keys: KeyLayout, batch: string): string[] {
  const b = keys.batch(batch);
  const lead = [b.meta, b.keys, b.counts];
  return [keys.batches, keys.expiries, b.enqueuing, ...lead, ...b.retained.filter((key) => !lead.includes(key))];
}

/** What the retention functions below need of a context. */
export interface RetentionContext {
  readonly redis: RedisClient;
  readonly keys: KeyLayout;
  readonly config: RetentionSettings;
}

/**
 * Creates the batch (or reopens it) for a producer, with its retention: `retentionMs` when given
 * (it replaces the batch's own), else the one it has, else config.retentionMs. Returns the
 * retention the batch now has.
 */
export async function openBatch(ctx: RetentionContext, batch: string, options: { createdAt: number; retentionMs?: number | undefined }): Promise<number> {
  const tail = retentionTail(ctx.keys, batch);
  const stored = await scriptsOn(ctx.redis).falbatchOpenBatch(
    tail.length,
    ...tail,
    batch,
    options.createdAt,
    options.retentionMs === undefined ? '' : retentionArg(options.retentionMs),
    retentionArg(ctx.config.retentionMs),
    ctx.config.unfinishedRetentionMs,
  );
  return retentionFromMeta(stored) ?? ctx.config.retentionMs;
}

/**
 * Undoes openBatch for a batch that never stored a row (its first enqueue failed before storing
 * one): a batch exists only once a row is stored. The caller holds the batch's producer lease.
 */
export async function dropUnstartedBatch(ctx: RetentionContext, batch: string): Promise<void> {
  await ctx.redis
    .multi()
    .zrem(ctx.keys.batches, batch)
    .zrem(ctx.keys.expiries, batch)
    .unlink(...ctx.keys.batch(batch).retained)
    .exec();
}

/** Whether a touch holds the batch open (the floor applies): see redis-scripts/touch-batch.lua. */
export type TouchMode = 'open' | 'auto' | 'rows';

/**
 * Renews the batch's keys after writes outside the result store's scripts. False when the batch is
 * gone (its meta expired, or was pruned or lost): what was written under its keys is removed.
 */
export async function touchBatch(ctx: RetentionContext, batch: string, mode: TouchMode): Promise<boolean> {
  const tail = retentionTail(ctx.keys, batch);
  return (await scriptsOn(ctx.redis).falbatchTouchBatch(tail.length, ...tail, ...touchArgs(ctx, batch, mode))) === 1;
}

/** The same, queued on a MULTI or pipeline (made after scriptsOn(redis): it takes the scripts from its client). */
export function touchBatchIn(ctx: RetentionContext, pipeline: ChainableCommander, batch: string, mode: TouchMode): void {
  const tail = retentionTail(ctx.keys, batch);
  scriptsIn(pipeline).falbatchTouchBatch(tail.length, ...tail, ...touchArgs(ctx, batch, mode));
}

function touchArgs(ctx: RetentionContext, batch: string, mode: TouchMode): Array<string | number> {
  return [batch, retentionArg(ctx.config.retentionMs), ctx.config.unfinishedRetentionMs, mode];
}

/** Redis's clock, in ms: expiries are Redis's (on a Cluster, the namespace's master's), whatever the clocks of the machines. */
export async function redisNow(redis: RedisClient): Promise<number> {
  const [seconds, micros] = (await onHomeNode(redis, (node) => node.time())) as unknown as Array<string | number>;
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

export interface SweepSummary {
  /** Batches whose retention ran out (or that were pruned or lost), taken off the list. */
  expired: string[];
  /** Batches from before retention, given the default retention from now. */
  migrated: string[];
}

/** Names looked at per sweep: a sweep is bounded, the next one goes on. */
const SWEEP_LIMIT = 1000;

/**
 * Takes batches whose keys expired off the batches list (and off `expiries`), and gives batches
 * from before retention (listed, but with no expiry) the default retention from now. O(names
 * swept): cheap enough for every enqueue, status and worker start.
 */
export async function sweepExpiredBatches(ctx: RetentionContext, limit = SWEEP_LIMIT): Promise<SweepSummary> {
  const { redis, keys } = ctx;
  const now = await redisNow(redis);
  const names = new Set(await redis.zrangebyscore(keys.expiries, '-inf', String(now), 'LIMIT', 0, limit));
  // Listed but without an expiry: from before retention (a batch gets both in one script since).
  const [listed, expiring] = await Promise.all([redis.zcard(keys.batches), redis.zcard(keys.expiries)]);
  if (listed > expiring) {
    for (let start = 0; names.size < limit; start += SWEEP_LIMIT) {
      const page = await redis.zrange(keys.batches, String(start), String(start + SWEEP_LIMIT - 1));
      if (page.length === 0) break;
      const scores = await redis.zmscore(keys.expiries, ...page);
      page.forEach((name, i) => {
        if (scores[i] === null || scores[i] === undefined) names.add(name);
      });
    }
  }
  const summary: SweepSummary = { expired: [], migrated: [] };
  const scripts = scriptsOn(redis);
  for (const name of names) {
    const tail = retentionTail(keys, name);
    const outcome = await scripts.falbatchSweepBatch(tail.length, ...tail, name, retentionArg(ctx.config.retentionMs), ctx.config.unfinishedRetentionMs);
    if (outcome === 'expired') summary.expired.push(name);
    else if (outcome === 'migrated') summary.migrated.push(name);
  }
  return summary;
}

/** Moves every answer of the pre-retention ledger hash to its own key, with the default retention. Returns how many. */
export async function migrateLegacyLedger(ctx: RetentionContext): Promise<number> {
  const { redis, keys } = ctx;
  const scripts = scriptsOn(redis);
  let moved = 0;
  let cursor = '0';
  do {
    const [next, entries] = await redis.hscan(keys.legacyLedger, cursor, 'COUNT', 500);
    cursor = next;
    const fingerprints = entries.filter((_, i) => i % 2 === 0);
    if (fingerprints.length > 0) {
      moved += await scripts.falbatchMigrateLedger(
        1 + fingerprints.length,
        keys.legacyLedger,
        ...fingerprints.map((fingerprint) => keys.ledger(fingerprint)),
        retentionArg(ctx.config.retentionMs),
        ...fingerprints,
      );
    }
  } while (cursor !== '0');
  return moved;
}

/** A producer or a waiter found the batch gone mid-run: pruned on purpose (`--force`), or lost by Redis. */
export class BatchPrunedError extends ConfigError {
  constructor(readonly batch: string) {
    super(
      `Batch ${batch} was dropped by \`falbatch prune --force\` while it ran: stopped. Answers already paid for stay in the ledger; ` +
        'enqueue (or run) the manifest again to start the batch afresh without paying for them again.',
    );
  }
}

/**
 * The error for a batch whose meta vanished under a producer or a waiter: pruned (`--force`), expired
 * (its expiry, still on the expiries zset, has passed: BATCH_NOT_FOUND saying so), or lost by Redis.
 */
export async function vanishedBatchError(
  ctx: Pick<RetentionContext, 'redis' | 'keys'>,
  batch: string,
): Promise<BatchPrunedError | BatchNotFoundError | BatchLostError> {
  const [lease, expiry, now] = await Promise.all([
    ctx.redis.get(ctx.keys.batch(batch).enqueuing).catch(() => null),
    ctx.redis.zscore(ctx.keys.expiries, batch).catch(() => null),
    redisNow(ctx.redis).catch(() => Date.now()),
  ]);
  if (lease === PRUNED_LEASE) return new BatchPrunedError(batch);
  if (expiry !== null && Number(expiry) <= now) {
    return new BatchNotFoundError(
      batch,
      'It expired: its retention ran out after its last write (`--retention` sets a longer one; `falbatch status` shows when a batch expires).',
    );
  }
  return new BatchLostError(batch);
}
