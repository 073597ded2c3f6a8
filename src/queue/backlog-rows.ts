import type { ChainableCommander } from 'ioredis';
import type { FalbatchContext } from '../context.js';

/**
 * How many rows a batch's backlog holds (see queue/backlog.ts): its meta's `backlog_left`
 * counter, or, for a list written before rows were packed (no counter), its length (one row an
 * element). Apart from backlog.ts so that `status` reads it without loading the top-up.
 */
function rowsLeft(left: string | null | undefined, elements: number): number {
  if (elements === 0) return 0;
  return left === null || left === undefined ? elements : Math.max(0, Number(left));
}

/** Queues the two commands whose replies backlogRowsOf reads: the batch's backlog length and its rows counter. */
export function backlogRowsIn(ctx: FalbatchContext, commands: ChainableCommander, batch: string): ChainableCommander {
  const keys = ctx.keys.batch(batch);
  return commands.llen(keys.backlog).hget(keys.meta, 'backlog_left');
}

/** Rows in a batch's backlog, from the replies of backlogRowsIn. */
export function backlogRowsOf(elements: unknown, left: unknown): number {
  return rowsLeft(left as string | null | undefined, Number(elements ?? 0));
}
