import { FalHttpError, type FalHttpErrorDetails } from '../../src/errors.js';

/** A fal HTTP error as the transport makes it: `status` on a submit of fal-ai/llava-next, unless `extra` says otherwise. */
export function falHttpError(status: number, extra: Partial<FalHttpErrorDetails> = {}): FalHttpError {
  return new FalHttpError({
    status,
    endpoint: 'fal-ai/llava-next',
    operation: 'submit',
    body: { detail: 'x' },
    requestId: undefined,
    retryAfterMs: undefined,
    errorType: undefined,
    timeoutType: undefined,
    retryable: undefined,
    ...extra,
  });
}
