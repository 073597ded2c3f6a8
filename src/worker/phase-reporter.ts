import { SECOND, type Clock } from '../time.js';
import type { RowPhase } from './process-row.js';

/**
 * A phase is written once it has lasted this long: a row that submits, runs and is read within it
 * costs no write at all, and one that runs longer costs about one per phase.
 */
export const PHASE_SETTLE_MS = 500;
/** A new queue position alone (same phase) is written at most this often. */
export const POSITION_REFRESH_MS = 5 * SECOND;

/** Why a pending write's timer was dropped. */
const STOPPED = new Error('falbatch: phase no longer pending');

export interface PhaseReporter {
  /** A phase seen now; written later if it still holds and differs from what was written. */
  report(phase: RowPhase): void;
  /** The row left the worker: nothing more is written. */
  stop(): void;
}

function sameView(a: RowPhase | undefined, b: RowPhase): boolean {
  return a !== undefined && a.phase === b.phase && (a.phase !== 'queued' || b.phase !== 'queued' || a.position === b.position);
}

/**
 * Reports a row's phases through `write` (BullMQ's job progress: one script, a hash field and an
 * event), throttled so that it costs at most a few writes per row: only a change is written, once
 * it has been pending PHASE_SETTLE_MS (a row whose phases all pass sooner costs nothing); a queue
 * position that merely moved waits POSITION_REFRESH_MS since the last write; one write at a time,
 * the latest phase winning. Failed writes are ignored: progress is for show.
 */
export function createPhaseReporter(write: (phase: RowPhase) => Promise<unknown>, clock: Clock): PhaseReporter {
  let written: RowPhase | undefined;
  let writtenAt = 0;
  let latest: RowPhase | undefined;
  /** Since when `latest` has differed from what is written. */
  let pendingSince: number | undefined;
  let timer: { at: number; controller: AbortController } | undefined;
  let writing = false;
  let stopped = false;

  const cancelTimer = (): void => {
    // With a reason: an abort without one builds a DOMException, and every row stops its reporter.
    timer?.controller.abort(STOPPED);
    timer = undefined;
  };

  const dueAt = (phase: RowPhase, since: number): number =>
    written?.phase === 'queued' && phase.phase === 'queued' ? Math.max(since + PHASE_SETTLE_MS, writtenAt + POSITION_REFRESH_MS) : since + PHASE_SETTLE_MS;

  const schedule = (): void => {
    if (stopped || writing || latest === undefined || pendingSince === undefined) return;
    const at = dueAt(latest, pendingSince);
    if (timer && timer.at <= at) return;
    cancelTimer();
    const controller = new AbortController();
    timer = { at, controller };
    clock.sleep(Math.max(0, at - clock.now()), controller.signal).then(flush, () => undefined);
  };

  function flush(): void {
    timer = undefined;
    if (stopped || writing || latest === undefined || pendingSince === undefined) return;
    if (clock.now() < dueAt(latest, pendingSince)) {
      schedule();
      return;
    }
    const phase = latest;
    writing = true;
    void write(phase)
      .then(
        () => {
          written = phase;
          writtenAt = clock.now();
        },
        () => undefined,
      )
      .finally(() => {
        writing = false;
        pendingSince = latest !== undefined && !sameView(written, latest) ? clock.now() : undefined;
        schedule();
      });
  }

  return {
    report(phase) {
      if (stopped) return;
      latest = phase;
      if (sameView(written, phase)) {
        // Back to what is shown: nothing to write.
        pendingSince = undefined;
        cancelTimer();
        return;
      }
      pendingSince ??= clock.now();
      schedule();
    },
    stop() {
      stopped = true;
      cancelTimer();
    },
  };
}
