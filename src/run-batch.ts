import { resolve } from 'node:path';
import type { FalbatchContext } from './context.js';
import { ResultsNotWrittenError } from './errors.js';
import type { FalCaller } from './fal/fal-caller.js';
import { enqueueManifest, type EnqueueOptions, type EnqueueSummary } from './queue/enqueue.js';
import { isS3Url, parseS3Url } from './storage/s3-url.js';
import { checkOutput, checkWritable, exportResults, type ExportSummary } from './results/export.js';
import { hfMetadataFolder, hfMetadataPath, type HfMetadataOptions } from './results/hf-metadata.js';
import type { Price } from './fal/price.js';
import { writeCaptions, type CaptionsSummary } from './results/write-captions.js';
import { pausedReason, resumeQueue } from './queue/queue-pause.js';
import { getStatus, waitForBatch, type BatchStatus } from './ops/status.js';
import { startWorker } from './worker/start-worker.js';
import type { WorkerEvent } from './worker/worker-events.js';

export interface RunBatchOptions extends EnqueueOptions {
  /** Where to write the results (`.csv`, `.jsonl` or `.parquet`; `X.errors.csv` and `X.report.json` go beside it). */
  out: string;
  /** Also write Hugging Face imagefolder metadata (see ExportOptions.hfMetadata). */
  hfMetadata?: HfMetadataOptions | undefined;
  /** What the endpoint costs: the report estimates the batch's cost. */
  price?: Price | undefined;
  /** fal requests in flight. Default: config.concurrency. */
  concurrency?: number;
  /** The worker's fal caller, and the producer's for uploading local images. Default: one made from the config. */
  fal?: FalCaller;
  onEnqueued?: (summary: EnqueueSummary) => void;
  onStatus?: (status: BatchStatus) => void;
  /** Told what the run is doing now ("enqueueing m.csv", "waiting for the batch to finish"). */
  onStep?: (step: string) => void;
}

export interface RunBatchSummary {
  enqueue: EnqueueSummary;
  status: BatchStatus;
  export: ExportSummary;
  /** Caption files written beside the local images, when `captions` was given. */
  captions: CaptionsSummary | undefined;
  /**
   * The run stopped early: by a signal (`interrupted`), or because fal refused the account or the
   * batch reached its spend cap (`paused`: `status.pausedBy` says which).
   */
  stopped: 'interrupted' | 'paused' | undefined;
}

/**
 * The whole job in one process: enqueue the manifest, work its rows here, wait until the batch is
 * finished (or paused, or interrupted), and export. Whatever happens, what was done stays in Redis:
 * running the same command again picks up where this one stopped.
 */
export async function runBatch(ctx: FalbatchContext, options: RunBatchOptions): Promise<RunBatchSummary> {
  // A queue paused on a fal account error (bad key, no balance): running again is the user saying
  // it is fixed. If it is not, the first request pauses it again, and nothing is lost either way.
  if ((await ctx.redis.exists(ctx.keys.paused)) === 1) {
    ctx.log.info(`resuming the queue, paused earlier: ${await pausedReason(ctx)}`);
    await resumeQueue(ctx);
  }
  // Before anything is paid for: the results must have somewhere to go.
  await checkOutput(options.out, ctx.objects);
  if (options.hfMetadata) {
    const filesRoot = ctx.config.filesRoot ? resolve(ctx.config.filesRoot) : undefined;
    const metadataPath = hfMetadataPath(
      await hfMetadataFolder({ manifest: isS3Url(options.manifest) ? options.manifest : resolve(options.manifest), filesRoot }, options.hfMetadata.folder),
    );
    if (isS3Url(metadataPath)) await ctx.objects().checkBucket(parseS3Url(metadataPath).bucket, 'write to');
    else await checkWritable(metadataPath);
  }
  // The worker starts while the manifest is read (their round trips to Redis overlap), so rows are
  // worked while the rest of the manifest streams in. It serves this run's batch only: other
  // batches' rows are left to `falbatch work` (and to their own runs), so a run returns as soon as
  // its own rows have ended, having called nothing for anyone else.
  let batch: string | undefined;
  const idle = idleWake(ctx);
  const starting = startWorker(ctx, {
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.fal ? { fal: options.fal } : {}),
    onlyBatch: () => batch,
    onEvent: idle.onEvent,
  });
  // Its failure is the run's (awaited below); until then it must not count as unhandled.
  starting.catch(() => undefined);
  let enqueue: EnqueueSummary;
  let status: BatchStatus;
  let stopped: RunBatchSummary['stopped'];
  try {
    options.onStep?.(`enqueueing ${options.manifest}`);
    enqueue = await enqueueManifest(ctx, {
      ...options,
      workerStarting: starting,
      onBatch: (name) => {
        batch = name;
        options.onBatch?.(name);
      },
    });
  } catch (error) {
    await (await starting.catch(() => undefined))?.close();
    throw error;
  }
  const worker = await starting;
  options.onEnqueued?.(enqueue);
  let closing: Promise<void> | undefined;
  let finished = false;
  try {
    options.onStep?.('waiting for the batch to finish');
    status = await waitForBatch(ctx, enqueue.batch, {
      intervalMs: 100,
      sleep: idle.sleep,
      ...(options.price ? { price: options.price } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onStatus ? { onProgress: options.onStatus } : {}),
    });
    finished = status.finished;
    if (!status.finished && status.paused !== undefined) stopped = 'paused';
  } catch (error) {
    if (!options.signal?.aborted) throw error;
    stopped = 'interrupted';
  } finally {
    options.onStep?.('rows in flight finishing, or going back to the queue');
    closing = worker.close();
    // Finished: every row has ended, none is in flight, so the worker closes while the results are
    // written. Otherwise the export waits for the rows in flight to finish or go back.
    if (!finished) await closing;
  }
  try {
    status = await getStatus(ctx, enqueue.batch, options.price ? { price: options.price } : {});
    return await finishRun(ctx, options, enqueue, status, stopped);
  } finally {
    await closing;
  }
}

