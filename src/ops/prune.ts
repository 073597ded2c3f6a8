import type { JobType } from 'bullmq';
import type { FalbatchContext } from '../context.js';
import { ConfigError } from '../errors.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { scanKeys } from '../queue/connection.js';
import { runTogether } from '../queue/run-together.js';
import { migrateLegacyLedger, PRUNED_LEASE, PRUNED_MARK_MS, sweepExpiredBatches } from '../queue/retention.js';
import { fingerprintOf } from '../queue/row-keys.js';

export interface PruneBatchOptions {
  batch: string;
  /**
   * Drop the batch even while a producer writes it (the producer stops at its next chunk, saying
   * the batch was pruned) or rows of it are being called (they end without being recorded; an
   * answer they pay for still goes to the ledger). Without it, prune refuses both.
   */
  force?: boolean;
  /**
   * Also drop the ledger entries of the batch's rows (their paid answers): identical rows of later
   * batches are then called, and paid for, again. Without it they stay reusable until their own
   * retention runs out.
   */
  ledger?: boolean;
}

/** Queue jobs a prune removed, by the state they were in. */
export interface PrunedJobs {
  /** Waiting for a worker (prioritized included). */
  waiting: number;
  /** Delayed: retry backoff, a rate limit, a result to read again. */
  delayed: number;
  /** Failed (what `falbatch retry` would have moved back). */
  failed: number;
}

export interface PruneBatchSummary {
  batch: string;
  /** Manifest rows and results the batch had. */
  rows: number;
  results: number;
  /** Redis keys of the batch deleted (its data keys, and what an interrupted producer left). */
  keys: number;
  jobs: PrunedJobs;
  /** Rows being called when it was pruned (`force`): left to their workers, which record nothing under the batch. */
  inFlight: number;
  /** A producer was writing the batch (`force`): it stops at its next chunk. */
  producerStopped: boolean;
  /** Ledger entries of the batch's rows dropped (`ledger`). */
  ledgerDropped: number;
  /** Ledger entries of the batch's rows kept for reuse (without `ledger`), until their own retention runs out. */
  ledgerKept: number;
}

/** Job states a batch's rows can wait in. */
const WAITING_STATES: ReadonlyArray<[JobType, keyof PrunedJobs]> = [
  ['wait', 'waiting'],
  ['prioritized', 'waiting'],
  ['waiting-children', 'waiting'],
  ['delayed', 'delayed'],
  ['failed', 'failed'],
];

/** Removals in flight at once. */
const AT_ONCE = 100;
const PAGE = 1000;

/** A row job's batch: job ids are `<batch>/<row key>…` (row-key.ts jobIdFor), and names hold no `/`. */
function batchOfJob(jobId: string): string | undefined {
  const slash = jobId.indexOf('/');
  return slash > 0 ? jobId.slice(0, slash) : undefined;
}

/** Ids of the queue's jobs in `state` that belong to the batches `belongs` accepts. */
async function jobIdsIn(ctx: FalbatchContext, state: JobType, belongs: (batch: string) => boolean): Promise<string[]> {
  const ids = await ctx.queue.getRanges([state], 0, -1);
  return ids.filter((id) => {
    const batch = batchOfJob(id);
    return batch !== undefined && belongs(batch);
  });
}

/** Removes jobs (those a worker holds are left: BullMQ refuses), and their rows' saved fal request state. Returns how many went. */
async function removeJobs(ctx: FalbatchContext, ids: readonly string[]): Promise<number> {
  let removed = 0;
  for (let at = 0; at < ids.length; at += AT_ONCE) {
    const slice = ids.slice(at, at + AT_ONCE);
    const done = await Promise.all(slice.map((id) => ctx.queue.remove(id)));
    removed += done.filter((n) => n === 1).length;
    const gone = slice.filter((_, i) => done[i] === 1);
    if (gone.length > 0) await ctx.redis.unlink(...gone.map((id) => ctx.keys.request(id)));
  }
  return removed;
}

/**
 * Drops a batch now (`falbatch prune --batch NAME`): every key of it, its jobs still in the queue
 * (waiting, delayed, failed), and its entry in the batches list. Answers it paid for stay in the
 * ledger, for identical rows of other batches, until their own retention runs out, unless
 * `ledger`. Refuses while a producer holds the batch's lease or rows of it are being called,
 * unless `force`.
 */
