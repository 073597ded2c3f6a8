import { describe, expect, it } from 'vitest';
import { BatchLostError, FalTransportError, type FalHttpErrorDetails } from '../../src/errors.js';
import { falHttpError } from '../helpers/fal-errors.js';
import type { RowJobData } from '../../src/queue/row-job.js';
import { classifyFalError } from '../../src/worker/classify-error.js';
import { AttemptError, ResultPendingError } from '../../src/worker/process-row.js';
import { RATE_LIMIT_RUN_GAP, decideRowAction, type AttemptEnd, type RowFacts } from '../../src/worker/row-decision.js';
import { MINUTE, SECOND } from '../../src/time.js';

// The decision table of RELIABILITY.md ("Who retries what" and the faults), one case per branch,
// without Redis: how an attempt ended plus the facts → what the queue does with the row.

const NOW = 1_000_000_000;
const config = { resultBudgetMs: 60 * MINUTE, rateLimitBudgetMs: 30 * MINUTE, backoffBaseMs: 2 * SECOND, backoffMaxMs: 5 * MINUTE, pollIntervalMs: 100 };
const data: RowJobData = { b: 'b1', k: 'row-1', e: 'fal-ai/x', f: 'fp', in: { prompt: 'p' } };

function facts(over: Partial<RowFacts> = {}): RowFacts {
  // Jitter at its top: the delays below are the policy's caps, exactly.
  return {
    data,
    attempt: 1,
    maxAttempts: 5,
    now: NOW,
    aborted: false,
    cancelReason: undefined,
    config,
    scrub: (t) => t.replaceAll('SECRET', '***'),
    random: () => 1,
    ...over,
  };
}

function http(status: number, phase: 'submit' | 'wait' | 'result', extra: Partial<FalHttpErrorDetails> = {}): AttemptError {
  const error = falHttpError(status, { endpoint: 'fal-ai/x', operation: phase === 'wait' ? 'status' : phase, ...extra });
  return new AttemptError(phase, classifyFalError(error, phase), { started_at: 5 });
}

const err = (error: unknown): AttemptEnd => ({ error });

describe('decideRowAction: outcomes', () => {
  it('ok and from-ledger complete the job, counted apart', () => {
    expect(decideRowAction({ outcome: 'ok' }, facts())).toEqual({ kind: 'complete', count: 'ok' });
    expect(decideRowAction({ outcome: 'from-ledger' }, facts())).toEqual({ kind: 'complete', count: 'fromLedger' });
  });

  it('a duplicate delivery, or a job of edited content, completes without a count', () => {
    expect(decideRowAction({ outcome: 'already-ended' }, facts())).toEqual({ kind: 'complete' });
    expect(decideRowAction({ outcome: 'stale' }, facts())).toEqual({ kind: 'complete' });
  });

  it('an identical row in flight, or a stalled delivery still submitting: come back later, no attempt spent', () => {
    expect(decideRowAction({ outcome: 'twin-in-flight' }, facts())).toEqual({ kind: 'come-back', at: NOW + 400 });
    expect(decideRowAction({ outcome: 'submit-in-flight' }, facts({ config: { ...config, pollIntervalMs: 10 } }))).toEqual({
      kind: 'come-back',
      at: NOW + 200,
    });
  });

  it('a batch whose retention ran out: its rows are dropped', () => {
    expect(decideRowAction({ outcome: 'batch-gone' }, facts())).toEqual({ kind: 'gone', batch: 'b1' });
  });

  it('held by a pause or the spend cap: parked', () => {
    expect(decideRowAction({ outcome: { held: { kind: 'paused', reason: 'paused by operator' } } }, facts())).toEqual({
      kind: 'park',
      reason: 'paused by operator',
    });
    expect(decideRowAction({ outcome: { held: { kind: 'capped', reason: 'over $5' } } }, facts())).toEqual({ kind: 'park', reason: 'over $5' });
  });

  it('held by a cancel: ended as cancelled with the attempts made so far', () => {
    expect(decideRowAction({ outcome: { held: { kind: 'cancelled', reason: 'stop' } } }, facts({ attempt: 3 }))).toEqual({
      kind: 'end-cancelled',
      reason: 'stop',
      attempts: 2,
    });
  });
});

