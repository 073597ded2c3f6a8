import pLimit from 'p-limit';
import type { FalbatchContext } from '../context.js';
import { PARKED_BEYOND_MS } from './batch-control.js';
import { bullmq } from './cjs-packages.js';

/** Jobs promoted at once by wakeBatch. */
const PROMOTE_AT_ONCE = 32;

/**
 * Moves a batch's delayed jobs back to the wait list: `parked` ones only (held by a pause or the
 * spend cap, see PARK_MS), or `all` (retry backoffs and re-reads too: a cancelled batch's rows end
 * now rather than when their delay runs out). Jobs of rows that ended stay (see endCancelled in
 * start-worker.ts). O(delayed jobs of the namespace) to find them, one promote per job.
 */
export async function wakeBatch(ctx: FalbatchContext, batch: string, which: 'parked' | 'all'): Promise<number> {
  const ids = await delayedJobIds(ctx, batch, which);
  const results = ctx.keys.batch(batch).results;
  const limit = pLimit(PROMOTE_AT_ONCE);
  const promoted = await Promise.all(
    ids.map((id) =>
      limit(async () => {
        const job = await bullmq().Job.fromId(ctx.queue, id);
        // A row that ended (cancelled: its job is kept parked for `retry`) stays parked.
        if (!job || (await ctx.redis.hexists(results, (job.data as { k?: string }).k ?? '')) === 1) return 0;
        // No longer delayed (its time came, or another resume took it): nothing to do.
        return job.promote().then(
          () => 1,
          () => 0,
        );
      }),
    ),
  );
  return promoted.reduce<number>((sum, n) => sum + n, 0);
}

/**
 * The ids of a batch's jobs in BullMQ's delayed set, all of them or only the parked ones (held by
 * a pause, the spend cap, or ended by a cancel and kept for `retry`). O(delayed jobs of the
 * namespace): a ZSCAN matching the batch's job ids.
 */
export async function delayedJobIds(ctx: FalbatchContext, batch: string, which: 'parked' | 'all'): Promise<string[]> {
  const delayed = ctx.queue.keys['delayed'];
  if (delayed === undefined) return [];
  const parkedFrom = (ctx.clock.now() + PARKED_BEYOND_MS) * 0x1000;
  const ids: string[] = [];
  let cursor = '0';
  do {
    // Job ids are `<batch>/<key>` (row-key.ts), and batch names hold no glob characters.
    const [next, entries] = await ctx.redis.zscan(delayed, cursor, 'MATCH', `${batch}/*`, 'COUNT', 1000);
    cursor = next;
    for (let i = 0; i + 1 < entries.length; i += 2) {
      if (which === 'all' || Number(entries[i + 1]) >= parkedFrom) ids.push(entries[i] as string);
    }
  } while (cursor !== '0');
  return ids;
}
