import { reportRedisError } from '../queue/redis-outage.js';
import { resolve } from 'node:path';
import type { Queue } from 'bullmq';
import { bullmq } from '../queue/cjs-packages.js';
import { resolveConfig, type Config } from '../config.js';
import type { FalbatchContext } from '../context.js';
import { ConfigError } from '../errors.js';
import { FETCH_DEFAULTS, isManifestUrl } from '../manifest/fetch-manifest.js';
import { BATCH_NAME } from '../manifest/row-key.js';
import { openManifestFor } from '../queue/enqueue.js';
import { isS3Url } from '../storage/s3-url.js';
import { SECOND, parseDuration } from '../time.js';
import { TICK_HISTORY } from './tick-history.js';

export { TICK_HISTORY } from './tick-history.js';

/**
 * Schedules: a manifest enqueued again and again into one batch, by a BullMQ job scheduler on a
 * queue of its own (`{<queue>}-ticks`, see queue/keys.ts), never on the row queue. Each tick is one
 * job, served by whichever `work` process takes it (worker/start-scheduler.ts), and runs
 * ops/schedule-tick.ts. This file adds, lists and removes them.
 */

/** The manifest settings a schedule keeps (the flags of `enqueue` that change what rows are read and sent). */
export const SCHEDULE_SETTINGS = [
  'endpoint',
  'attempts',
  'filesRoot',
  'encoding',
  'manifestFormat',
  'maxPromptChars',
  'maxInlineImageBytes',
  'maxRecordBytes',
  'inlineImages',
  'uploadS3Images',
  'uploadConcurrency',
  'maxImageSide',
  'input',
  'outputField',
  'imageColumns',
  'promptTemplate',
  'price',
] as const satisfies ReadonlyArray<keyof Config>;

export type ScheduleSettings = { [K in (typeof SCHEDULE_SETTINGS)[number]]?: Config[K] | undefined };

/** Limits on downloading a manifest URL at each tick. */
export interface ScheduleFetchLimits {
  /** @default 30 s */
  timeoutMs: number;
  /** @default 1 GiB */
  maxBytes: number;
  /** @default 5 */
  maxRedirects: number;
}

/** What a schedule's ticks do: stored as the job scheduler's template data. */
export interface ScheduleDefinition {
  v: 1;
  name: string;
  /** An absolute path (CSV file or images folder), or an http(s) URL. */
  manifest: string;
  /** The batch every tick enqueues into (default: the schedule's name): rows already there add nothing. */
  batch: string;
  prompt?: string | undefined;
  /** A tick that meets a bad row enqueues nothing and is recorded as failed. */
  strict: boolean;
  /** Most rows a tick adds (the first ones in manifest order); the rest wait for later ticks. */
  maxRows?: number | undefined;
  /** Most a tick's added rows may be forecast to cost, in the price's currency (USD for fal's prices). */
  maxSpend?: number | undefined;
  /** The batch's retention (ms; `forever` for none): each tick sets it, as `enqueue --retention` does. */
  retention?: number | 'forever' | undefined;
  fetch: ScheduleFetchLimits;
  settings: ScheduleSettings;
  createdAt: number;
  updatedAt: number;
}

export interface AddScheduleOptions {
  name: string;
  /** Path of a manifest file (CSV, JSONL, Parquet) or images folder (made absolute: every `work` process must read it there), an http(s) URL, or an s3:// prefix or manifest. */
  manifest: string;
  /** A cron expression (5 fields, or 6 with seconds first), in `tz` (default UTC). Exactly one of cron and everyMs. */
  cron?: string | undefined;
  /** IANA time zone of the cron expression, e.g. Europe/Paris. */
  tz?: string | undefined;
  /** Tick every this many ms (≥ 1 s); the first tick comes at once. */
  everyMs?: number | undefined;
  /** @default the schedule's name */
  batch?: string | undefined;
  prompt?: string | undefined;
  strict?: boolean | undefined;
  maxRows?: number | undefined;
  maxSpend?: number | undefined;
  /** The batch's retention in ms (Infinity: forever); default: the batch keeps its own, a new one gets config.retentionMs. */
  retentionMs?: number | undefined;
  fetch?: { [K in keyof ScheduleFetchLimits]?: ScheduleFetchLimits[K] | undefined } | undefined;
  settings?: ScheduleSettings | undefined;
}