describe('decideRowAction: errors', () => {
  it('Redis out of memory: no verdict on the row (waited out, no attempt spent)', () => {
    const oom = new Error('OOM command not allowed when used memory > maxmemory.');
    expect(decideRowAction(err(oom), facts({ cancelReason: 'stop' }))).toEqual({ kind: 'redis-full', error: oom });
  });

  it('a batch Redis lost: nothing recorded', () => {
    const lost = new BatchLostError('b1');
    expect(decideRowAction(err(lost), facts())).toEqual({ kind: 'lost', error: lost });
  });

  it('aborted because its batch was cancelled: ended as cancelled, this attempt counted', () => {
    expect(decideRowAction(err(new Error('aborted')), facts({ aborted: true, cancelReason: 'stop', attempt: 2 }))).toEqual({
      kind: 'end-cancelled',
      reason: 'stop',
      attempts: 2,
    });
  });

  it('aborted by a shutdown past its grace: handed back', () => {
    expect(decideRowAction(err(http(503, 'wait')), facts({ aborted: true }))).toEqual({ kind: 'hand-back' });
    const pending = new ResultPendingError('503', { rid: 'r1' }, NOW);
    expect(decideRowAction(err(pending), facts({ aborted: true }))).toEqual({ kind: 'hand-back' });
  });

  it('COMPLETED without a readable result, within --result-budget: read again later with backoff, state saved', () => {
    const state = { rid: 'r1', sub: NOW - 5000, rf: 3, ru: NOW - 1000, rs: '503:x' };
    const action = decideRowAction(
      err(new ResultPendingError('fal 503 on result: x (fal said the request completed: its result will be read again)', state, NOW - 1000)),
      facts(),
    );
    // Third failure in a row: 2 s · 2² = 8 s (jitter at its top).
    expect(action).toEqual({
      kind: 'reread',
      at: NOW + 8000,
      delayMs: 8000,
      state,
      reason: 'fal 503 on result: x (fal said the request completed: its result will be read again)',
    });
  });

  it('COMPLETED without a readable result past --result-budget: fails as result_unavailable, keeping its request', () => {
    const state = { rid: 'r1', sub: NOW - 5000, rf: 30, ru: NOW - 60 * MINUTE, rs: '503:x' };
    const action = decideRowAction(
      err(new ResultPendingError('fal 503 SECRET (fal said the request completed: its result will be read again)', state, NOW - 60 * MINUTE)),
      facts(),
    );
    expect(action).toMatchObject({ kind: 'fail', attempts: 1, timing: {}, state, verdict: { kind: 'permanent', errorType: 'result_unavailable' } });
    if (action.kind !== 'fail') throw new Error('unreachable');
    expect(action.verdict.reason).toBe(
      'fal 503 ***: fal said request r1 completed, but its result could not be read for 1h00m (the result budget). It is paid for: `falbatch retry --batch b1 --error result_unavailable` reads it again without paying.',
    );
    expect(action.message).toContain('SECRET');
  });

  it('a transient error (5xx, transport) with attempts left: retried by BullMQ, Retry-After as a floor', () => {
    expect(decideRowAction(err(http(503, 'submit', { retryAfterMs: 7000 })), facts({ attempt: 2 }))).toMatchObject({
      kind: 'retry',
      attempt: 2,
      retryAfterMs: 7000,
      verdict: { kind: 'retry', errorType: 'http_503' },
    });
    expect(
      decideRowAction(err(new AttemptError('submit', classifyFalError(new FalTransportError('submit', 'fal-ai/x', 'ECONNRESET', 'reset'), 'submit'))), facts()),
    ).toMatchObject({ kind: 'retry', verdict: { errorType: 'transport' } });
  });

  it('a transient error on the last attempt: fails with its timing', () => {
    expect(decideRowAction(err(http(503, 'wait')), facts({ attempt: 5 }))).toMatchObject({
      kind: 'fail',
      attempts: 5,
      timing: { started_at: 5 },
      verdict: { kind: 'retry', errorType: 'http_503' },
    });
  });

  it('a permanent error (422): fails at once, fal message kept', () => {
    const action = decideRowAction(err(http(422, 'result')), facts());
    expect(action).toMatchObject({ kind: 'fail', attempts: 1, timing: { started_at: 5 }, verdict: { kind: 'permanent', errorType: 'validation_error' } });
    if (action.kind === 'fail') expect(action.message).toBe(action.verdict.reason);
  });

  it('an error from outside the attempt is classified as at submit', () => {
    expect(decideRowAction(err(new Error('boom')), facts())).toMatchObject({ kind: 'retry', verdict: { errorType: 'internal', reason: 'boom' } });
  });

  it('429 with Retry-After: the queue waits exactly that, a new run of 429s starts now', () => {
    expect(decideRowAction(err(http(429, 'submit', { retryAfterMs: 2000 })), facts())).toEqual({ kind: 'rate-limit', delayMs: 2000, since: NOW, now: NOW });
  });

  it('429 without Retry-After: backoff growing with the run of 429s, no attempt spent', () => {
    const inRun = facts({ data: { ...data, rl: NOW - 60 * SECOND, rla: NOW - SECOND } });
    // 60 s into the run: attempt 1 + floor(log2(1 + 30)) = 5: 2 s · 2⁴ = 32 s.
    expect(decideRowAction(err(http(429, 'submit')), inRun)).toEqual({ kind: 'rate-limit', delayMs: 32_000, since: NOW - 60 * SECOND, now: NOW });
  });

  it('429 after a long gap since the last one: a new run', () => {
    const stale = facts({ data: { ...data, rl: NOW - 2 * 60 * MINUTE, rla: NOW - RATE_LIMIT_RUN_GAP - 1 } });
    expect(decideRowAction(err(http(429, 'submit', { retryAfterMs: 100 })), stale)).toEqual({ kind: 'rate-limit', delayMs: 100, since: NOW, now: NOW });
  });

  it('429s for longer than the rate-limit budget: fails, saying so', () => {
    const long = facts({ data: { ...data, rl: NOW - 31 * MINUTE, rla: NOW - SECOND } });
    const action = decideRowAction(err(http(429, 'submit', { retryAfterMs: 100 })), long);
    expect(action).toMatchObject({ kind: 'fail', timing: {}, verdict: { kind: 'rate-limited', errorType: 'rate_limited' } });
    if (action.kind !== 'fail') throw new Error('unreachable');
    expect(action.verdict.reason).toMatch(/\(rate limited for longer than the rate-limit budget\)$/);
    expect(action.message).not.toMatch(/budget\)$/);
  });

  it.each([401, 402, 403])('account error %i (bad key, balance): the queue pauses, the row is not failed', (status) => {
    expect(decideRowAction(err(http(status, 'submit')), facts({ attempt: 5 }))).toMatchObject({
      kind: 'pause-queue',
      reason: expect.stringContaining('falbatch resume'),
    });
  });
});
