import type { Job } from 'bullmq';
import type { FalbatchContext } from '../context.js';
import { withoutRequestState, type RowJobData } from '../queue/row-job.js';
import { isMovedByQueue, type RowActions } from './apply-action.js';
import type { BatchGate } from './batch-gate.js';
import type { FlightTracker } from './fal-load.js';
import { jobIdOf } from './job-id.js';
import type { LockKeeper } from './lock-keeper.js';
import type { OwnBatchFilter } from './own-batch.js';
import { createPhaseReporter } from './phase-reporter.js';
import { processRow, type RowOutcome, type RowProcessorDeps } from './process-row.js';
import type { RedisMemoryPause } from './redis-memory-pause.js';
import { decideRowAction, type AttemptEnd, type RowAction } from './row-decision.js';
import type { WorkerEventListener } from './worker-events.js';

/** Starts the abort reason of a row whose batch was cancelled (`falbatch cancel`); the batch's reason follows. */
export const CANCELLED = 'falbatch: batch cancelled: ';

/** The cancel reason of an aborted attempt, when it was aborted because its batch was cancelled. */
function cancelReason(signal: AbortSignal | undefined): string | undefined {
  const reason: unknown = signal?.reason;
  return typeof reason === 'string' && reason.startsWith(CANCELLED) ? reason.slice(CANCELLED.length) : undefined;
}

const GIVE_BACK: RowAction = { kind: 'give-back' };
const LEAVE_LOCKED: RowAction = { kind: 'leave-locked' };

export interface RowJobProcessorParts {
  deps: RowProcessorDeps;
  actions: Pick<RowActions, 'apply'>;
  gate: Pick<BatchGate, 'watch'>;
  tracker: FlightTracker;
  locks: Pick<LockKeeper, 'track' | 'untrack'>;
  memory: Pick<RedisMemoryPause, 'note' | 'whenWritable'>;
  ownBatch: Pick<OwnBatchFilter, 'owns'> | undefined;
  /** Told when a row starts and settles (metrics). */
  tell: WorkerEventListener;
}

/**
 * What the worker runs for each job: one attempt at its row (process-row.ts), the action decided
 * from how it ended (row-decision.ts), applied to the job (apply-action.ts).
 */
export function createRowJobProcessor(
  ctx: FalbatchContext,
  parts: RowJobProcessorParts,
): (job: Job<RowJobData>, token?: string, signal?: AbortSignal) => Promise<void> {
  const { clock, config, scrub } = ctx;
  const { deps, actions, gate, tracker, locks, memory, ownBatch, tell } = parts;
  const settle = (job: Job<RowJobData>, token: string | undefined, signal: AbortSignal | undefined, end: AttemptEnd): Promise<void> =>
    actions.apply(
      job,
      token,
      decideRowAction(end, {
        data: job.data,
        attempt: job.attemptsMade + 1,
        maxAttempts: job.opts.attempts ?? 1,
        now: clock.now(),
        aborted: signal?.aborted ?? false,
        cancelReason: cancelReason(signal),
        config,
        scrub,
      }),
    );

  const attemptRow = async (job: Job<RowJobData>, token?: string, signal?: AbortSignal): Promise<void> => {
    const jobId = jobIdOf(job);
    // A batch's pause, cancel and spend cap are asked in the row's begin script (gated), which
    // answers `{ held }` below: no round trip of their own.
    const unwatch = gate.watch(jobId, job.data.b);
    // The row's fal phase on its job's progress, for dashboards: throttled to a few writes per row.
    const phases = createPhaseReporter((phase) => job.updateProgress(phase), clock);
    tracker.begin(jobId, clock.now());
    let held: RowOutcome | undefined;
    try {
      let outcome: RowOutcome;
      try {
        outcome = await processRow(
          {
            jobId,
            data: job.data,
            attempt: job.attemptsMade + 1,
            signal,
            saveState: (state) => job.updateData({ ...withoutRequestState(job.data), ...state }),
            noteState: (state) => {
              job.data = { ...job.data, ...state };
            },
            reportPhase: (phase) => {
              tracker.phase(jobId, phase, clock.now());
              phases.report(phase);
            },
          },
          deps,
        ).finally(() => {
          phases.stop();
          tracker.end(jobId);
        });
      } catch (error) {
        return await settle(job, token, signal, { error });
      }
      // Held by its batch's control: parked or ended once the batch is no longer watched for it.
      if (typeof outcome === 'object') held = outcome;
      else {
        try {
          await settle(job, token, signal, { outcome });
        } catch (error) {
          // Moving the row back failed: decided as a failed attempt.
          if (isMovedByQueue(error)) throw error;
          await settle(job, token, signal, { error });
        }
      }
    } finally {
      unwatch();
    }
    if (held !== undefined) await settle(job, token, signal, { outcome: held });
  };

  // A Redis that refuses writes is no verdict on the row: wait for room, and begin the row again
  // (what was paid is saved, or kept in hand until it is: nothing is submitted twice); BullMQ sees
  // nothing of it, so no attempt is spent.
  return async (job, token, signal) => {
    tell({ type: 'row-started' });
    try {
      if (ownBatch && !ownBatch.owns(job.data.b)) return await actions.apply(job, token, GIVE_BACK);
      const jobId = jobIdOf(job);
      locks.track(jobId, token);
      try {
        for (;;) {
          try {
            await attemptRow(job, token, signal);
            // BullMQ ends the job next, a write too: after Redis has room again.
            await memory.whenWritable(signal).catch(() => undefined);
            return;
          } catch (error) {
            if (!memory.note(error)) throw error;
            try {
              await memory.whenWritable(signal);
            } catch {
              return await actions.apply(job, token, LEAVE_LOCKED);
            }
          }
        }
      } finally {
        locks.untrack(jobId);
      }
    } finally {
      tell({ type: 'row-settled' });
    }
  };
}
