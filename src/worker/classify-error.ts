import { FalHttpError, FalProtocolError, FalTimeoutError, FalTransportError, StorageError, falDetailText } from '../errors.js';

/** Where in a row's attempt the error happened: the same status means different things in each. */
export type AttemptPhase = 'submit' | 'wait' | 'result';

/**
 * What to do about an error. Retry ownership (see RELIABILITY.md):
 * - @fal-ai/client retries nothing (its fetch never lets it see a retryable error);
 * - the fal caller re-reads status while waiting (reads are free and the request is unharmed);
 * - the row processor re-reads a result a few times before concluding the job failed;
 * - BullMQ attempts (with falbatch's backoff) retry everything else, resuming the saved request
 *   unless `resubmit` says the request is gone or failed;
 * - 429s use queue-wide rate limiting (no attempt spent), account errors pause the queue.
 */
export type Verdict =
  | { kind: 'retry'; resubmit: boolean; retryAfterMs: number | undefined; reason: string; errorType: string }
  | { kind: 'rate-limited'; retryAfterMs: number | undefined; reason: string; errorType: string }
  | { kind: 'permanent'; reason: string; errorType: string }
  | { kind: 'account'; reason: string; errorType: string };

/** A 2xx answer whose body is not what the endpoint promises (no `output`, or no --output-field): paying again would not help. */
export class UnexpectedOutputError extends Error {
  constructor(endpoint: string, body: unknown, outputField = 'output') {
    const missing = outputField === 'output' ? 'an output field' : `the field ${outputField} (--output-field)`;
    super(`${endpoint} answered without ${missing}: ${JSON.stringify(body).slice(0, 300)}`);
    this.name = 'UnexpectedOutputError';
  }
}

function accountReason(error: FalHttpError): string {
  const detail = falDetailText(error.body);
  switch (error.status) {
    case 401:
      return `fal rejected the credentials (401: ${detail}). Check FAL_KEY (https://fal.ai/dashboard/keys), then run \`falbatch resume\`.`;
    case 402:
      return `fal wants payment (402: ${detail}). Top up at https://fal.ai/dashboard/billing, then run \`falbatch resume\`.`;
    default:
      return `fal refused the account (${error.status}: ${detail}). Fix the key or the balance (https://fal.ai/dashboard), then run \`falbatch resume\`.`;
  }
}

export function classifyFalError(error: unknown, phase: AttemptPhase): Verdict {
  if (error instanceof UnexpectedOutputError) return { kind: 'permanent', reason: error.message, errorType: 'unexpected_output' };
  if (error instanceof FalHttpError) {
    // Short, for the row's error column: the request id and endpoint have columns of their own.
    const reason = `fal ${error.status}${error.errorType ? ` ${error.errorType}` : ''} on ${error.operation}: ${falDetailText(error.body)}`;
    const errorType = error.errorType ?? `http_${error.status}`;
    const { status } = error;
    if (status === 401 || status === 402 || status === 403) return { kind: 'account', reason: accountReason(error), errorType };
    if (status === 429) return { kind: 'rate-limited', retryAfterMs: error.retryAfterMs, reason, errorType: 'rate_limited' };
    if (status === 504 && error.timeoutType === 'user') {
      return {
        kind: 'retry',
        resubmit: true,
        retryAfterMs: undefined,
        reason: `${reason} (start timeout passed before fal started it)`,
        errorType: 'start_timeout',
      };
    }
    if (status >= 500 || status === 408) {
      if (error.retryable === false) return { kind: 'permanent', reason, errorType };
      // A 5xx from the result of a completed request is the job's own failure: fal does not bill it, submit again.
      return { kind: 'retry', resubmit: phase === 'result', retryAfterMs: error.retryAfterMs, reason, errorType };
    }
    if (status === 404 && phase !== 'submit') {
      return { kind: 'retry', resubmit: true, retryAfterMs: undefined, reason: `${reason} (fal no longer knows the request)`, errorType: 'request_not_found' };
    }
    if (status === 499) return { kind: 'retry', resubmit: true, retryAfterMs: undefined, reason, errorType };
    if (status === 400 && phase === 'result') return { kind: 'retry', resubmit: false, retryAfterMs: undefined, reason, errorType };
    return { kind: 'permanent', reason, errorType: status === 422 ? 'validation_error' : status === 404 ? 'endpoint_not_found' : errorType };
  }
  if (error instanceof FalTimeoutError) {
    // Out of wait budget: the caller cancelled the request, so the next attempt submits anew.
    const budget = phase === 'wait' && error.operation === 'status';
    return { kind: 'retry', resubmit: budget, retryAfterMs: undefined, reason: error.message, errorType: 'timeout' };
  }
  if (error instanceof FalTransportError) return { kind: 'retry', resubmit: false, retryAfterMs: undefined, reason: error.message, errorType: 'transport' };
  if (error instanceof FalProtocolError) return { kind: 'retry', resubmit: false, retryAfterMs: undefined, reason: error.message, errorType: 'protocol' };
  // Signing an s3:// image's URL failed: no credentials (the same for every row: fix and retry), or a store not answering.
  if (error instanceof StorageError)
    return error.code === 'STORAGE_UNAVAILABLE'
      ? { kind: 'retry', resubmit: false, retryAfterMs: undefined, reason: error.message, errorType: 'storage_unavailable' }
      : { kind: 'permanent', reason: error.message, errorType: error.code === 'STORAGE_DENIED' ? 'storage_denied' : 'storage_not_found' };
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'retry', resubmit: false, retryAfterMs: undefined, reason: message, errorType: 'internal' };
}
