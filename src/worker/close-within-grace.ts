import type { Worker } from 'bullmq';
import type { Clock } from '../time.js';

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
