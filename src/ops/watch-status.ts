import type { FalbatchContext } from '../context.js';
import { BatchLostError, BatchNotFoundError } from '../errors.js';
import { SECOND } from '../time.js';
import { getStatus, listBatches, type BatchStatus, type GetStatusOptions } from './status.js';

export interface WatchStatusOptions extends GetStatusOptions {
  /** The batch to watch. Left out: every batch of the namespace not finished yet (and batches that appear while watching). */
  batch?: string | undefined;
  /** How often to look. Each look is O(1) per batch (see getStatus). @default 2 s */
  intervalMs?: number;
  /** Stops the watch (Ctrl-C): it ends with one last snapshot, `interrupted`. */
  signal?: AbortSignal | undefined;
  /** Every snapshot, the last one with `final` set. */
  onSnapshot?: (statuses: BatchStatus[], final: boolean) => void;
}

export interface WatchStatusResult {
  /**
   * The watched batches at the end: the one batch, or those that were not finished when the watch
   * began (or appeared since); every batch of the namespace when none was left to watch.
   */
  statuses: BatchStatus[];
  /** Stopped by the signal before the batches finished. */
  interrupted: boolean;
}

/**
 * Follows one batch, or every unfinished batch, until it has finished (every row ended, no producer
 * writing) or the signal stops it. A batch that goes on being paused keeps the watch going: it is
 * shown as paused. Throws BatchLostError when a watched batch vanishes from Redis (flushed, or
 * restarted without persistence).
 */
export async function watchStatus(ctx: FalbatchContext, options: WatchStatusOptions = {}): Promise<WatchStatusResult> {
  const intervalMs = options.intervalMs ?? 2 * SECOND;
  const statusOptions: GetStatusOptions = options.price ? { price: options.price } : {};
  const watched = new Set<string>();
  let first = true;
  let last: BatchStatus[] = [];

  const look = async (): Promise<BatchStatus[]> => {
    if (options.batch !== undefined) {
      try {
        return [await getStatus(ctx, options.batch, statusOptions)];
      } catch (error) {
        if (!first && error instanceof BatchNotFoundError) throw new BatchLostError(options.batch);
        throw error;
      }
    }
    const all = await listBatches(ctx, statusOptions);
    const present = new Set(all.map((status) => status.batch));
    for (const name of watched) if (!present.has(name)) throw new BatchLostError(name);
    for (const status of all) if (!status.finished) watched.add(status.batch);
    // Nothing to follow: the namespace as it is, once.
    if (first && watched.size === 0) return all;
    return all.filter((status) => watched.has(status.batch)).reverse();
  };

  for (;;) {
    if (options.signal?.aborted) {
      // One more look, so the last snapshot is up to date; the previous one if Redis fails it.
      if (!first) last = await look().catch(() => last);
      options.onSnapshot?.(last, true);
      return { statuses: last, interrupted: true };
    }
    last = await look();
    const done = last.every((status) => status.finished) || (options.batch === undefined && watched.size === 0);
    first = false;
    options.onSnapshot?.(last, done);
    if (done) return { statuses: last, interrupted: false };
    try {
      await ctx.clock.sleep(intervalMs, options.signal);
    } catch (error) {
      if (!options.signal?.aborted) throw error;
    }
  }
}
