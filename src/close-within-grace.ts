import type { Worker } from 'bullmq';
import type { Clock } from './time.js';

/**
 * Closes a BullMQ worker gracefully (it stops taking jobs; the running ones finish), but for no
 * longer than `graceMs`: past it, `onExpired` says so and the running jobs are aborted with
 * `reason` (their processors see the signal, and hand back or record what they were doing).
 */
export async function closeWithinGrace(worker: Worker, options: { graceMs: number; clock: Clock; reason: string; onExpired: () => void }): Promise<void> {
  const graceful = worker.close();
  const expired = new AbortController();
  const timer = options.clock.sleep(options.graceMs, expired.signal).then(
    () => true,
    () => false,
  );
  try {
    if (await Promise.race([graceful.then(() => false), timer])) {
      options.onExpired();
      worker.cancelAllJobs(options.reason);
      await graceful;
    }
  } finally {
    expired.abort();
  }
}

/**
 * A close that runs once however often it is asked for, and a promise that settles when it has:
 * the `close()` and `closed` of falbatch's long-running handles (workers, the scheduler).
 */
export function closeOnce(run: (graceMs: number) => Promise<void>): { close(graceMs: number): Promise<void>; readonly closed: Promise<void> } {
  let closing: Promise<void> | undefined;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  return {
    closed,
    close(graceMs) {
      closing ??= run(graceMs).then(resolveClosed);
      return closing;
    },
  };
}
