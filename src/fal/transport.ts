import { FalHttpError, FalProtocolError, FalTimeoutError, FalTransportError, type FalOperation } from '../errors.js';
import { routeFalUrl } from './routing.js';

export interface FalTransportOptions {
  /** FAL_BASE_URL: where fal traffic goes instead of fal's hosts (routing contract). */
  baseUrl: string | undefined;
  /** The fetch to call in the end. Default: global fetch. Tests and proxies inject their own. */
  fetch?: typeof fetch;
  /** Deadline of one call, streams excepted (their waiter sets its own). */
  callTimeoutMs: number;
  /** Wall clock for Retry-After given as an HTTP date. Default Date.now. */
  now?: () => number;
  /**
   * Sees the original error of a request whose failure the client wraps (status streams turn every
   * failure into a generic ApiError 500), keyed by the signal the client passed.
   */
  onError?: (signal: AbortSignal | undefined, error: Error) => void;
  /**
   * An extra signal for the request being made now: lets the caller close a status stream's
   * connection itself (the client cannot, once its stream has errored).
   */
  extraSignal?: () => AbortSignal | undefined;
}

/** Which fal operation a URL is, for messages and classification. */
export function describeFalRequest(url: string, method: string): { operation: FalOperation; endpoint: string; requestId: string | undefined } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { operation: 'run', endpoint: url, requestId: undefined };
  }
  const segments = parsed.pathname.split('/').filter(Boolean);
  // Routed URLs carry fal's host as their first segment.
  const hostAt = segments.findIndex((s) => /(^|\.)fal\.(run|ai|media)$/.test(s));
  const hostname = hostAt >= 0 ? (segments[hostAt] ?? '') : parsed.hostname;
  const path = hostAt >= 0 ? segments.slice(hostAt + 1) : segments;
  if (hostname.startsWith('rest.') || hostname.endsWith('.fal.media')) return { operation: 'upload', endpoint: 'fal storage', requestId: undefined };
  const endpoint = path.slice(0, 2).join('/');
  const at = path.indexOf('requests');
  if (!hostname.startsWith('queue.')) return { operation: 'run', endpoint, requestId: undefined };
  if (at < 0) return { operation: 'submit', endpoint, requestId: undefined };
  const requestId = path[at + 1];
  const rest = path.slice(at + 2).join('/');
  const operation: FalOperation =
    rest === 'status' ? 'status' : rest === 'status/stream' ? 'stream' : rest === 'cancel' ? 'cancel' : method.toUpperCase() === 'GET' ? 'result' : 'submit';
  return { operation, endpoint, requestId };
}

function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Marks an error answer whose body broke off: what it said is unknown, so it says nothing about the job. */
const CUT_OFF = Symbol('cut off');

async function readErrorBody(response: Response): Promise<unknown> {
  let text: string;
  try {
    text = await response.text();
  } catch {
    return CUT_OFF;
  }
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text.slice(0, 2000);
  }
}

/** The lowest `code` on the cause chain (ECONNRESET, UND_ERR_SOCKET, ...). */
function transportCode(error: unknown): string | undefined {
  let current: unknown = error;
  let code: string | undefined;
  for (let depth = 0; depth < 8 && current && typeof current === 'object'; depth++) {
    const candidate = (current as { code?: unknown }).code;
    if (typeof candidate === 'string') code = candidate;
    current = (current as { cause?: unknown }).cause;
  }
  return code;
}

/**
 * The client parses a body as JSON only when its content type says so; a server that sends JSON as
 * text/plain (or with no type) would hand falbatch a string. Such a body is labelled JSON again.
 */
function jsonHeaders(headers: Headers, bytes: ArrayBuffer): Headers {
  if ((headers.get('content-type') ?? '').includes('application/json') || bytes.byteLength === 0) return headers;
  try {
    JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return headers;
  }
  const fixed = new Headers(headers);
  fixed.set('content-type', 'application/json');
  return fixed;
}

