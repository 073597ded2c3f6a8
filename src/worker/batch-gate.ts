import type { FalbatchContext } from '../context.js';
import { CONTROL_FIELDS, OPERATOR_CANCEL, controlFrom, holdOf, spendOf, type BatchControl, type BatchHold } from '../queue/batch-control.js';
import type { RowJobData } from '../queue/row-job.js';
import { parseSavedRequest, type SavedRequest } from '../results/result-store.js';

/** How often a worker looks whether the batches of its rows in flight were cancelled. */
export const CANCEL_SWEEP_MS = 500;

/**
 * What a worker asks of a batch's control before calling fal for one of its rows, and how rows in
 * flight learn that their batch was cancelled (by another process, on another machine): the gate
 * reads the cancel flags of the batches this worker is calling every CANCEL_SWEEP_MS, one
 * pipelined read for all of them, and tells `onCancelled` once per row. Polling, not pub/sub: no
 * extra connection, nothing lost while Redis reconnects, and nothing done while no row is in flight.
 */
export interface BatchGate {
  /**
   * Whether a row may be called now: undefined, or what holds its batch (see holdFor). One round
   * trip. A row's attempt asks the same in its begin script (gated), without this extra trip.
   */
  check(jobId: string, data: RowJobData): Promise<BatchHold | undefined>;
  /** Registers a row this worker is calling; the function returned forgets it. */
  watch(jobId: string, batch: string): () => void;
  close(): void;
}

/** What a gated begin answered about a batch that is not plainly running (see RowStart `control`). */
export interface ControlView {
  control: BatchControl;
  billed: string | null | undefined;
  inferenceMs: string | null | undefined;
  request: SavedRequest | undefined;
}

/**
 * What holds a row of the batch, if anything: its control, its spend against its cap. A row whose
 * fal request was already made (saved on its job or in Redis) is not held by a pause or the spend
 * cap: it is paid for (or running at fal) anyway, and reading its answer is free.
 */
export function holdFor(batch: string, data: RowJobData, view: ControlView): BatchHold | undefined {
  const { control } = view;
  if (control.state === 'running' && !control.cap) return undefined;
  const hold = holdOf(batch, control, control.cap ? spendOf(control.cap.price, view.billed, view.inferenceMs) : undefined);
  if (!hold || hold.kind === 'cancelled') return hold;
  const made = data.rid !== undefined || view.request?.kind === 'request';
  return made ? undefined : hold;
}

export function createBatchGate(ctx: FalbatchContext, onCancelled: (jobId: string, reason: string) => void, sweepMs: number = CANCEL_SWEEP_MS): BatchGate {
  const watched = new Map<string, string>();
  const told = new Set<string>();
  const sweep = async (): Promise<void> => {
    const batches = [...new Set(watched.values())];
    if (batches.length === 0) return;
    const pipeline = ctx.redis.pipeline();
    for (const batch of batches) pipeline.hmget(ctx.keys.batch(batch).meta, 'ctl_state', 'ctl_reason');
    const replies = (await pipeline.exec()) ?? [];
    batches.forEach((batch, i) => {
      const [state, reason] = (replies[i]?.[1] as Array<string | null> | undefined) ?? [];
      if (state !== 'cancelled') return;
      for (const [jobId, of] of watched) {
        if (of !== batch || told.has(jobId)) continue;
        told.add(jobId);
        onCancelled(jobId, reason ?? OPERATOR_CANCEL);
      }
    });
  };
  // A timer of its own, unref'd: it never keeps a process alive, even one whose worker failed to start.
  let sweeping = false;
  const timer = setInterval(() => {
    if (sweeping || watched.size === 0) return;
    sweeping = true;
    // Redis not answering this time: the next sweep asks again.
    sweep()
      .catch(() => undefined)
      .finally(() => {
        sweeping = false;
      });
  }, sweepMs);
  timer.unref();

  return {
    async check(jobId, data) {
      const keys = ctx.keys.batch(data.b);
      const replies =
        (await ctx.redis
          .multi()
          .hmget(keys.meta, ...CONTROL_FIELDS)
          .hmget(keys.stats, 'billed', 'inference_ms')
          .get(ctx.keys.request(jobId))
          .exec()) ?? [];
      const [billed, inferenceMs] = (replies[1]?.[1] as Array<string | null> | undefined) ?? [];
      return holdFor(data.b, data, {
        control: controlFrom((replies[0]?.[1] as Array<string | null> | undefined) ?? []),
        billed,
        inferenceMs,
        request: parseSavedRequest(replies[2]?.[1] as string | null | undefined),
      });
    },
    watch(jobId, batch) {
      watched.set(jobId, batch);
      return () => {
        watched.delete(jobId);
        told.delete(jobId);
      };
    },
    close() {
      clearInterval(timer);
    },
  };
}