/** One tick's outcome, as kept in Redis (the last TICK_HISTORY per schedule). */
export interface TickRecord {
  /** When the tick was due (ms since the epoch): the scheduler makes one job per due time. */
  tick: number;
  /** When it started, and how long it took (ms). */
  at: number;
  ms: number;
  /**
   * ok: the manifest was enqueued; failed: it could not be (reason); skipped: the batch was being
   * enqueued by another producer; missed: no work process took the tick when it was due (Redis
   * unreachable, or none running), and a late tick ran in its place (reason).
   */
  outcome: 'ok' | 'failed' | 'skipped' | 'missed';
  reason?: string;
  batch: string;
  rows: number;
  added: number;
  present: number;
  rejected: number;
  changed: number;
  /** Rows left for later ticks by --max-rows or --max-spend. */
  deferred: number;
  /** Which cap stopped the tick adding rows. */
  capped?: 'max-rows' | 'max-spend';
  /** With --max-spend: the forecast cost of the rows added. */
  spend?: { amount: number; currency: string };
  /** The process that ran it: `host:pid`. */
  worker: string;
  /** Ticks due after this one, while it waited to run, that it stood in for: recorded as missed (for a cron schedule, counted up to 100). */
  missed?: number;
}

/** A tick's record before anything was read: no rows, nothing added. */
export function tickRecord(fields: Pick<TickRecord, 'tick' | 'at' | 'outcome' | 'batch' | 'worker'> & { reason?: string }): TickRecord {
  return { ...fields, ms: 0, rows: 0, added: 0, present: 0, rejected: 0, changed: 0, deferred: 0 };
}

/** A schedule, as `schedule list` shows it. */
export interface Schedule extends ScheduleDefinition {
  cron: string | undefined;
  tz: string | undefined;
  everyMs: number | undefined;
  /** When the next tick is due (ms since the epoch); undefined when none is (a cron that never matches again). */
  next: number | undefined;
  /** The last ticks, newest first. */
  ticks: TickRecord[];
}

/** Job name of every tick. */
const TICK_JOB = 'tick';
const MIN_EVERY_MS = SECOND;

/** Missed ticks recorded one by one for a late tick (the first ones; its record counts them all). */
export const MISSED_RECORDS = 10;
/** Most due times of a cron schedule walked to count the ticks missed (each step parses the expression: about 1 ms). */
const MISSED_WALK = 100;

export interface MissedTicks {
  /** The first MISSED_RECORDS due times missed, oldest first. */
  times: number[];
  /** How many ticks were missed (at least that many when `more`). */
  count: number;
  more: boolean;
}

/**
 * The ticks a schedule missed while one of its ticks waited to run. BullMQ's job scheduler keeps
 * one job per schedule, due at its next time, and schedules the following one from the moment that
 * job starts: a tick that starts late (Redis unreachable, no work process running) stands in for
 * every tick due meanwhile, which never run. Those are the due times after `due` (the late tick's)
 * and before `until` (the next tick scheduled after it started).
 */
export function missedTicks(
  timing: { every?: number | undefined; pattern?: string | undefined; tz?: string | undefined },
  due: number,
  until: number,
): MissedTicks {
  const { every, pattern } = timing;
  if (every !== undefined && every > 0) {
    const count = Math.max(0, Math.ceil((until - due) / every) - 1);
    return { times: Array.from({ length: Math.min(count, MISSED_RECORDS) }, (_, i) => due + (i + 1) * every), count, more: false };
  }
  const times: number[] = [];
  let count = 0;
  let at = due;
  while (pattern !== undefined && count < MISSED_WALK) {
    const next = bullmq().getNextMillis(at, { pattern, ...(timing.tz !== undefined ? { tz: timing.tz } : {}) });
    if (next === undefined || !(next < until) || !(next > at)) return { times, count, more: false };
    count++;
    if (times.length < MISSED_RECORDS) times.push(next);
    at = next;
  }
  return { times, count, more: count >= MISSED_WALK };
}

/** A queue handle on the schedule ticks queue (close it after use; the connection stays the context's). */
export function openTicksQueue(ctx: FalbatchContext): Queue<ScheduleDefinition> {
  const TicksQueue = bullmq().Queue;
  const queue = new TicksQueue<ScheduleDefinition>(ctx.keys.ticksQueueName, { connection: ctx.redis, prefix: ctx.keys.bullPrefix });
  queue.on('error', (error) => reportRedisError(ctx.redis, ctx.log, 'schedule queue', error, ctx.scrub));
  return queue;
}

