import type { FalbatchContext } from '../context.js';
import { topUpQueue } from '../queue/backlog.js';
import { SECOND } from '../time.js';

/** How often an idle worker looks for backlog rows to turn into jobs. */
export const REFILL_INTERVAL_MS = SECOND;
/** Least time between two top-ups a worker starts as rows end. */
const REFILL_GAP_MS = 200;

export interface Refiller {
  /** A row ended (the queue has room): top up soon, at most every REFILL_GAP_MS. */
  nudge(): void;
  /** Stops, and resolves once a top-up under way has ended. */
  close(): Promise<void>;
}

/**
 * Keeps the queue topped up from the batches' backlogs while this worker runs (see
 * queue/backlog.ts): once a second, and as rows end. Rows stored by a producer that has long
 * exited (or that runs no worker) become jobs this way. One top-up at a time per process; across
 * processes, the backlog lock lets one through.
 */
/** `onError` is told a failed top-up first; one it says was told elsewhere (true: Redis out of memory) is not logged. */
export function startRefiller(ctx: FalbatchContext, intervalMs: number = REFILL_INTERVAL_MS, onError?: (error: unknown) => boolean): Refiller {
  let running = false;
  let lastAt = Number.NEGATIVE_INFINITY;
  let closed = false;
  let current: Promise<void> = Promise.resolve();
  const topUp = async (): Promise<void> => {
    if (running || closed) return;
    running = true;
    lastAt = ctx.clock.now();
    try {
      await topUpQueue(ctx);
    } catch (error) {
      // Redis not answering this time: the next tick tries again.
      if (!onError?.(error)) ctx.log.warn('could not top the queue up from the backlog', { error: ctx.scrub((error as Error).message) });
    } finally {
      running = false;
    }
  };
  const run = (): Promise<void> => (current = topUp());
  // A timer of its own, unref'd: it never keeps a process alive.
  const timer = setInterval(() => void run(), intervalMs);
  timer.unref();
  void run();
  return {
    nudge() {
      if (!running && ctx.clock.now() - lastAt >= REFILL_GAP_MS) void run();
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await current;
    },
  };
}
