import { describe, expect, it } from 'vitest';
import { FalProtocolError, FalTimeoutError, FalTransportError } from '../../src/errors.js';
import { falHttpError } from '../helpers/fal-errors.js';
import { classifyFalError, UnexpectedOutputError, type AttemptPhase } from '../../src/worker/classify-error.js';

const http = falHttpError;

type Expected = { kind: string; resubmit?: boolean; retryAfterMs?: number };

const table: Array<[string, unknown, AttemptPhase, Expected]> = [
  ['401 bad key', http(401), 'submit', { kind: 'account' }],
  ['402 payment required', http(402), 'submit', { kind: 'account' }],
  ['403 locked balance', http(403), 'submit', { kind: 'account' }],
  ['429 with Retry-After', http(429, { retryAfterMs: 3000 }), 'submit', { kind: 'rate-limited', retryAfterMs: 3000 }],
  ['429 without Retry-After', http(429), 'submit', { kind: 'rate-limited' }],
  ['400 on submit', http(400), 'submit', { kind: 'permanent' }],
  ['400 on result (still running)', http(400), 'result', { kind: 'retry', resubmit: false }],
  ['404 on submit: unknown endpoint', http(404), 'submit', { kind: 'permanent' }],
  ['404 while waiting: request gone', http(404), 'wait', { kind: 'retry', resubmit: true }],
  ['422 validation', http(422), 'result', { kind: 'permanent' }],
  ['422 on submit', http(422), 'submit', { kind: 'permanent' }],
  ['413 too large', http(413), 'submit', { kind: 'permanent' }],
  ['499 cancelled job', http(499), 'result', { kind: 'retry', resubmit: true }],
  ['500 on submit', http(500), 'submit', { kind: 'retry', resubmit: false }],
  ['500 on status', http(500), 'wait', { kind: 'retry', resubmit: false }],
  ['500 result of a failed job', http(500), 'result', { kind: 'retry', resubmit: true }],
  ['502 on submit', http(502), 'submit', { kind: 'retry', resubmit: false }],
  ['503 result of a failed job', http(503), 'result', { kind: 'retry', resubmit: true }],
  ['504 gateway', http(504), 'wait', { kind: 'retry', resubmit: false }],
  ['504 start timeout (user)', http(504, { timeoutType: 'user' }), 'result', { kind: 'retry', resubmit: true }],
  ['503 marked not retryable', http(503, { retryable: false }), 'result', { kind: 'permanent' }],
  ['503 with Retry-After', http(503, { retryAfterMs: 1500 }), 'submit', { kind: 'retry', retryAfterMs: 1500 }],
  ['transport on submit', new FalTransportError('submit', 'e', 'ECONNRESET', 'reset'), 'submit', { kind: 'retry', resubmit: false }],
  ['transport on result', new FalTransportError('result', 'e', 'UND_ERR_SOCKET', 'closed'), 'result', { kind: 'retry', resubmit: false }],
  ['wait budget spent', new FalTimeoutError('status', 'budget'), 'wait', { kind: 'retry', resubmit: true }],
  ['one call timed out', new FalTimeoutError('result', 'slow'), 'result', { kind: 'retry', resubmit: false }],
  ['protocol surprise', new FalProtocolError('odd'), 'wait', { kind: 'retry', resubmit: false }],
  ['output without output field', new UnexpectedOutputError('e', {}), 'result', { kind: 'permanent' }],
  ['anything else', new Error('boom'), 'wait', { kind: 'retry', resubmit: false }],
];

describe('classifyFalError', () => {
  it.each(table)('%s → %o', (_name, error, phase, expected) => {
    expect(classifyFalError(error, phase)).toMatchObject(expected);
  });

  it('tells the user what to fix for account errors', () => {
    expect(classifyFalError(http(401), 'submit')).toMatchObject({ reason: expect.stringMatching(/FAL_KEY.*falbatch resume/) });
    expect(classifyFalError(http(402), 'submit')).toMatchObject({ reason: expect.stringMatching(/billing.*falbatch resume/) });
  });

  it("keeps fal's message in the reason", () => {
    const error = http(422, { operation: 'result', body: { detail: [{ loc: ['body', 'top_p'], msg: 'Input should be less than or equal to 1' }] } });
    expect(classifyFalError(error, 'result')).toMatchObject({
      reason: 'fal 422 on result: top_p: Input should be less than or equal to 1',
      errorType: 'validation_error',
    });
  });
});