async function withTicksQueue<T>(ctx: FalbatchContext, body: (queue: Queue<ScheduleDefinition>) => Promise<T>): Promise<T> {
  const queue = openTicksQueue(ctx);
  try {
    return await body(queue);
  } finally {
    await queue.close();
  }
}

/** `--every`: `90s`, `15m`, `1h`, `1d`, `500ms` → ms; at least 1 s. */
export function parseEvery(text: string): number {
  const ms = parseDuration(text, { days: true, bareMilliseconds: false });
  if (ms === undefined || !Number.isFinite(ms))
    throw new ConfigError(`Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "${text}"`);
  if (ms < MIN_EVERY_MS) throw new ConfigError(`Expected --every to be at least 1s, got "${text}"`);
  return ms;
}

const CRON_FORM = '5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, e.g. "0 * * * *" for every hour';

/**
 * `--cron`: 5 or 6 fields, nothing else. BullMQ's parser fills in the fields missing (`"5"` became
 * a weekly tick) and takes aliases such as `@daily`, so a typo would silently become another
 * schedule. Returns the expression with its fields separated by single spaces.
 */
export function checkCron(expression: string): string {
  const fields = expression
    .trim()
    .split(/\s+/)
    .filter((field) => field !== '');
  if (fields.length !== 5 && fields.length !== 6) {
    throw new ConfigError(
      `Expected --cron to be a cron expression of ${CRON_FORM}, got "${expression}" (${fields.length} field${fields.length === 1 ? '' : 's'})`,
    );
  }
  return fields.join(' ');
}

function checkTimeZone(tz: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new ConfigError(`Expected --tz to be an IANA time zone like Europe/Paris or America/New_York, got "${tz}"`);
  }
}

function positiveInteger(flag: string, value: number | undefined, max = Number.MAX_SAFE_INTEGER): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > max))
    throw new ConfigError(`Expected ${flag} to be an integer from 1 to ${max}, got ${String(value)}`);
}

/** Reads a stored definition, refusing one this version does not know. */
export function parseDefinition(data: unknown): ScheduleDefinition {
  const definition = data as Partial<ScheduleDefinition> | undefined;
  if (definition?.v !== 1 || typeof definition.name !== 'string' || typeof definition.manifest !== 'string' || typeof definition.batch !== 'string') {
    throw new ConfigError(
      'this schedule was stored by another falbatch version: remove it and add it again (`falbatch schedule remove NAME`, then `falbatch schedule add …`)',
    );
  }
  return {
    ...definition,
    strict: definition.strict === true,
    fetch: { ...FETCH_DEFAULTS, ...definition.fetch },
    settings: definition.settings ?? {},
  } as ScheduleDefinition;
}

/**
 * Adds a schedule, or replaces the one of that name (its definition and timing; its tick records
 * stay). Checked before anything is stored: the name, the timing (a cron expression BullMQ can
 * parse, a time zone, an interval of at least 1 s), the settings (as `enqueue` checks them), and
 * that a manifest file or folder is there now. A URL is fetched only by ticks.
 */
