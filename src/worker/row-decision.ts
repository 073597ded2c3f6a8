import type { ResolvedConfig } from '../config.js';
import { BatchLostError, isRedisOutOfMemory } from '../errors.js';
import type { RowJobData, RowRequestState } from '../queue/row-job.js';
import { MINUTE, formatDuration } from '../time.js';
import { rateLimitDelay, retryDelay } from '../fal/backoff.js';
import { classifyFalError, type Verdict } from './classify-error.js';
import { AttemptError, ResultPendingError, type RowOutcome, type RowTimingFields } from './process-row.js';

/** How one attempt at a row ended: what processRow answered, or what it threw. */
export type AttemptEnd = { outcome: RowOutcome } | { error: unknown };

/**
 * What the queue does with a row after an attempt (see RELIABILITY.md, "Who retries what" and the
 * table of faults). Times are absolute (ms); only apply-action.ts turns these into BullMQ calls.
 */
export type RowAction =
  /** The row is settled (answered, answered from the ledger, or nothing left to do): its job completes. */
  | { kind: 'complete'; count?: 'ok' | 'fromLedger' }
  /** Its batch expired or was pruned: dropped without calling fal (the job completes). */
  | { kind: 'gone'; batch: string }
  /** Redis lost its batch: nothing to record under (the job completes). */
  | { kind: 'lost'; error: BatchLostError }
  /** An identical row is being called, or another delivery is submitting this one: come back `at`, no attempt spent. */
  | { kind: 'come-back'; at: number }
  /** Its batch is paused or over its spend cap: parked until `falbatch resume`, no attempt spent. */
  | { kind: 'park'; reason: string }
  /** Its batch was cancelled: ended as `cancelled` (its fal request, if any, cancelled at fal). */
  | { kind: 'end-cancelled'; reason: string; attempts: number }
  /** Redis refused a write (out of memory): no verdict on the row; wait for room and begin it again. */
  | { kind: 'redis-full'; error: unknown }
  /** A paid result could not be read: saved with `state`, read again `at`, no attempt spent. */
  | { kind: 'reread'; at: number; delayMs: number; state: RowRequestState; reason: string }
  /** Shut down past its grace period: handed back to the queue with its saved request. */
  | { kind: 'hand-back' }
  /** Fails for good: recorded with `verdict` (after saving `state`, if any); `message` goes to BullMQ. */
  | { kind: 'fail'; verdict: Verdict; attempts: number; timing: RowTimingFields; message: string; state?: RowRequestState }
  /** Retried by BullMQ's attempts, with backoff (fal's Retry-After, if any, as a floor). */
  | { kind: 'retry'; verdict: Verdict; attempt: number; retryAfterMs: number | undefined }
  /** A 429: the whole queue waits `delayMs`; the row keeps its attempts; its run of 429s is `since`..`now`. */
  | { kind: 'rate-limit'; delayMs: number; since: number; now: number }
  /** An account error (401/402/403): the queue pauses with `reason`, the row waits. */
  | { kind: 'pause-queue'; reason: string }
  /** Another batch's row, taken by a worker serving one batch (`run`): back to the end of the queue as it was. */
  | { kind: 'give-back' }
  /** Shutting down while Redis is full: the row stays as it is; its lock runs out and the stalled check hands it on. */
  | { kind: 'leave-locked' };

/** What the decision needs to know besides how the attempt ended. */
export interface RowFacts {
  data: RowJobData;
  /** This attempt, 1-based. */
  attempt: number;
  /** Attempts the job may make (BullMQ `attempts`). */
  maxAttempts: number;
  now: number;
  /** Whether the attempt was aborted (shutdown past grace, or its batch cancelled). */
  aborted: boolean;
  /** The batch's cancel reason, when the attempt was aborted because its batch was cancelled. */
  cancelReason: string | undefined;
  config: Pick<ResolvedConfig, 'resultBudgetMs' | 'rateLimitBudgetMs' | 'backoffBaseMs' | 'backoffMaxMs' | 'pollIntervalMs'>;
  scrub: (text: string) => string;
  random?: () => number;
}

/** A row whose last 429 is older than this starts a new run of 429s. */
export const RATE_LIMIT_RUN_GAP = 5 * MINUTE;

