import { onHomeNode, type RedisClient } from './connection.js';
import { BatchLostError, BatchNotFoundError, ConfigError } from '../errors.js';
import { SECOND } from '../time.js';
import { FOREVER, retentionArg, retentionFromMeta } from './retention-duration.js';
import type { KeyLayout } from './keys.js';

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
 * below find them: batches, expiries, the producer lease, then the batch's data keys, meta, row
 * keys and counts first. Every data key from `meta` on gets the batch's PX.
 */
export function retentionTail(keys: KeyLayout, batch: string): string[] {
  const b = keys.batch(batch);
  const lead = [b.meta, b.keys, b.counts];
  return [keys.batches, keys.expiries, b.enqueuing, ...lead, ...b.retained.filter((key) => !lead.includes(key))];
}

/** How many keys retentionTail gives (the same for every batch). */
export function retentionTailLength(keys: KeyLayout): number {
  return retentionTail(keys, 'x').length;
}

/**
 * Lua functions shared by every script that writes to a batch or the ledger. `t` is the index in
 * KEYS where the retention tail starts: KEYS[t] batches, t+1 expiries, t+2 lease, t+3 meta, t+4
 * row keys, t+5 counts, then the other data keys to the end of KEYS.
 */
export const RETENTION_LUA = `
local function falbatchNow()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- The batch's retention (ms), nil for ever; a batch from before retention (or gone) has the default.
local function retentionOf(meta, default)
  local stored = redis.call('HGET', meta, 'retention_ms') or default
  if stored == 'forever' then return nil end
  return tonumber(stored)
end
-- Rows of the batch not ended yet.
local function batchPending(t)
  local ended = (tonumber(redis.call('HGET', KEYS[t + 5], 'ok')) or 0) + (tonumber(redis.call('HGET', KEYS[t + 5], 'failed')) or 0)
  return redis.call('HLEN', KEYS[t + 4]) > ended
end
-- Rows not ended yet, or a producer writing it.
local function batchOpen(t)
  return redis.call('EXISTS', KEYS[t + 2]) == 1 or batchPending(t)
end
-- Every data key of the batch lives its retention from now (at least floor while it is open),
-- and the expiries zset says when; the batch is on the batches list. Lazy (a row beginning, which
-- creates no key but 'active', given its meta's life by liveAsMeta): nothing to do while the meta
-- still has 99 % of that life left; the expiries zset then runs up to 1 % early, which sweeps
-- correct (a sweep re-reads the meta's TTL before it drops a name).
local function touchBatch(t, name, retention, floor, open, lazy)
  local ttl = retention
  if ttl and open and ttl < floor then ttl = floor end
  if lazy then
    local left = redis.call('PTTL', KEYS[t + 3])
    if (ttl == nil and left == -1) or (ttl and left >= ttl - math.floor(ttl / 100)) then return end
  end
  for i = t + 3, #KEYS do
    if ttl then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
  end
  local now = falbatchNow()
  if ttl then redis.call('ZADD', KEYS[t + 1], now + ttl, name) else redis.call('ZADD', KEYS[t + 1], '+inf', name) end
  redis.call('ZADD', KEYS[t], 'NX', redis.call('HGET', KEYS[t + 3], 'created_at') or now, name)
end
-- A key created after the batch's touch in the same script lives as long as its meta.
local function liveAsMeta(key, meta)
  local left = redis.call('PTTL', meta)
  if left > 0 then redis.call('PEXPIRE', key, left) end
end
-- A paid answer lives at least ttl more (nil: for ever); never shortened.
local function extendAnswer(key, ttl)
  if ttl then redis.call('PEXPIRE', key, ttl, 'GT') else redis.call('PERSIST', key) end
end
-- The first answer for a fingerprint wins; a later one only extends it.
local function keepAnswer(key, entry, ttl)
  local set
  if ttl then set = redis.call('SET', key, entry, 'NX', 'PX', ttl) else set = redis.call('SET', key, entry, 'NX') end
  if not set then extendAnswer(key, ttl) end
end
`;

// Creates or reopens a batch for a producer: its name and creation time (kept), its retention
// (the given one, or the one it has, or the default), and every data key renewed (open: the floor).
// KEYS: the retention tail. ARGV: name, created at (ms), retention or '', default retention, floor.
const OPEN_BATCH = `${RETENTION_LUA}
redis.call('HSETNX', KEYS[4], 'name', ARGV[1])
redis.call('HSETNX', KEYS[4], 'created_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], 'retention_ms', ARGV[3]) else redis.call('HSETNX', KEYS[4], 'retention_ms', ARGV[4]) end
touchBatch(1, ARGV[1], retentionOf(KEYS[4], ARGV[4]), tonumber(ARGV[5]), true)
return redis.call('HGET', KEYS[4], 'retention_ms')
`;

// Renews a batch after writes to it. A batch whose meta is gone (pruned, lost, expired) gets
// nothing: what the writer just put under its keys is removed, and 0 says so.
// KEYS: the retention tail. ARGV: name, default retention, floor, open: 'open' (yes), 'auto'
// (rows pending or a producer writing), 'rows' (rows pending; the caller is the producer, about to go).
const TOUCH_BATCH = `${RETENTION_LUA}
if redis.call('EXISTS', KEYS[4]) == 0 then
  for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
  return 0
end
local open = ARGV[4] == 'open' or (ARGV[4] == 'auto' and batchOpen(1)) or (ARGV[4] == 'rows' and batchPending(1))
touchBatch(1, ARGV[1], retentionOf(KEYS[4], ARGV[2]), tonumber(ARGV[3]), open)
return 1
`;

