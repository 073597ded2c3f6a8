import { reportRedisError } from '../queue/redis-outage.js';
import { closeOnce, closeWithinGrace } from '../close-within-grace.js';
import type { Job } from 'bullmq';
import { bullmq } from '../queue/cjs-packages.js';
import type { FalbatchContext } from '../context.js';
import { isRedisOutOfMemory } from '../errors.js';
import type { FalCaller } from '../fal/fal-caller.js';
import { createCheckedUploads } from '../manifest/upload-images.js';
import { runScheduleTick } from './schedule-tick.js';
import { HOUR } from '../time.js';
import { currentSchedule, missedTicks, MISSED_RECORDS, openTicksQueue, recordTick, tickRecord, type ScheduleDefinition, type TickRecord } from './schedules.js';

export interface StartSchedulerOptions {
  /**
   * Ticks this process runs at once (of different schedules: a tick of a schedule whose batch is
   * still being enqueued by an earlier tick is skipped). A tick mostly reads a manifest and writes
   * Redis.
   * @default 2
   */
  concurrency?: number;
  /** For uploads of local images. Default: one made from the config. */
  fal?: FalCaller;
  /** The HTTP client for manifest URLs. Default: the global fetch. */
  fetch?: typeof fetch;
  /** Told of every tick this process ran, with its record. */
  onTick?: (name: string, record: TickRecord) => void;
  /**
   * How long a cached upload URL found served by one tick is trusted by the next ticks of this
   * process without a check (a HEAD to fal storage). The cache entry itself dies inside fal's
   * retention, so this only bounds how long a file fal lost early goes unnoticed; shorter checks
   * every cached image of a schedule more often.
   * @default 24 h
   */
  uploadRecheckMs?: number;
}

export interface SchedulerCounts {
  ok: number;
  failed: number;
  skipped: number;
  /** Ticks due while no worker could run them, stood in for by a late tick (recorded as missed). */
  missed: number;
}

export interface SchedulerHandle {
  counts(): SchedulerCounts;
  /** Stops taking ticks; a tick running gets `graceMs` (default config.graceMs) to finish, then is interrupted (and recorded as such). */
  close(graceMs?: number): Promise<void>;
  readonly closed: Promise<void>;
}

const SHUTDOWN = 'falbatch: scheduler shutting down';
const UPLOAD_RECHECK_MS = 24 * HOUR;

/** The records of the ticks a late tick stood in for (the first MISSED_RECORDS; its own record counts them all). */
function missedRecords(late: TickRecord, times: readonly number[]): TickRecord[] {
  const reason =
    `no work process took this tick when it was due (Redis unreachable, or none running): ` +
    `the tick due ${new Date(late.tick).toISOString()} ran late, at ${new Date(late.at).toISOString()}, in its place`;
  return times.slice(0, MISSED_RECORDS).map((tick) => tickRecord({ tick, at: late.at, outcome: 'missed', reason, batch: late.batch, worker: late.worker }));
}

/** `repeat:<schedule>:<due ms>`: BullMQ's id for a scheduler's job; the due time is its last part. */
function dueTimeOf(job: Job): number | undefined {
  const due = Number(job.id?.slice(job.id.lastIndexOf(':') + 1));
  return Number.isFinite(due) && due > 0 ? due : undefined;
}

/**
 * Serves the schedule ticks queue: every `work` process runs one, and BullMQ's job scheduler makes
 * one job per due time, so each tick runs once however many processes serve it. The next tick is
 * scheduled when this one starts, so a tick that fails (or a process that dies mid-tick) never
 * stops the schedule; ticks are not retried (the next tick is the retry, and enqueueing is
 * idempotent). A tick missed while no worker ran (or Redis was unreachable) is run once, late, when
 * one can: BullMQ then schedules the next tick from that moment, and the ticks due meanwhile, which
 * never run, are recorded as missed (see missedTicks).
 */
