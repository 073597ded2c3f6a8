import { setMaxListeners } from 'node:events';
import type { FalbatchContext } from '../context.js';
import { SECOND } from '../time.js';

/** The first rest after a lap of the queue that found no row of the worker's batch; it doubles, up to REST_MAX_MS. */
export const REST_MIN_MS = 250;
const REST_MAX_MS = 4 * SECOND;
/** How long a look at the batch's rows left to take is reused (every slot asks it per job given back). */
const LOOK_MS = 200;

/**
 * What a worker that serves one batch only (`falbatch run`) does with the rows of other batches
 * in the shared queue: it gives them back untouched (start-worker moves the job to the back of the
 * queue, no attempt spent, no fal call, nothing written for the row), and decides when to rest
 * rather than take the next job:
 *
 * - its batch has no row left to take (every row ended or in flight, or it is not known yet):
 *   each slot rests, so a `run` waiting for its last rows does not spin on other batches' jobs;
 * - it does, but a whole lap of the queue (its waiting jobs when the lap began) was other
 *   batches' jobs (its rows wait in a retry's backoff, or in the backlog): it rests too.
 *
 * Rests double while nothing of the batch is found (REST_MIN_MS up to 4 s), and end at close().
 */
export interface OwnBatchFilter {
  /** Whether a job of `batch` is this worker's to call. */
  owns(batch: string): boolean;
  /** A job of another batch was given back: resolves when the slot may take the next job. */
  gaveBack(): Promise<void>;
  close(): void;
}

export function createOwnBatchFilter(ctx: FalbatchContext, own: () => string | undefined): OwnBatchFilter {
  const closing = new AbortController();
  // Every slot of the worker may rest on this one signal at once: more than Node's default of 10
  // listeners is expected, not a leak (each rest removes its own when it ends).
  setMaxListeners(0, closing.signal);
  let rotated = 0;
  let lap: number | undefined;
  let idleLaps = 0;
  let look: { at: number; left: Promise<number> } | undefined;

  /** Rows of the batch not ended and not in flight: waiting somewhere to be taken. */
  const rowsLeft = async (batch: string): Promise<number> => {
    const keys = ctx.keys.batch(batch);
    const [jobs, ended, inFlight] = await Promise.all([ctx.redis.hlen(keys.keys), ctx.redis.hmget(keys.counts, 'ok', 'failed'), ctx.store.inFlight(batch)]);
    return jobs - ended.reduce((sum, n) => sum + Number(n ?? 0), 0) - inFlight;
  };
  const left = (): Promise<number> => {
    const batch = own();
    if (batch === undefined) return Promise.resolve(0);
    const now = ctx.clock.now();
    if (!look || now - look.at >= LOOK_MS) look = { at: now, left: rowsLeft(batch).catch(() => 0) };
    return look.left;
  };
  const rest = async (): Promise<void> => {
    rotated = 0;
    lap = undefined;
    const ms = Math.min(REST_MAX_MS, REST_MIN_MS * 2 ** Math.min(idleLaps, 8));
    idleLaps++;
    await ctx.clock.sleep(ms, closing.signal).catch(() => undefined);
  };

  return {
    owns(batch) {
      if (batch !== own()) return false;
      rotated = 0;
      lap = undefined;
      idleLaps = 0;
      return true;
    },
    async gaveBack() {
      if (closing.signal.aborted) return;
      if ((await left()) <= 0) return rest();
      rotated++;
      lap ??= await ctx.queue.getJobCountByTypes('wait', 'prioritized').catch(() => 0);
      if (rotated >= lap) return rest();
    },
    close() {
      closing.abort();
    },
  };
}