/** How long a row waits for an identical row's answer, or for another delivery's submit. */
export function comeBackMs(pollIntervalMs: number): number {
  return Math.max(4 * pollIntervalMs, 200);
}

/** What to do with a row after an attempt: a pure function of how it ended and the facts. */
export function decideRowAction(end: AttemptEnd, facts: RowFacts): RowAction {
  return 'outcome' in end ? decideOutcome(end.outcome, facts) : decideError(end.error, facts);
}

function decideOutcome(outcome: RowOutcome, facts: RowFacts): RowAction {
  if (typeof outcome === 'object') {
    const { held } = outcome;
    return held.kind === 'cancelled' ? { kind: 'end-cancelled', reason: held.reason, attempts: facts.attempt - 1 } : { kind: 'park', reason: held.reason };
  }
  switch (outcome) {
    case 'ok':
      return { kind: 'complete', count: 'ok' };
    case 'from-ledger':
      return { kind: 'complete', count: 'fromLedger' };
    case 'batch-gone':
      return { kind: 'gone', batch: facts.data.b };
    case 'twin-in-flight':
    case 'submit-in-flight':
      return { kind: 'come-back', at: facts.now + comeBackMs(facts.config.pollIntervalMs) };
    case 'already-ended':
    case 'stale':
      return { kind: 'complete' };
  }
}

function decideError(error: unknown, facts: RowFacts): RowAction {
  const { config, now, attempt, data } = facts;
  const policy = { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs };
  if (isRedisOutOfMemory(error)) return { kind: 'redis-full', error };
  if (error instanceof BatchLostError) return { kind: 'lost', error };
  if (facts.cancelReason !== undefined) return { kind: 'end-cancelled', reason: facts.cancelReason, attempts: attempt };
  if (error instanceof ResultPendingError && !facts.aborted) {
    if (now - error.since >= config.resultBudgetMs) {
      const message =
        `${error.reason.replace(/ \(fal said the request completed: its result will be read again\)$/, '')}: fal said request ${error.state.rid ?? ''} completed, ` +
        `but its result could not be read for ${formatDuration(now - error.since)} (the result budget). It is paid for: ` +
        `\`falbatch retry --batch ${data.b} --error result_unavailable\` reads it again without paying.`;
      const verdict: Verdict = { kind: 'permanent', reason: facts.scrub(message), errorType: 'result_unavailable' };
      return { kind: 'fail', verdict, attempts: attempt, timing: {}, message, state: error.state };
    }
    const delayMs = retryDelay(error.state.rf ?? 1, policy, undefined, facts.random);
    return { kind: 'reread', at: now + delayMs, delayMs, state: error.state, reason: error.reason };
  }
  if (facts.aborted) return { kind: 'hand-back' };
  const verdict = error instanceof AttemptError ? error.verdict : classifyFalError(error, 'submit');
  const timing = error instanceof AttemptError ? error.timing : {};
  switch (verdict.kind) {
    case 'permanent':
      return { kind: 'fail', verdict, attempts: attempt, timing, message: verdict.reason };
    case 'retry':
      if (attempt >= facts.maxAttempts) return { kind: 'fail', verdict, attempts: attempt, timing, message: verdict.reason };
      return { kind: 'retry', verdict, attempt, retryAfterMs: verdict.retryAfterMs };
    case 'rate-limited': {
      // Only an unbroken run of 429s counts against the budget: a long gap since the last one
      // (the row waited in the queue, or the queue was paused) starts a new run.
      const { rl, rla } = data;
      const since = rl !== undefined && rla !== undefined && now - rla <= RATE_LIMIT_RUN_GAP ? rl : now;
      if (now - since > config.rateLimitBudgetMs) {
        const recorded = { ...verdict, reason: `${verdict.reason} (rate limited for longer than the rate-limit budget)` };
        return { kind: 'fail', verdict: recorded, attempts: attempt, timing: {}, message: verdict.reason };
      }
      return { kind: 'rate-limit', delayMs: rateLimitDelay(verdict.retryAfterMs, now - since, policy, facts.random), since, now };
    }
    case 'account':
      return { kind: 'pause-queue', reason: verdict.reason };
  }
}
