import { randomUUID } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import type { JobsOptions } from 'bullmq';
import type { FalbatchContext } from '../context.js';
import { DEFAULT_OUTPUT_FIELD } from '../fal/endpoints.js';
import { jobIdFor } from '../manifest/row-key.js';
import { SECOND } from '../time.js';
import { connectionIdOf, isConnectionAlive } from './connection.js';
import { CONTROL_FIELDS, bullPriority, controlFrom, holdOf, spendOf, type BatchControl } from './batch-control.js';
import { backlogRowsIn, backlogRowsOf } from './backlog-rows.js';
import { packEntries, unpackEntries } from './packed-entries.js';
import { scriptsIn, scriptsOn } from './redis-scripts.js';
import type { RowJobData } from './row-job.js';

/**
 * The backlog: rows of a batch stored, compactly, until the queue has room for them as jobs.
 *
 * Redis holds at most `maxWaiting` waiting jobs (a BullMQ job costs about 1 KB of Redis); every
 * other row to call waits in its batch's backlog list: a short JSON entry per row (its key,
 * fingerprint and fal input), each chunk the producer writes packed into one deflated list element
 * (queue/packed-entries.ts: 20 to 30 bytes a row instead of 180). The producer stores every chunk
 * there and tops the queue up at once; workers top it up as they drain it (see startWorker). So
 * `enqueue` returns once every row is stored, whether or not a worker runs, and Redis stays bounded.
 *
 *   <base>:backlog                     ZSET batch name → order (priority, then first stored): batches with a backlog
 *   <base>:backlog:lock                STRING the process topping the queue up now (short PX)
 *   <base>:max-waiting                 STRING the queue's cap on waiting jobs (the last producer's --max-waiting)
 *   <base>:batch:<name>:backlog        LIST the batch's rows not yet jobs, in manifest order, a packed chunk per element
 *                                      (a data key: the batch's retention)
 *   <base>:batch:<name>:meta           fields `backlog_taken`: how many rows have become jobs (a CAS counter);
 *                                      `backlog_head`: of them, those of the head element (gone when 0);
 *                                      `backlog_left`: rows stored and not jobs yet (gone with the last)
 *
 * Crash safety. A top-up reads the counter and the head element, adds jobs for rows of it from
 * `backlog_head` on (addBulk: a job id that exists is ignored), and only then moves past them, if
 * the counter still says nobody else did: it advances `backlog_head`, or pops the element once all
 * its rows are jobs. Killed between the two, the next top-up adds the same rows again, which
 * BullMQ ignores (or, for a job already finished and removed, whose row has ended: its worker
 * records nothing and calls nothing). Moving on compares and sets the counter in one script, so
 * two top-ups never take the same rows twice. The producer stores a chunk's backlog element and
 * its row keys in one MULTI: a row is never known to the batch without being stored to call.
 */
export interface BacklogRow {
  key: string;
  fingerprint: string;
  endpoint: string;
  input: Record<string, unknown>;
  outputField: string;
}

/** Entry: [key or 0 when it is the fingerprint, fingerprint, endpoint, input, output field if not the default]. */
type Entry = [string | 0, string, string, Record<string, unknown>, string?];

export function encodeBacklogEntry(row: BacklogRow): string {
  const entry: Entry = [row.key === row.fingerprint ? 0 : row.key, row.fingerprint, row.endpoint, row.input];
  if (row.outputField !== DEFAULT_OUTPUT_FIELD) entry.push(row.outputField);
  return JSON.stringify(entry);
}

export function decodeBacklogEntry(batch: string, text: string): RowJobData {
  const [key, fingerprint, endpoint, input, outputField] = JSON.parse(text) as Entry;
  return { b: batch, k: key === 0 ? fingerprint : key, e: endpoint, f: fingerprint, in: input, ...(outputField !== undefined ? { o: outputField } : {}) };
}

/** Most jobs one addBulk of a top-up adds. */
export const TOP_UP_CHUNK = 1000;
/** How long a top-up holds the lock (renewed between chunks). */
const LOCK_MS = 30 * SECOND;
/** Batches with a backlog a top-up looks at, to serve the highest priority first. */
const BATCHES_LOOKED_AT = 20;

/** Where a batch goes in the backlog order: higher priority first, then the batch stored first. */
function orderOf(priority: number, storedAt: number): number {
  return bullPriority(priority) * 1e13 + storedAt;
}

/**
 * Stores rows in their batch's backlog, in the given transaction (the caller adds the row keys to
 * it, so both land together).
 */
export function storeBacklog(ctx: FalbatchContext, multi: ChainableCommander, batch: string, rows: readonly BacklogRow[], priority: number): void {
  if (rows.length === 0) return;
  const keys = ctx.keys.batch(batch);
  scriptsIn(multi).falbatchBacklogStore(
    keys.backlog,
    keys.meta,
    ctx.keys.backlog,
    packEntries(rows.map(encodeBacklogEntry)),
    rows.length,
    orderOf(priority, ctx.clock.now()),
    batch,
  );
}