// One name of the batches list or the expiries zset whose time has come, or that has no expiry:
// - its meta is gone: it expired (or was pruned or lost): off both lists, strays deleted;
// - a batch from before retention (no retention_ms, no TTL): it gets the default from now;
// - else its expiry is written down again from the meta's TTL (it was renewed meanwhile).
// KEYS: the retention tail. ARGV: name, default retention, floor.
const SWEEP_BATCH = `${RETENTION_LUA}
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
  return 'expired'
end
local left = redis.call('PTTL', KEYS[4])
if left == -1 and not redis.call('HGET', KEYS[4], 'retention_ms') then
  touchBatch(1, ARGV[1], retentionOf(KEYS[4], ARGV[2]), tonumber(ARGV[3]), batchOpen(1))
  return 'migrated'
end
if left < 0 then redis.call('ZADD', KEYS[2], '+inf', ARGV[1]) else redis.call('ZADD', KEYS[2], falbatchNow() + left, ARGV[1]) end
redis.call('ZADD', KEYS[1], 'NX', redis.call('HGET', KEYS[4], 'created_at') or falbatchNow(), ARGV[1])
return 'kept'
`;

// Moves answers of the pre-retention ledger hash to their own keys (the default retention).
// KEYS: the ledger hash, then the answers' keys. ARGV: default retention, then their fingerprints.
const MIGRATE_LEDGER = `
local moved = 0
for i = 2, #KEYS do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    if ARGV[1] == 'forever' then redis.call('SET', KEYS[i], entry, 'NX') else redis.call('SET', KEYS[i], entry, 'NX', 'PX', ARGV[1]) end
    redis.call('HDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
`;

interface RetentionScripts {
  falbatchOpenBatch(numKeys: number, ...args: Array<string | number>): Promise<string>;
  falbatchTouchBatch(numKeys: number, ...args: Array<string | number>): Promise<number>;
  falbatchSweepBatch(numKeys: number, ...args: Array<string | number>): Promise<string>;
  falbatchMigrateLedger(numKeys: number, ...args: Array<string | number>): Promise<number>;
}

function scriptsOf(redis: RedisClient): RetentionScripts {
  if (!('falbatchOpenBatch' in redis)) {
    redis.defineCommand('falbatchOpenBatch', { lua: OPEN_BATCH });
    redis.defineCommand('falbatchTouchBatch', { lua: TOUCH_BATCH });
    redis.defineCommand('falbatchSweepBatch', { lua: SWEEP_BATCH });
    redis.defineCommand('falbatchMigrateLedger', { lua: MIGRATE_LEDGER });
  }
  return redis as unknown as RetentionScripts;
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
  const stored = await scriptsOf(ctx.redis).falbatchOpenBatch(
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
  await ctx.redis.multi().zrem(ctx.keys.batches, batch).zrem(ctx.keys.expiries, batch).unlink(...ctx.keys.batch(batch).retained).exec();
}

/** Whether a touch holds the batch open (the floor applies): see TOUCH_BATCH. */
export type TouchMode = 'open' | 'auto' | 'rows';

/**
 * Renews the batch's keys after writes outside the result store's scripts. False when the batch is
 * gone (its meta expired, or was pruned or lost): what was written under its keys is removed.
 */
export async function touchBatch(ctx: RetentionContext, batch: string, mode: TouchMode): Promise<boolean> {
  const tail = retentionTail(ctx.keys, batch);
  return (await scriptsOf(ctx.redis).falbatchTouchBatch(tail.length, ...tail, ...touchArgs(ctx, batch, mode))) === 1;
}

/** The same, queued on a MULTI or pipeline (the script must be defined on the connection first: defineRetentionScripts). */
export function touchBatchIn(ctx: RetentionContext, pipeline: unknown, batch: string, mode: TouchMode): void {
  const tail = retentionTail(ctx.keys, batch);
  (pipeline as RetentionScripts).falbatchTouchBatch(tail.length, ...tail, ...touchArgs(ctx, batch, mode));
}

/** Defines the retention scripts on a connection (before a MULTI uses them). */
export function defineRetentionScripts(redis: RedisClient): void {
  scriptsOf(redis);
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
  const scripts = scriptsOf(redis);
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
  const scripts = scriptsOf(redis);
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
export async function vanishedBatchError(ctx: Pick<RetentionContext, 'redis' | 'keys'>, batch: string): Promise<BatchPrunedError | BatchNotFoundError | BatchLostError> {
  const [lease, expiry, now] = await Promise.all([
    ctx.redis.get(ctx.keys.batch(batch).enqueuing).catch(() => null),
    ctx.redis.zscore(ctx.keys.expiries, batch).catch(() => null),
    redisNow(ctx.redis).catch(() => Date.now()),
  ]);
  if (lease === PRUNED_LEASE) return new BatchPrunedError(batch);
  if (expiry !== null && Number(expiry) <= now) {
    return new BatchNotFoundError(batch, 'It expired: its retention ran out after its last write (`--retention` sets a longer one; `falbatch status` shows when a batch expires).');
  }
  return new BatchLostError(batch);
}
