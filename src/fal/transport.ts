import { FalHttpError, FalProtocolError, FalTimeoutError, FalTransportError, type FalOperation } from '../errors.js';
import { createHttpFetch, isWholeAnswer, type HttpFetchOptions } from './http-fetch.js';
import { routeFalUrl } from './routing.js';

export interface FalTransportOptions {
  /** FAL_BASE_URL: where fal traffic goes instead of fal's hosts (routing contract). */
  baseUrl: string | undefined;
  /**
   * The fetch to call in the end. Default: node:http(s) with keep-alive agents of this transport's
   * own, proxies from the environment (http-fetch.ts), closed by `close()`. Tests inject their own.
   */
  fetch?: typeof fetch;
  /**
   * Options of the default fetch (not used with `fetch`): its answer-size cap, agents, proxy
   * environment. See HttpFetchOptions.
   */
  http?: HttpFetchOptions;
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
   * An extra signal for a status stream about to be opened (by its URL): lets the caller close the
   * stream's connection itself (the client cannot, once its stream has errored).
   */
  streamSignal?: (url: string) => AbortSignal | undefined;
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

/** The abort reason of a call past its deadline (made once: an abort without a reason builds a DOMException). */
const TIMED_OUT = new Error('falbatch: call timed out');

/** Whether a request asks for an event stream (its Accept header), without copying its headers. */
function acceptsEventStream(headers: RequestInit['headers']): boolean {
  if (headers === undefined) return false;
  let accept: string | undefined;
  if (headers instanceof Headers) accept = headers.get('accept') ?? undefined;
  else if (Array.isArray(headers)) accept = headers.find(([name]) => name?.toLowerCase() === 'accept')?.[1];
  else for (const [name, value] of Object.entries(headers)) if (name.toLowerCase() === 'accept' && typeof value === 'string') accept = value;
  return accept?.includes('text/event-stream') ?? false;
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

/** The transport's fetch; `close()` ends the connections of its default fetch. */
export type FalFetch = typeof fetch & { close(): void };

/**
 * The one `fetch` @fal-ai/client gets. It applies the routing contract, puts a deadline on each call,
 * and turns every failure into a falbatch error *before* the client sees a Response: a non-2xx
 * answer becomes FalHttpError, a dead connection FalTransportError, a missed deadline
 * FalTimeoutError. None of them is an ApiError or carries a transport code, so the client's own
 * retry loop (which would resubmit blind and ignore Retry-After) never fires: every retry is
 * falbatch's own. Each kind of failure has one layer that retries it (status reads in the fal caller,
 * result reads in the row attempt, BullMQ attempts, the queue rate limit and pause, uploads at
 * enqueue: RELIABILITY.md, "Who retries what"), and one pure function classifies fal's errors for
 * them all (worker/classify-error.ts).
 *
 * `onError` lets a caller see the original error of a request whose failure the client wraps
 * (status streams turn every failure into a generic ApiError 500).
 */
export function createFalFetch(options: FalTransportOptions): FalFetch {
  const own = options.fetch === undefined ? createHttpFetch(options.http) : undefined;
  const inner = options.fetch ?? (own as typeof fetch);
  const falFetch: typeof fetch = async (input, init) => {
    const rawUrl = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const url = options.baseUrl ? routeFalUrl(rawUrl, options.baseUrl) : rawUrl;
    const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
    // Which fal operation this is, for messages: worked out only when one is written.
    let described: ReturnType<typeof describeFalRequest> | undefined;
    const what = (): ReturnType<typeof describeFalRequest> => (described ??= describeFalRequest(url, method));
    const isStream = acceptsEventStream(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    const callerSignal = init?.signal ?? undefined;
    // One controller per call, following the caller's signal (and, for a stream, falbatch's own),
    // and a plain timer for the deadline: AbortSignal.timeout and AbortSignal.any cost several
    // times as much, and every call pays it.
    const call = new AbortController();
    let timedOut = false;
    // Unref'd, like AbortSignal.timeout's: a deadline alone keeps no process alive.
    const timer = isStream
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          call.abort(TIMED_OUT);
        }, options.callTimeoutMs).unref();
    const followed = [callerSignal, isStream ? options.streamSignal?.(url) : undefined].filter((s): s is AbortSignal => s !== undefined);
    const forward = (event: Event): void => call.abort((event.target as AbortSignal).reason);
    for (const signal of followed) {
      if (signal.aborted) call.abort(signal.reason);
      else signal.addEventListener('abort', forward, { once: true });
    }
    const fail = (error: Error): never => {
      options.onError?.(callerSignal, error);
      throw error;
    };
    const failure = (error: unknown, cutOff: boolean): Error => {
      const { operation, endpoint, requestId } = what();
      if (timedOut) {
        const late = cutOff ? "fal's answer did not arrive" : 'no answer from fal';
        return new FalTimeoutError(operation, `${operation} ${endpoint}: ${late} within ${options.callTimeoutMs} ms`, requestId);
      }
      return new FalTransportError(
        operation,
        endpoint,
        transportCode(error),
        cutOff ? `answer cut off: ${(error as Error).message}` : (error as Error).message,
      );
    };
    let streaming = false;
    try {
      let response: Response;
      try {
        response = await inner(url, { ...init, signal: call.signal });
      } catch (error) {
        if (callerSignal?.aborted) throw error;
        return fail(failure(error, false));
      }
      if (response.ok) {
        if (isStream) {
          if ((response.headers.get('content-type') ?? '').includes('text/event-stream')) {
            // The stream goes on after this returns: its signals must still be able to close it.
            streaming = true;
            return response;
          }
          // Not SSE: the client would read it as raw bytes with no error handling (a crash when the
          // connection then breaks). A broken stream: the waiter reads the status instead.
          await response.body?.cancel().catch(() => undefined);
          return fail(
            new FalProtocolError(
              `${what().endpoint}: the status stream answered ${response.headers.get('content-type') ?? 'no content type'}, not text/event-stream`,
            ),
          );
        }
        // An answer already read whole, labelled JSON: nothing can break off while the client reads it.
        if (isWholeAnswer(response) && (response.headers.get('content-type') ?? '').includes('application/json')) return response;
        // Read the whole answer here: a connection cut mid-body would otherwise surface inside the
        // client as a TypeError with a transport code, which the client retries (resubmitting).
        let bytes: ArrayBuffer;
        try {
          bytes = await response.arrayBuffer();
        } catch (error) {
          if (callerSignal?.aborted) throw error;
          return fail(failure(error, true));
        }
        return new Response(bytes, { status: response.status, statusText: response.statusText, headers: jsonHeaders(response.headers, bytes) });
      }
      const body = await readErrorBody(response);
      const { operation, endpoint, requestId } = what();
      if (body === CUT_OFF) {
        // A 422 without its body may be a model error or a gateway's: read again rather than guess.
        return fail(new FalTransportError(operation, endpoint, undefined, `its ${response.status} answer broke off before the body was complete; read again`));
      }
      const record = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
      const retryable = response.headers.get('x-fal-retryable');
      return fail(
        new FalHttpError({
          status: response.status,
          endpoint,
          operation,
          body,
          requestId: response.headers.get('x-fal-request-id') ?? requestId,
          retryAfterMs: retryAfterMs(response.headers.get('retry-after'), (options.now ?? Date.now)()),
          errorType: response.headers.get('x-fal-error-type') ?? (typeof record['error_type'] === 'string' ? record['error_type'] : undefined),
          timeoutType: response.headers.get('x-fal-request-timeout-type') ?? undefined,
          retryable: retryable === null ? undefined : retryable.toLowerCase() === 'true',
        }),
      );
    } finally {
      clearTimeout(timer);
      if (!streaming) for (const signal of followed) signal.removeEventListener('abort', forward);
    }
  };
  // An injected fetch is its owner's to close.
  return Object.assign(falFetch, { close: () => own?.close() });
}
