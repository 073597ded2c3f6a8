import type { FalLoad } from './slot-learner.js';
import type { RowPhase } from './process-row.js';

/**
 * A request IN_QUEUE at fal first in line, for longer than this, waits for a slot (not for
 * dispatch to a free runner, which takes milliseconds); one with others ahead of it always does.
 */
export const QUEUED_AFTER_MS = 50;

/** The fal requests of this process's rows in flight, by what fal last said of them. */
export interface FlightTracker {
  /** A row began (it will submit, or resume its request). */
  begin(jobId: string, now: number): void;
  /** What the row's request is doing now. */
  phase(jobId: string, phase: RowPhase, now: number): void;
  /** The row left this process. */
  end(jobId: string): void;
  /** Running, waiting for a slot, and in flight in all, now; and how many started after waiting since the last call. */
  load(now: number): FalLoad;
}

interface Flight {
  phase: RowPhase['phase'] | 'starting';
  position: number | undefined;
  /** Since when it has been IN_QUEUE (ms), if it is. */
  queuedSince: number | undefined;
}

export function createFlightTracker(): FlightTracker {
  const flights = new Map<string, Flight>();
  /** Requests that started after waiting in fal's queue, since the last load(). */
  let waited = 0;
  return {
    begin(jobId) {
      flights.set(jobId, { phase: 'starting', position: undefined, queuedSince: undefined });
    },
    phase(jobId, phase, now) {
      const flight = flights.get(jobId);
      if (!flight) return;
      if (phase.phase === 'queued') {
        flight.queuedSince ??= now;
        flight.position = phase.position;
      } else {
        if (flight.phase === 'queued' && ((flight.position ?? 0) >= 1 || now - (flight.queuedSince ?? now) >= QUEUED_AFTER_MS)) waited++;
        flight.queuedSince = undefined;
        flight.position = undefined;
      }
      flight.phase = phase.phase;
    },
    end(jobId) {
      flights.delete(jobId);
    },
    load(now) {
      let running = 0;
      let queued = 0;
      let waiting = 0;
      for (const flight of flights.values()) {
        if (flight.phase === 'running') running++;
        else if (flight.phase === 'queued') {
          waiting++;
          if ((flight.position ?? 0) >= 1 || now - (flight.queuedSince ?? now) >= QUEUED_AFTER_MS) queued++;
        }
      }
      const load = { running, queued, waiting, waited, inFlight: flights.size };
      waited = 0;
      return load;
    },
  };
}