export async function startScheduler(ctx: FalbatchContext, options: StartSchedulerOptions = {}): Promise<SchedulerHandle> {
  const { config, clock, log, keys } = ctx;
  const queue = openTicksQueue(ctx);
  const counts: SchedulerCounts = { ok: 0, failed: 0, skipped: 0, missed: 0 };
  // Ticks over an unchanged manifest cost a read: cached uploads are not checked at every tick.
  const checkedUploads = createCheckedUploads(options.uploadRecheckMs ?? UPLOAD_RECHECK_MS);

  const processor = async (job: Job<ScheduleDefinition>, _token?: string, signal?: AbortSignal): Promise<TickRecord | undefined> => {
    const name = job.repeatJobKey ?? job.data.name;
    // Read after BullMQ scheduled the next tick (when this job started): its due time bounds the missed ones.
    const schedule = await currentSchedule(queue, name);
    if (!schedule) {
      log.info(`schedule ${name}: removed; its tick is not run`);
      return undefined;
    }
    const scheduledAt = dueTimeOf(job) ?? clock.now();
    const missed = missedTicks(schedule.timing, scheduledAt, schedule.next ?? (job.processedOn ?? clock.now()) + 1);
    const record = await runScheduleTick(ctx, schedule.definition, {
      scheduledAt,
      signal,
      checkedUploads,
      ...(options.fal ? { fal: options.fal } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    if (missed.count > 0) record.missed = missed.count;
    await recordTick(ctx, queue, name, record, missedRecords(record, missed.times));
    counts[record.outcome]++;
    counts.missed += missed.count;
    if (missed.count > 0) {
      const first = new Date(missed.times[0] as number).toISOString();
      log.warn(
        `schedule ${name}: ${missed.more ? 'at least ' : ''}${missed.count} tick${missed.count === 1 ? '' : 's'} due from ${first} missed (no work process could take them: Redis unreachable, or none running); ` +
          `the tick due ${new Date(scheduledAt).toISOString()} ran late in their place`,
        { schedule: name, missed: missed.count },
      );
    }
    const what =
      record.outcome === 'ok'
        ? `${record.rows} rows read, ${record.added} added, ${record.present} already present, ${record.rejected} rejected` +
          (record.deferred > 0 ? `, ${record.deferred} left for later ticks (${record.capped ?? 'capped'})` : '') +
          (record.spend ? `, forecast ${record.spend.amount} ${record.spend.currency}` : '')
        : (record.reason ?? '');
    const line = `schedule ${name}: tick ${new Date(scheduledAt).toISOString()} ${record.outcome}: ${what}`;
    const fields = { schedule: name, batch: record.batch, tick: job.id, ms: record.ms };
    if (record.outcome === 'failed') log.warn(line, fields);
    else log.info(line, fields);
    options.onTick?.(name, record);
    return record;
  };

  const TicksWorker = bullmq().Worker;
  const worker = new TicksWorker<ScheduleDefinition, TickRecord | undefined>(keys.ticksQueueName, processor, {
    connection: ctx.redis,
    prefix: keys.bullPrefix,
    concurrency: options.concurrency ?? 2,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.lockDurationMs,
    // A tick whose process died is run once more by another (enqueueing resumes, nothing is paid twice).
    maxStalledCount: 1,
  });
  worker.on('error', (error) => {
    // Redis out of memory: the row worker of the same `work` process says it once and plainly
    // (redis-memory-pause.ts); BullMQ's refused moves here (every few seconds) are not logged one by one.
    if (isRedisOutOfMemory(error)) log.debug('scheduler error', { error: ctx.scrub(error.message) });
    else reportRedisError(ctx.redis, log, 'scheduler', error, ctx.scrub);
  });
  worker.on('failed', (job, error) => {
    if (job) log.warn(`schedule ${job.repeatJobKey ?? job.data.name}: tick failed: ${ctx.scrub(error.message)}`);
  });
  await worker.waitUntilReady();

  const closer = closeOnce(async (graceMs) => {
    await closeWithinGrace(worker, {
      graceMs,
      clock,
      reason: SHUTDOWN,
      onExpired: () => log.warn(`grace period of ${graceMs} ms over: interrupting the schedule tick running`),
    });
    await queue.close();
  });
  return {
    closed: closer.closed,
    counts: () => ({ ...counts }),
    close: (graceMs = config.graceMs) => closer.close(graceMs),
  };
}
