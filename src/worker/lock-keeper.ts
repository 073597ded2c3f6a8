import type { FalbatchContext } from '../context.js';

// Keeps a job's lock alive if it is still this delivery's. PEXPIRE needs no room, so Redis out
// of memory accepts it, where BullMQ's own renewal (a SET) is refused.
// KEYS: the job's lock. ARGV: token, lock duration (ms).
const KEEP_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

interface LockScripts {
  falbatchKeepLock(lock: string, token: string, ms: number): Promise<number>;
}

/**
 * The locks of the rows this worker holds, kept alive while Redis is out of memory: BullMQ cannot
 * renew them then, and a lock that runs out hands its row to a second delivery (and fills the log
 * with "Missing lock" once Redis has room again), though this worker still holds the row.
 */
export interface LockKeeper {
  track(jobId: string, token: string | undefined): void;
  untrack(jobId: string): void;
  /** Extends every tracked lock still held by its token by the lock duration. */
  keep(): Promise<void>;
}

export function createLockKeeper(ctx: Pick<FalbatchContext, 'redis' | 'keys'>, lockDurationMs: number): LockKeeper {
  const { redis, keys } = ctx;
  if (!('falbatchKeepLock' in redis)) redis.defineCommand('falbatchKeepLock', { numberOfKeys: 1, lua: KEEP_LOCK });
  const scripts = redis as unknown as LockScripts;
  const held = new Map<string, string>();
  return {
    track(jobId, token) {
      if (token !== undefined) held.set(jobId, token);
    },
    untrack(jobId) {
      held.delete(jobId);
    },
    async keep() {
      await Promise.all([...held].map(([jobId, token]) => scripts.falbatchKeepLock(keys.jobLock(jobId), token, lockDurationMs).catch(() => 0)));
    },
  };
}
