import type { Job } from 'bullmq';
import type { FalbatchContext } from '../context.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { REQUEST_STATE_FIELDS, type RowJobData } from '../queue/row-job.js';
import { batchControlState } from '../queue/batch-settings.js';
import { delayedJobIds } from '../queue/parked-jobs.js';
import { liftCancel } from './control.js';
import { touchBatch } from '../queue/retention.js';
import { scriptsOn } from '../queue/redis-scripts.js';
import { fingerprintOf } from '../queue/row-keys.js';

export interface RetryFailedOptions {
  batch: string;
  /** Only rows whose error class (the `error_type` of their result) is this, e.g. `result_unavailable`. */
  errorType?: string | undefined;
}

export interface RetryFailedSummary {
  batch: string;
  /** Failed rows put back in the queue. */
  requeued: number;
  /** Of those, rows that keep their paid fal request and only read its result again. */
  rereads: number;
  /** Failed rows that match but whose queue job was already cleaned up (kept for the batch's retention, the newest 10,000): not requeued. */
  missing: number;
  /** The batch was cancelled, and this retry lifted the cancel. */
  uncancelled: boolean;
  /** Why the requeued rows will not be called yet: the batch is paused, or over its spend cap. */
  held: string | undefined;
}

/** Failed jobs read per page. */
const PAGE = 500;

/** Error classes whose request is paid for and whose answer exists at fal: read again, never submitted again. */
const KEEPS_REQUEST = new Set(['result_unavailable']);

/**
 * Puts a batch's failed rows back in the queue (`falbatch retry`), for the workers to process
 * again. A row that failed as `result_unavailable` keeps its request id: fal ran and billed it, so
 * the worker only reads its answer. Every other row is submitted anew, which costs a call.
 *
 * Safe to repeat: a row whose result was forgotten but whose job was not yet moved back (the
 * process died in between) is found again by the next retry.
 */
export async function retryFailed(ctx: FalbatchContext, options: RetryFailedOptions): Promise<RetryFailedSummary> {
  const { batch, errorType } = options;
  if (!(await readBatchMeta(ctx.redis, ctx.keys, batch))) throw await batchNotFound(ctx.redis, batch, ctx.keys);
  const keys = ctx.keys.batch(batch);
  const scripts = scriptsOn(ctx.redis);
  // Rows of a cancelled batch would be cancelled again at once: a retry lifts the batch's cancel.
  const uncancelled = await liftCancel(ctx, batch);
  const summary: RetryFailedSummary = { batch, requeued: 0, rereads: 0, missing: 0, uncancelled, held: undefined };

  // First the matching jobs (the failed list changes as they are moved back), then each one.
  const chosen: Array<Job<RowJobData>> = [];
  const total = await ctx.queue.getFailedCount();
  for (let start = 0; start < total; start += PAGE) {
    const jobs = (await ctx.queue.getFailed(start, start + PAGE - 1)) as Array<Job<RowJobData> | undefined>;
    const mine = jobs.filter((job): job is Job<RowJobData> => job !== undefined && job.data.b === batch);
    const results = await ctx.store.getMany(
      batch,
      mine.map((job) => job.data.k),
    );
    mine.forEach((job, i) => {
      const result = results[i];
      // No result at all: an earlier retry forgot it and stopped before moving the job back.
      const matches =
        result === undefined ? errorType === undefined : result.status === 'failed' && (errorType === undefined || result.error_type === errorType);
      if (matches) chosen.push(job);
    });
  }
  // Rows ended by a cancel keep their jobs parked in the delayed set (not failed: the failed set
  // keeps only the newest 10,000): promoted rather than retried.
  const parked = new Set<Job<RowJobData>>();
  for (const id of await delayedJobIds(ctx, batch, 'parked')) {
    const job = (await ctx.queue.getJob(id)) as Job<RowJobData> | undefined;
    const result = job ? await ctx.store.get(batch, job.data.k) : undefined;
    if (!job || result?.status !== 'failed' || (errorType !== undefined && result.error_type !== errorType)) continue;
    // A job of the row's old content (it was edited since) answers nothing.
    if (fingerprintOf(job.data.k, await ctx.redis.hget(keys.keys, job.data.k)) !== job.data.f) continue;
    parked.add(job);
    chosen.push(job);
  }

  const requeuedKeys = new Set<string>();
  // Rows going back make the batch open again: kept at least the unfinished floor while they run.
  if (chosen.length > 0) await touchBatch(ctx, batch, 'open');
  for (const job of chosen) {
    const result = await ctx.store.get(batch, job.data.k);
    const keep = result !== undefined && KEEPS_REQUEST.has(result.error_type ?? '') && job.data.rid !== undefined;
    const data: RowJobData = { ...job.data };
    for (const field of REQUEST_STATE_FIELDS) if (!(keep && (field === 'rid' || field === 'sub'))) delete data[field];
    await job.updateData(data);
    if ((await scripts.falbatchForgetFailure(keys.results, keys.counts, job.data.k)) === -1) continue;
    if (parked.has(job)) await job.promote();
    else await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    requeuedKeys.add(job.data.k);
    summary.requeued++;
    if (keep) summary.rereads++;
  }
  // A retry is a write to the batch: its retention counts again from now.
  if (chosen.length > 0) await touchBatch(ctx, batch, 'auto');

  // Failed rows that match but have no job left to move back.
  let cursor = '0';
  do {
    const [next, entries] = await ctx.redis.hscan(keys.results, cursor, 'COUNT', 1000);
    cursor = next;
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const key = entries[i] as string;
      if (requeuedKeys.has(key)) continue;
      const result = JSON.parse(entries[i + 1] as string) as { status?: string; error_type?: string };
      if (result.status === 'failed' && (errorType === undefined || result.error_type === errorType)) summary.missing++;
    }
  } while (cursor !== '0');
  summary.held = (await batchControlState(ctx, batch)).hold?.reason;
  return summary;
}