/**
 * The wait for the batch, cut short when the run's own worker has no row left in flight (its last
 * row may have just ended): the run sees its batch finished at once rather than at the next look.
 */
function idleWake(ctx: FalbatchContext): { onEvent: (event: WorkerEvent) => void; sleep: (ms: number, signal?: AbortSignal) => Promise<void> } {
  let inFlight = 0;
  let wake: (() => void) | undefined;
  return {
    onEvent(event) {
      if (event.type === 'row-started') inFlight++;
      else if (event.type === 'row-settled' && --inFlight === 0) wake?.();
    },
    async sleep(ms, signal) {
      const early = new AbortController();
      wake = () => early.abort();
      try {
        await ctx.clock.sleep(ms, signal ? AbortSignal.any([signal, early.signal]) : early.signal);
      } catch (error) {
        if (signal?.aborted || !early.signal.aborted) throw error;
      } finally {
        wake = undefined;
      }
    },
  };
}

/** After the wait: caption files, then the results. */
async function finishRun(
  ctx: FalbatchContext,
  options: RunBatchOptions,
  enqueue: EnqueueSummary,
  status: BatchStatus,
  stopped: RunBatchSummary['stopped'],
): Promise<RunBatchSummary> {
  // Caption files first: metadata.jsonl is read from them, so it says exactly what they hold. (A
  // file that cannot be written is listed, not thrown: the results file is still written.)
  let captions: CaptionsSummary | undefined;
  if (options.captions) {
    options.onStep?.('writing caption files beside the images');
    captions = await writeCaptions(ctx, { batch: enqueue.batch, captions: options.captions });
  }
  options.onStep?.(`writing the results to ${isS3Url(options.out) ? options.out : resolve(options.out)}`);
  let exported: ExportSummary;
  try {
    exported = await exportResults(ctx, {
      batch: enqueue.batch,
      out: options.out,
      ...(options.hfMetadata ? { hfMetadata: options.hfMetadata } : {}),
      ...(options.price ? { price: options.price } : {}),
      ...(options.captions ? { captionExt: options.captions.ext } : {}),
    });
  } catch (error) {
    // Everything is paid for and in Redis: the message says so, with the counts and the export command.
    if (!(error instanceof ResultsNotWrittenError)) throw error;
    const counts = `${status.ok} ok, ${status.failed} failed, ${status.rejected} rejected`;
    const ran = status.finished
      ? `Batch ${enqueue.batch} finished: ${counts}`
      : `Batch ${enqueue.batch} stopped before the end (${counts}, ${status.pending} pending; run the same command again to finish it)`;
    throw new ResultsNotWrittenError(error.reason, { batch: error.batch, out: error.out, exportCommand: error.exportCommand, ran }, { cause: error.cause });
  }
  return { enqueue, status, export: exported, stopped, captions };
}