export async function addSchedule(ctx: FalbatchContext, options: AddScheduleOptions): Promise<{ schedule: Schedule; created: boolean }> {
  const { name } = options;
  if (!BATCH_NAME.test(name))
    throw new ConfigError(`Expected the schedule name to be 1-100 letters, digits, ".", "_" or "-" (starting with a letter or digit), got "${name}"`);
  if ((options.cron === undefined) === (options.everyMs === undefined))
    throw new ConfigError('A schedule needs exactly one of --cron "EXPR" and --every DURATION');
  const cron = options.cron === undefined ? undefined : checkCron(options.cron);
  if (options.tz !== undefined) {
    if (options.cron === undefined) throw new ConfigError('--tz applies to --cron (an --every interval does not depend on the time zone)');
    checkTimeZone(options.tz);
  }
  if (options.everyMs !== undefined && (!Number.isFinite(options.everyMs) || options.everyMs < MIN_EVERY_MS))
    throw new ConfigError(`Expected --every to be at least 1s, got ${options.everyMs} ms`);
  const batch = options.batch ?? name;
  if (!BATCH_NAME.test(batch))
    throw new ConfigError(`Expected --batch to be 1-100 letters, digits, ".", "_" or "-" (starting with a letter or digit), got "${batch}"`);
  positiveInteger('--max-rows', options.maxRows);
  if (options.maxSpend !== undefined && !(Number.isFinite(options.maxSpend) && options.maxSpend > 0))
    throw new ConfigError(`Expected --max-spend to be an amount > 0, like 5 or 0.50, got ${String(options.maxSpend)}`);
  const fetch = { ...FETCH_DEFAULTS, ...Object.fromEntries(Object.entries(options.fetch ?? {}).filter(([, v]) => v !== undefined)) } as ScheduleFetchLimits;
  if (!(fetch.timeoutMs >= 1)) throw new ConfigError(`Expected --fetch-timeout to be a duration > 0, got ${fetch.timeoutMs} ms`);
  positiveInteger('--max-manifest-bytes', fetch.maxBytes);
  if (!Number.isInteger(fetch.maxRedirects) || fetch.maxRedirects < 0 || fetch.maxRedirects > 100)
    throw new ConfigError(`Expected --max-redirects to be an integer from 0 to 100, got ${fetch.maxRedirects}`);

  // Only the settings given; filesRoot absolute (ticks run in other processes, other folders).
  const settings: ScheduleSettings = {};
  for (const key of SCHEDULE_SETTINGS) {
    const value = options.settings?.[key];
    if (value !== undefined) (settings as Record<string, unknown>)[key] = value;
  }
  if (settings.filesRoot !== undefined) settings.filesRoot = resolve(settings.filesRoot);
  const config = resolveConfig({}, { ...ctx.config, ...settings });

  let manifest = options.manifest;
  if (isManifestUrl(manifest)) {
    try {
      new URL(manifest);
    } catch {
      throw new ConfigError(`Expected --manifest to be a path or an http(s) URL, got "${manifest}"`);
    }
  } else {
    // An s3:// prefix or manifest is kept as it is: each tick lists it (or reads it) again, and
    // adds only objects that are new or changed (by ETag).
    if (!isS3Url(manifest)) manifest = resolve(manifest);
    // Fails now, not at every tick, on a missing file, bucket or credentials, or a --prompt that does not fit it.
    await openManifestFor(ctx, manifest, options.prompt, config);
  }

  return withTicksQueue(ctx, async (queue) => {
    const existing = await queue.getJobScheduler(name);
    const now = ctx.clock.now();
    const createdAt = (existing?.template?.data as Partial<ScheduleDefinition> | undefined)?.createdAt ?? now;
    const definition: ScheduleDefinition = {
      v: 1,
      name,
      manifest,
      batch,
      ...(options.prompt !== undefined ? { prompt: options.prompt } : {}),
      strict: options.strict ?? false,
      ...(options.maxRows !== undefined ? { maxRows: options.maxRows } : {}),
      ...(options.maxSpend !== undefined ? { maxSpend: options.maxSpend } : {}),
      ...(options.retentionMs !== undefined ? { retention: Number.isFinite(options.retentionMs) ? options.retentionMs : ('forever' as const) } : {}),
      fetch,
      settings,
      createdAt,
      updatedAt: now,
    };
    const timing = cron !== undefined ? { pattern: cron, ...(options.tz !== undefined ? { tz: options.tz } : {}) } : { every: options.everyMs as number };
    try {
      await queue.upsertJobScheduler(name, timing, {
        name: TICK_JOB,
        data: definition,
        // One try: a tick records its own failure; the next tick is the retry.
        opts: { attempts: 1, removeOnComplete: true, removeOnFail: { count: 100 } },
      });
    } catch (error) {
      if (cron === undefined) throw error;
      throw new ConfigError(`Expected --cron to be a cron expression of ${CRON_FORM}, got "${options.cron}": ${(error as Error).message}`);
    }
    const schedule = await readSchedule(ctx, queue, name);
    if (!schedule) throw new ConfigError(`schedule ${name} vanished while it was added (removed at the same moment?)`);
    return { schedule, created: existing === undefined };
  });
}

async function readSchedule(ctx: FalbatchContext, queue: Queue<ScheduleDefinition>, name: string, ticks = TICK_HISTORY): Promise<Schedule | undefined> {
  const scheduler = await queue.getJobScheduler(name);
  if (!scheduler) return undefined;
  return toSchedule(scheduler, await tickRecords(ctx, name, ticks));
}