export async function pruneBatch(ctx: FalbatchContext, options: PruneBatchOptions): Promise<PruneBatchSummary> {
  const { redis, keys } = ctx;
  const { batch } = options;
  const batchKeys = keys.batch(batch);
  const mine = (name: string): boolean => name === batch;
  const [meta, lease, listed, expiring] = await Promise.all([
    readBatchMeta(redis, keys, batch),
    redis.get(batchKeys.enqueuing),
    redis.zscore(keys.batches, batch),
    redis.zscore(keys.expiries, batch),
  ]);
  const active = await jobIdsIn(ctx, 'active', mine);
  const producing = lease !== null && lease !== PRUNED_LEASE;
  if (!options.force) {
    if (producing) {
      throw new ConfigError(
        `Batch ${batch} is being enqueued by a producer right now: not pruned. Wait for the producer to finish, or pass --force to stop it and drop the batch.`,
      );
    }
    if (active.length > 0) {
      throw new ConfigError(
        `Batch ${batch} has ${active.length} row${active.length === 1 ? '' : 's'} in flight (being called by workers right now): not pruned. ` +
          'Wait for the batch to finish (`falbatch status`), stop its workers, or pass --force (rows in flight then end without being recorded; answers they pay for still go to the ledger).',
      );
    }
  }
  if (!meta && listed === null && expiring === null && lease === null && active.length === 0) {
    // A batch with only jobs left (it expired, or Redis lost it) is still prunable.
    const queued = await Promise.all(WAITING_STATES.map(([state]) => jobIdsIn(ctx, state, mine)));
    if (queued.every((ids) => ids.length === 0)) throw await batchNotFound(redis, batch, keys);
  }
  // What overrode a producer or rows in flight leaves a mark, so they say the batch was pruned (not lost).
  if (options.force && (producing || active.length > 0)) await redis.set(batchKeys.enqueuing, PRUNED_LEASE, 'PX', PRUNED_MARK_MS);

  const summary: PruneBatchSummary = {
    batch,
    rows: meta?.rows ?? 0,
    results: await redis.hlen(batchKeys.results),
    keys: 0,
    jobs: { waiting: 0, delayed: 0, failed: 0 },
    inFlight: active.length,
    producerStopped: options.force === true && producing,
    ledgerDropped: 0,
    ledgerKept: 0,
  };

  // The ledger entries of the batch's rows (the row keys hash holds each row's fingerprint).
  let cursor = '0';
  do {
    const [next, entries] = await redis.hscan(batchKeys.keys, cursor, 'COUNT', PAGE);
    cursor = next;
    const fingerprints = [...new Set(entries.flatMap((value, i) => (i % 2 === 1 ? [fingerprintOf(entries[i - 1] as string, value) as string] : [])))];
    if (fingerprints.length === 0) continue;
    const ledgerKeys = fingerprints.map((fingerprint) => keys.ledger(fingerprint));
    if (options.ledger) {
      summary.ledgerDropped += await redis.unlink(...ledgerKeys);
      summary.ledgerDropped += await redis.hdel(keys.legacyLedger, ...fingerprints);
    } else {
      summary.ledgerKept += await redis.exists(...ledgerKeys);
    }
  } while (cursor !== '0');

  // The batch's keys first: a worker taking one of its jobs from now on finds it gone, and drops it.
  // (Also when Redis is out of memory: prune is what frees room, see runTogether.)
  const dropLease = lease !== null && lease !== PRUNED_LEASE && !(options.force && (producing || active.length > 0));
  const replies = await runTogether(redis, (commands) => {
    commands
      .zrem(keys.batches, batch)
      .zrem(keys.expiries, batch)
      .unlink(...batchKeys.retained);
    return dropLease ? commands.unlink(batchKeys.enqueuing) : commands;
  });
  summary.keys += replies.slice(2).reduce((sum, [, n]) => sum + Number(n ?? 0), 0);
  // What an interrupted producer left (drafts, ids seen, caption targets: 24 h TTLs), found by name.
  for await (const found of scanKeys(redis, batchKeys.pattern, PAGE, ctx.log)) {
    const left = found.filter((key) => key !== batchKeys.enqueuing);
    if (left.length > 0) summary.keys += await redis.unlink(...left);
  }

  // Then its jobs, listed now: a producer stopped by the mark may have added some up to here (it
  // removes those it adds from now on, finding the batch gone).
  for (const [state, kind] of WAITING_STATES) summary.jobs[kind] += await removeJobs(ctx, await jobIdsIn(ctx, state, mine));
  return summary;
}

export interface PruneExpiredSummary {
  /** Batches whose retention ran out (or that were pruned or lost), taken off the batches list. */
  expired: string[];
  /** Batches from before retention, given the default retention from now. */
  migrated: string[];
  /** Queue jobs (waiting, delayed, failed) of batches that are gone, removed. */
  orphanJobs: number;
  /** Answers moved from the ledger hash of earlier versions to their own keys (with the default retention). */
  ledgerMigrated: number;
}

/**
 * Removes now what has expired (`falbatch prune --expired`): batches whose retention ran out
 * leave the list, and the queue jobs of batches that are gone (expired, pruned, lost) are
 * removed instead of waiting for a worker to drop them, or for BullMQ to age them out. Also the
 * migration from versions before retention: listed batches without a retention get the default
 * from now, and the ledger hash is moved into per-answer keys with the default retention.
 * Expiry itself needs no command: Redis expires the keys, and every enqueue, status and worker
 * start sweeps the list.
 */
export async function pruneExpired(ctx: FalbatchContext): Promise<PruneExpiredSummary> {
  const summary: PruneExpiredSummary = { expired: [], migrated: [], orphanJobs: 0, ledgerMigrated: 0 };
  for (;;) {
    const swept = await sweepExpiredBatches(ctx);
    summary.expired.push(...swept.expired);
    summary.migrated.push(...swept.migrated);
    if (swept.expired.length + swept.migrated.length === 0) break;
  }
  // Jobs whose batch has no meta: group them by batch, and ask once per batch.
  const known = new Map<string, boolean>();
  const gone = async (batch: string): Promise<boolean> => {
    let exists = known.get(batch);
    if (exists === undefined) {
      exists = (await ctx.redis.exists(ctx.keys.batch(batch).meta)) === 1;
      known.set(batch, exists);
    }
    return !exists;
  };
  for (const [state] of WAITING_STATES) {
    const ids = await ctx.queue.getRanges([state], 0, -1);
    const orphans: string[] = [];
    for (const id of ids) {
      const batch = batchOfJob(id);
      if (batch !== undefined && (await gone(batch))) orphans.push(id);
    }
    summary.orphanJobs += await removeJobs(ctx, orphans);
  }
  summary.ledgerMigrated = await migrateLegacyLedger(ctx);
  return summary;
}