/**
 * The one `fetch` @fal-ai/client gets. It applies the routing contract, puts a deadline on each call,
 * and turns every failure into a falbatch error *before* the client sees a Response: a non-2xx
 * answer becomes FalHttpError, a dead connection FalTransportError, a missed deadline
 * FalTimeoutError. None of them is an ApiError or carries a transport code, so the client's own
 * retry loop (which would resubmit blind and ignore Retry-After) never fires: falbatch owns every
 * retry, in one place (worker/classify-error.ts).
 *
 * `onError` lets a caller see the original error of a request whose failure the client wraps
 * (status streams turn every failure into a generic ApiError 500).
 */
export function createFalFetch(options: FalTransportOptions): typeof fetch {
  const inner = options.fetch ?? globalThis.fetch;
  return async (input, init) => {
    const rawUrl = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const url = options.baseUrl ? routeFalUrl(rawUrl, options.baseUrl) : rawUrl;
    const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
    const what = describeFalRequest(url, method);
    const headers = new Headers(init?.headers);
    const isStream = (headers.get('accept') ?? '').includes('text/event-stream');
    const callerSignal = init?.signal ?? undefined;
    const timeout = isStream ? undefined : AbortSignal.timeout(options.callTimeoutMs);
    const signals = [callerSignal, timeout, options.extraSignal?.()].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    const fail = (error: Error): never => {
      options.onError?.(callerSignal, error);
      throw error;
    };
    let response: Response;
    try {
      response = await inner(url, { ...init, ...(signal ? { signal } : {}) });
    } catch (error) {
      if (callerSignal?.aborted) throw error;
      if (timeout?.aborted) {
        return fail(new FalTimeoutError(what.operation, `${what.operation} ${what.endpoint}: no answer from fal within ${options.callTimeoutMs} ms`, what.requestId));
      }
      return fail(new FalTransportError(what.operation, what.endpoint, transportCode(error), (error as Error).message));
    }
    if (response.ok) {
      if (isStream) {
        if ((response.headers.get('content-type') ?? '').includes('text/event-stream')) return response;
        // Not SSE: the client would read it as raw bytes with no error handling (a crash when the
        // connection then breaks). A broken stream: the waiter reads the status instead.
        await response.body?.cancel().catch(() => undefined);
        return fail(new FalProtocolError(`${what.endpoint}: the status stream answered ${response.headers.get('content-type') ?? 'no content type'}, not text/event-stream`));
      }
      // Read the whole answer here: a connection cut mid-body would otherwise surface inside the
      // client as a TypeError with a transport code, which the client retries (resubmitting).
      let bytes: ArrayBuffer;
      try {
        bytes = await response.arrayBuffer();
      } catch (error) {
        if (callerSignal?.aborted) throw error;
        if (timeout?.aborted) {
          return fail(new FalTimeoutError(what.operation, `${what.operation} ${what.endpoint}: fal's answer did not arrive within ${options.callTimeoutMs} ms`, what.requestId));
        }
        return fail(new FalTransportError(what.operation, what.endpoint, transportCode(error), `answer cut off: ${(error as Error).message}`));
      }
      return new Response(bytes, { status: response.status, statusText: response.statusText, headers: jsonHeaders(response.headers, bytes) });
    }
    const body = await readErrorBody(response);
    if (body === CUT_OFF) {
      // A 422 without its body may be a model error or a gateway's: read again rather than guess.
      return fail(
        new FalTransportError(what.operation, what.endpoint, undefined, `its ${response.status} answer broke off before the body was complete; read again`),
      );
    }
    const record = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
    const retryable = response.headers.get('x-fal-retryable');
    return fail(
      new FalHttpError({
        status: response.status,
        endpoint: what.endpoint,
        operation: what.operation,
        body,
        requestId: response.headers.get('x-fal-request-id') ?? what.requestId,
        retryAfterMs: retryAfterMs(response.headers.get('retry-after'), (options.now ?? Date.now)()),
        errorType: response.headers.get('x-fal-error-type') ?? (typeof record['error_type'] === 'string' ? record['error_type'] : undefined),
        timeoutType: response.headers.get('x-fal-request-timeout-type') ?? undefined,
        retryable: retryable === null ? undefined : retryable.toLowerCase() === 'true',
      }),
    );
  };
}