function toSchedule(scheduler: Awaited<ReturnType<Queue<ScheduleDefinition>['getJobScheduler']>> & object, ticks: TickRecord[]): Schedule {
  const definition = parseDefinition(scheduler.template?.data);
  return {
    ...definition,
    cron: scheduler.pattern ?? undefined,
    tz: scheduler.tz ?? undefined,
    everyMs: scheduler.every ?? undefined,
    next: typeof scheduler.next === 'number' && Number.isFinite(scheduler.next) ? scheduler.next : undefined,
    ticks,
  };
}

/** The schedule's last `count` tick records, newest first. */
export async function tickRecords(ctx: FalbatchContext, name: string, count = TICK_HISTORY): Promise<TickRecord[]> {
  const raw = await ctx.redis.lrange(ctx.keys.scheduleTicks(name), 0, Math.max(0, count - 1));
  return raw.flatMap((text) => {
    try {
      return [JSON.parse(text) as TickRecord];
    } catch {
      return [];
    }
  });
}

/**
 * Keeps a tick's record, and those of the ticks it stood in for (`missed`, oldest first, due after
 * it): the last TICK_HISTORY per schedule, newest due first. A schedule removed while its tick ran
 * keeps no records: checked after writing, so a removal at any moment leaves none behind.
 */
export async function recordTick(
  ctx: FalbatchContext,
  queue: Queue<ScheduleDefinition>,
  name: string,
  record: TickRecord,
  missed: readonly TickRecord[] = [],
): Promise<void> {
  const key = ctx.keys.scheduleTicks(name);
  await ctx.redis
    .multi()
    .lpush(key, ...[record, ...missed].map((r) => JSON.stringify(r)))
    .ltrim(key, 0, TICK_HISTORY - 1)
    .exec();
  if (!(await queue.getJobScheduler(name))) await ctx.redis.del(key);
}

/** What a tick of a schedule runs now, when the schedule ticks, and when its next tick is due. */
export interface CurrentSchedule {
  definition: ScheduleDefinition;
  timing: { every: number | undefined; pattern: string | undefined; tz: string | undefined };
  next: number | undefined;
}

/** The schedule `name` as a tick runs it now, or undefined when the schedule was removed. */
export async function currentSchedule(queue: Queue<ScheduleDefinition>, name: string): Promise<CurrentSchedule | undefined> {
  const scheduler = await queue.getJobScheduler(name);
  if (!scheduler) return undefined;
  const { cron, tz, everyMs, next, ticks: _, ...definition } = toSchedule(scheduler, []);
  return { definition, timing: { every: everyMs, pattern: cron, tz }, next };
}

export interface ListSchedulesOptions {
  /** Tick records per schedule. @default TICK_HISTORY */
  ticks?: number;
}

/** Every schedule of the namespace, by name, with its next tick and its last ticks. */
export async function listSchedules(ctx: FalbatchContext, options: ListSchedulesOptions = {}): Promise<Schedule[]> {
  return withTicksQueue(ctx, async (queue) => {
    const schedulers = await queue.getJobSchedulers(0, -1, true);
    const schedules: Schedule[] = [];
    for (const scheduler of schedulers) {
      const name = scheduler.key;
      try {
        schedules.push(toSchedule(scheduler, await tickRecords(ctx, name, options.ticks ?? TICK_HISTORY)));
      } catch (error) {
        ctx.log.warn(`schedule ${name}: ${(error as Error).message}`);
      }
    }
    return schedules.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  });
}

/**
 * Removes a schedule: its scheduler and its next tick (no tick starts after this), and its tick
 * records. A tick already running finishes (what it enqueued stays in the batch). The batch itself
 * is not touched. Throws when there is no such schedule.
 */
export async function removeSchedule(ctx: FalbatchContext, name: string): Promise<void> {
  await withTicksQueue(ctx, async (queue) => {
    const existed = await queue.getJobScheduler(name);
    if (!existed) throw new ConfigError(`No schedule named "${name}" in namespace ${ctx.config.prefix}: \`falbatch schedule list\` lists them`);
    await queue.removeJobScheduler(name);
    await ctx.redis.del(ctx.keys.scheduleTicks(name));
  });
}
