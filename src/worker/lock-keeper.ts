import type { FalbatchContext } from '../context.js';
import { scriptsOn } from '../queue/redis-scripts.js';

/**
 * The locks of the rows this worker holds, kept alive while Redis is out of memory: BullMQ cannot
 * renew them then, and a lock that runs out hands its row to a second delivery (and fills the log
 * with "Missing lock" once Redis has room again), though this worker still holds the row. It
 * extends them with PEXPIRE (redis-scripts/compare-and-pexpire.lua), which Redis out of memory
 * accepts, where BullMQ's own renewal (a SET) is refused.
 */
export interface LockKeeper {
  track(jobId: string, token: string | undefined): void;
  untrack(jobId: string): void;
  /** Extends every tracked lock still held by its token by the lock duration. */
  keep(): Promise<void>;
}

export function createLockKeeper(ctx: Pick<FalbatchContext, 'redis' | 'keys'>, lockDurationMs: number): LockKeeper {
  const { redis, keys } = ctx;
  const scripts = scriptsOn(redis);
  const held = new Map<string, string>();
  return {
    track(jobId, token) {
      if (token !== undefined) held.set(jobId, token);
    },
    untrack(jobId) {
      held.delete(jobId);
    },
    async keep() {
      await Promise.all([...held].map(([jobId, token]) => scripts.falbatchCompareAndPexpire(keys.jobLock(jobId), token, lockDurationMs).catch(() => 0)));
    },
  };
}