/** Job options every row job gets: its identity, attempts with falbatch's backoff, and cleanup. */
export function rowJobOptions(ctx: FalbatchContext, batch: string, key: string, fingerprint: string, priority?: number): JobsOptions {
  const retentionMs = ctx.config.retentionMs;
  const bull = priority === undefined ? 0 : bullPriority(priority);
  return {
    jobId: jobIdFor(batch, key, fingerprint),
    // The batch's priority (1..10); the top one (the default) goes without: BullMQ's wait list, served first.
    ...(bull > 0 ? { priority: bull } : {}),
    attempts: ctx.config.attempts,
    backoff: { type: 'falbatch' },
    // Redis holds every result in the batch's results hash: finished jobs themselves are not needed.
    removeOnComplete: true,
    // A failed job is what `falbatch retry` moves back: kept for the namespace's retention (30 days
    // by default), and at most the newest 10,000 in the queue. Not each batch's own: BullMQ applies
    // a failing job's age limit to the whole failed set, so a short-lived batch would take the
    // failed rows of long-lived ones with it. Failed jobs of batches that are gone go with
    // `prune --expired` (or when they age out).
    removeOnFail: Number.isFinite(retentionMs) ? { age: Math.ceil(retentionMs / SECOND), count: 10_000 } : { count: 10_000 },
  };
}

/** The BullMQ job of a row, with its batch's current control (priority, fal's queue priority). */
export function rowJob(
  ctx: FalbatchContext,
  data: RowJobData,
  control: Pick<BatchControl, 'priority' | 'falPriority'>,
): { name: string; data: RowJobData; opts: JobsOptions } {
  const withPriority: RowJobData = control.falPriority === 'low' ? { ...data, qp: 'low' } : data;
  return { name: data.e, data: withPriority, opts: rowJobOptions(ctx, data.b, data.k, data.f, control.priority) };
}

/** The queue's cap on waiting jobs: the one the last producer set, else this process's --max-waiting. */
export async function queueCap(ctx: FalbatchContext): Promise<number> {
  const stored = Number(await ctx.redis.get(ctx.keys.maxWaiting));
  return Number.isInteger(stored) && stored > 0 ? stored : ctx.config.maxWaiting;
}

/** Records this producer's --max-waiting as the queue's cap, for the workers that top it up. */
export async function setQueueCap(ctx: FalbatchContext, cap: number): Promise<void> {
  await ctx.redis.set(ctx.keys.maxWaiting, String(cap));
}

/** Jobs waiting for a worker: the wait list and BullMQ's prioritized set (lower-priority batches). */
export function waitingJobs(ctx: FalbatchContext): Promise<number> {
  return ctx.queue.getJobCountByTypes('waiting', 'prioritized');
}

export interface TopUp {
  /** Jobs added from backlogs. */
  added: number;
  /** Jobs waiting after it. */
  waiting: number;
  /** The cap it filled up to. */
  cap: number;
  /** Rows still in backlogs it could serve (held batches, paused or over their spend cap, aside). */
  left: number;
  /** Another process was topping the queue up: this one did nothing. */
  busy: boolean;
}

/**
 * The top-up lock, as `<connection id>:<token>`: a holder killed mid-top-up (its connection gone,
 * which Redis sees at once) is taken over at once, not after the lock's PX. Returns the value held.
 */
async function takeLock(ctx: FalbatchContext): Promise<string | undefined> {
  const lock = ctx.keys.backlogLock;
  const holder = `${await connectionIdOf(ctx.redis)}:${randomUUID()}`;
  if ((await ctx.redis.set(lock, holder, 'PX', LOCK_MS, 'NX')) === 'OK') return holder;
  const current = await ctx.redis.get(lock);
  if (current === null) return undefined;
  // (undefined: Redis does not say, e.g. CLIENT LIST is not allowed: the holder is taken to live.)
  if ((await isConnectionAlive(ctx.redis, current.slice(0, current.indexOf(':')))) !== false) return undefined;
  const took = await scriptsOn(ctx.redis).falbatchCompareAndSet(lock, current, holder, LOCK_MS);
  return took === 1 ? holder : undefined;
}

interface Candidate {
  batch: string;
  order: number;
  control: BatchControl;
  /** Rows in its backlog. */
  length: number;
  /** Elements in its backlog list (0: nothing to take). */
  elements: number;
  held: boolean;
}

/** The batches with a backlog, highest priority (as their control says now) first; held ones marked. */
async function candidates(ctx: FalbatchContext): Promise<Candidate[]> {
  const listed = await ctx.redis.zrange(ctx.keys.backlog, '0', String(BATCHES_LOOKED_AT - 1), 'WITHSCORES');
  if (listed.length === 0) return [];
  const names: Array<[string, number]> = [];
  for (let i = 0; i < listed.length; i += 2) names.push([listed[i] as string, Number(listed[i + 1])]);
  const pipeline = ctx.redis.pipeline();
  for (const [batch] of names) {
    const keys = ctx.keys.batch(batch);
    pipeline
      .hmget(keys.meta, ...CONTROL_FIELDS)
      .hmget(keys.stats, 'billed', 'inference_ms')
      .llen(keys.backlog)
      .hget(keys.meta, 'backlog_left');
  }
  const replies = (await pipeline.exec()) ?? [];
  const found = names.map(([batch, order], i): Candidate => {
    const control = controlFrom((replies[4 * i]?.[1] as Array<string | null> | undefined) ?? []);
    const [billed, inferenceMs] = (replies[4 * i + 1]?.[1] as Array<string | null> | undefined) ?? [];
    const hold = holdOf(batch, control, control.cap ? spendOf(control.cap.price, billed, inferenceMs) : undefined);
    const elements = Number(replies[4 * i + 2]?.[1] ?? 0);
    const length = backlogRowsOf(elements, replies[4 * i + 3]?.[1]);
    // A cancelled batch's rows become jobs too: each ends as `cancelled` at once (no fal call).
    return { batch, order, control, length, elements, held: hold !== undefined && hold.kind !== 'cancelled' };
  });
  return found.sort((a, b) => b.control.priority - a.control.priority || a.order - b.order);
}

/**
 * Turns backlog rows into jobs until the queue holds its cap of waiting jobs (or the backlogs are
 * empty): the highest-priority batch first, then the batch stored first. Rows of paused batches,
 * and of batches over their spend cap, stay in their backlog until `resume`. One process at a
 * time (a lock); safe to kill at any point (see above).
 */
export async function topUpQueue(ctx: FalbatchContext, options: { cap?: number } = {}): Promise<TopUp> {
  // The common case first, in one round trip: no backlog anywhere.
  if ((await ctx.redis.exists(ctx.keys.backlog)) === 0) return { added: 0, waiting: 0, cap: options.cap ?? 0, left: 0, busy: false };
  const cap = options.cap ?? (await queueCap(ctx));
  const lua = scriptsOn(ctx.redis);
  let waiting = await waitingJobs(ctx);
  if (waiting >= cap) return { added: 0, waiting, cap, left: await backlogLength(ctx), busy: false };
  const token = await takeLock(ctx);
  if (token === undefined) return { added: 0, waiting, cap, left: 0, busy: true };
  let added = 0;
  try {
    for (;;) {
      const room = cap - waiting;
      const batches = await candidates(ctx);
      const open = batches.filter((c) => !c.held);
      for (const c of open) if (c.elements === 0) await lua.falbatchBacklogForget(ctx.keys.batch(c.batch).backlog, ctx.keys.backlog, c.batch);
      const next = open.find((c) => c.elements > 0);
      if (room <= 0 || next === undefined) {
        return { added, waiting, cap, left: open.reduce((sum, c) => sum + c.length, 0), busy: false };
      }
      const keys = ctx.keys.batch(next.batch);
      const take = Math.min(room, TOP_UP_CHUNK);
      // The counter and the head element, read together: the rows of it from backlog_head on.
      const [[, [taken, head]], [, element]] = ((await ctx.redis
        .multi()
        .hmget(keys.meta, 'backlog_taken', 'backlog_head')
        .lindexBuffer(keys.backlog, 0)
        .exec()) ?? []) as [[unknown, [string | null, string | null]], [unknown, Buffer | null]];
      if (element !== null) {
        const rows = unpackEntries(element);
        const from = Number(head ?? 0);
        const entries = rows.slice(from, from + take);
        if (entries.length > 0) await ctx.queue.addBulk(entries.map((entry) => rowJob(ctx, decodeBacklogEntry(next.batch, entry), next.control)));
        const committed = await lua.falbatchBacklogCommit(keys.backlog, keys.meta, ctx.keys.backlog, taken ?? '0', entries.length, rows.length, next.batch);
        if (committed === 1) added += entries.length;
      }
      if ((await lua.falbatchCompareAndPexpire(ctx.keys.backlogLock, token, LOCK_MS)) !== 1) return { added, waiting, cap, left: 0, busy: true };
      waiting = await waitingJobs(ctx);
    }
  } finally {
    await lua.falbatchCompareAndDelete(ctx.keys.backlogLock, token).catch(() => undefined);
  }
}

/** Rows in every backlog of the queue (held batches too). */
export async function backlogLength(ctx: FalbatchContext): Promise<number> {
  const names = await ctx.redis.zrange(ctx.keys.backlog, '0', '-1');
  if (names.length === 0) return 0;
  const pipeline = ctx.redis.pipeline();
  for (const batch of names) backlogRowsIn(ctx, pipeline, batch);
  const replies = (await pipeline.exec()) ?? [];
  let sum = 0;
  for (let i = 0; i < replies.length; i += 2) sum += backlogRowsOf(replies[i]?.[1], replies[i + 1]?.[1]);
  return sum;
}

/** Rows in a batch's backlog. */
export async function batchBacklogRows(ctx: FalbatchContext, batch: string): Promise<number> {
  const [[, elements], [, left]] = ((await backlogRowsIn(ctx, ctx.redis.multi(), batch).exec()) ?? []) as [[unknown, number], [unknown, string | null]];
  return backlogRowsOf(elements, left);
}
