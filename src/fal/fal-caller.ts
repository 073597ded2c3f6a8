import { createFalClient, type FalClient } from '@fal-ai/client';
import { FalHttpError, FalProtocolError, FalTimeoutError, FalTransportError } from '../errors.js';
import { systemClock, type Clock } from '../time.js';
import type { HttpFetchOptions } from './http-fetch.js';
import { createFalFetch } from './transport.js';

export type FalRequestState = 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED';

/** A request's status as falbatch reads it. */
export interface FalStatus {
  state: FalRequestState;
  queuePosition: number | undefined;
  /** fal's `error` on a COMPLETED status: the job failed, and its result GET answers with the error. */
  error: string | undefined;
  errorType: string | undefined;
  inferenceSeconds: number | undefined;
}

export interface FalCallerOptions {
  /** FAL_KEY. Handed to the client as a function so the client never reads the environment itself. */
  credentials: string | undefined;
  baseUrl: string | undefined;
  /** Injected transport (tests). Default: falbatch's keep-alive fetch (http-fetch.ts), closed by `close()`. */
  fetch?: typeof fetch;
  /** Options of the default transport (answer-size cap, agents, proxy environment); unused with `fetch`. */
  http?: HttpFetchOptions;
  callTimeoutMs: number;
  clock?: Clock;
}

export interface WaitOptions {
  mode: 'stream' | 'poll';
  pollIntervalMs: number;
  /** Absolute time (clock ms) after which waiting fails with FalTimeoutError. */
  deadline: number;
  signal?: AbortSignal;
  onStatus?: (status: FalStatus) => void;
}

export interface FalCaller {
  /**
   * Submits to fal's queue. `priority` is fal's queue priority (X-Fal-Queue-Priority, default
   * `normal`): `low` requests of an account wait behind its `normal` ones, for backfills sharing an
   * account with interactive traffic.
   */
  submit(
    endpoint: string,
    input: Record<string, unknown>,
    options?: { startTimeoutSeconds?: number | undefined; signal?: AbortSignal; priority?: 'low' | 'normal' | undefined },
  ): Promise<{ requestId: string }>;
  status(endpoint: string, requestId: string, signal?: AbortSignal): Promise<FalStatus>;
  /** Resolves with the COMPLETED status; transient status errors are retried until the deadline. */
  waitForCompletion(endpoint: string, requestId: string, options: WaitOptions): Promise<FalStatus>;
  result(endpoint: string, requestId: string, signal?: AbortSignal): Promise<{ data: unknown; requestId: string }>;
  /** fal's cancel; `already-completed` when the request had finished. */
  cancel(endpoint: string, requestId: string): Promise<'requested' | 'already-completed'>;
  /** Uploads to fal storage; resolves with the file's URL (public, kept at least 7 days by fal). */
  upload(bytes: Uint8Array, contentType: string, fileName: string): Promise<string>;
  /**
   * Whether fal storage still serves a file URL (a HEAD, through the same routing and time-out):
   * `gone` on 404 or 410 (expired, deleted), and on 403 (what object stores answer for a missing
   * object they will not list); throws the transport's error when it cannot tell.
   */
  checkFile(url: string, signal?: AbortSignal): Promise<'present' | 'gone'>;
  /**
   * Ends the connections of its default transport (an injected `fetch` is its owner's); calls after
   * it fail. Optional, for callers standing in for fal in tests.
   */
  close?(): void;
}

/** Idle stream connections are re-checked with a status poll this often. */
const STREAM_IDLE_MS = 60_000;
/** Broken streams in a row after which one wait falls back to polling. */
const STREAM_FAILURES_BEFORE_POLLING = 3;
/** Status reads answered 404 that are read again before the request is taken for gone. */
const NOT_FOUND_READS = 2;
/** A status stream's URL, and the request id in it. */
const STREAM_URL = /\/requests\/([^/?#]+)\/status\/stream(?:[?#]|$)/;
/** Why falbatch closed a status stream (made once: see streamOnce). */
const STREAM_CLOSED = new Error('falbatch: status stream closed');

function toStatus(body: unknown): FalStatus {
  if (typeof body !== 'object' || body === null) throw new FalProtocolError(`fal status is not an object: ${String(body)}`);
  const record = body as Record<string, unknown>;
  const raw = record['status'];
  if (typeof raw !== 'string') throw new FalProtocolError(`fal status has no state: ${JSON.stringify(body).slice(0, 200)}`);
  // fal knows three states. Another one (a server's CANCELLED, say) is taken as "finished": the
  // result read then says what happened (an error, or 400 if it is in fact still running).
  const state: FalRequestState = raw === 'IN_QUEUE' || raw === 'IN_PROGRESS' ? raw : 'COMPLETED';
  const metrics = record['metrics'];
  const inference = metrics && typeof metrics === 'object' ? (metrics as Record<string, unknown>)['inference_time'] : undefined;
  const error = record['error'];
  return {
    state,
    queuePosition: typeof record['queue_position'] === 'number' ? record['queue_position'] : undefined,
    error: typeof error === 'string' ? error : error && typeof error === 'object' ? JSON.stringify(error) : undefined,
    errorType: typeof record['error_type'] === 'string' ? record['error_type'] : undefined,
    inferenceSeconds: typeof inference === 'number' ? inference : undefined,
  };
}

/**
 * A failure worth trying again: no answer, a time-out, a broken answer, or a 5xx/429/408. For a
 * read of a request's state, the request itself is unharmed.
 */
export function isTransientFalError(error: unknown): boolean {
  if (error instanceof FalTransportError || error instanceof FalTimeoutError || error instanceof FalProtocolError) return true;
  if (error instanceof FalHttpError) return error.status === 429 || error.status === 408 || error.status >= 500;
  return false;
}

/**
 * falbatch's door to fal: the only module that imports @fal-ai/client. It keeps the request id in
 * the caller's hands (submit, then wait, then result), so a crashed worker resumes a paid request
 * instead of paying again.
 */
export function createFalCaller(options: FalCallerOptions): FalCaller & { close(): void } {
  const clock = options.clock ?? systemClock;
  // Status streams wrap every failure in a generic ApiError(500); keep the real one by signal.
  const streamErrors = new WeakMap<AbortSignal, Error>();
  // Stream connections being opened, by request id: the transport gives each to its fetch, so that
  // falbatch can close the connection itself (the client cannot, once its stream has errored).
  // Keyed by URL rather than carried in an AsyncLocalStorage: a store, once entered, turns on
  // async hooks for every promise of the process, a cost each Redis and HTTP call would pay.
  const opening = new Map<string, AbortSignal[]>();
  const falFetch = createFalFetch({
    baseUrl: options.baseUrl,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.http ? { http: options.http } : {}),
    callTimeoutMs: options.callTimeoutMs,
    now: () => clock.now(),
    onError: (signal, error) => {
      if (signal) streamErrors.set(signal, error);
    },
    streamSignal: (url) => {
      const requestId = STREAM_URL.exec(url)?.[1];
      return requestId === undefined ? undefined : opening.get(requestId)?.shift();
    },
  });
  const client: FalClient = createFalClient({
    credentials: () => options.credentials,
    suppressLocalCredentialsWarning: true,
    fetch: falFetch,
  });

  const status = async (endpoint: string, requestId: string, signal?: AbortSignal): Promise<FalStatus> =>
    toStatus(await client.queue.status(endpoint, { requestId, logs: false, ...(signal ? { abortSignal: signal } : {}) }));

  const forget = (requestId: string, signal: AbortSignal): void => {
    const waiting = opening.get(requestId);
    if (!waiting) return;
    const at = waiting.indexOf(signal);
    if (at >= 0) waiting.splice(at, 1);
    if (waiting.length === 0) opening.delete(requestId);
  };

  /** One stream connection: resolves with the last status seen when the server closes it or it goes idle. */
  const streamOnce = async (endpoint: string, requestId: string, wait: WaitOptions): Promise<FalStatus | undefined> => {
    const connection = new AbortController();
    const waiting = opening.get(requestId) ?? [];
    if (waiting.length === 0) opening.set(requestId, waiting);
    waiting.push(connection.signal);
    let stream: Awaited<ReturnType<FalClient['queue']['streamStatus']>>;
    try {
      stream = await client.queue.streamStatus(endpoint, { requestId, logs: false });
    } catch (error) {
      forget(requestId, connection.signal);
      throw error;
    }
    let last: FalStatus | undefined;
    let finished = false;
    // Aborts carry a reason made once: an abort without one builds a DOMException (and its stack).
    const abort = (): void => {
      stream.abort(STREAM_CLOSED);
      connection.abort(STREAM_CLOSED);
    };
    // fal sends the current status as soon as a stream opens: one silent past the call time-out is
    // dead. Later, nothing guarantees events while a request waits, so a quiet stream is dropped
    // after a minute and the waiter asks for the status instead: a half-dead socket never holds a row.
    // One timer per stream, pushed back by each event rather than made anew.
    const idle = new AbortController();
    let quietUntil = clock.now() + options.callTimeoutMs;
    const watchQuiet = (): void => {
      const until = Math.min(quietUntil, wait.deadline);
      clock.sleep(Math.max(0, until - clock.now()), idle.signal).then(
        () => {
          if (finished) return;
          if (clock.now() >= Math.min(quietUntil, wait.deadline)) abort();
          else watchQuiet();
        },
        () => undefined,
      );
    };
    if (wait.signal?.aborted) abort();
    wait.signal?.addEventListener('abort', abort, { once: true });
    watchQuiet();
    stream.on('data', (data) => {
      if (finished) return;
      try {
        last = toStatus(data);
        wait.onStatus?.(last);
      } catch {
        // A malformed event: the status poll after the stream decides.
      }
      // Done: no need to wait for the server to close the stream.
      if (last?.state === 'COMPLETED') abort();
      else quietUntil = clock.now() + (last === undefined ? options.callTimeoutMs : STREAM_IDLE_MS);
    });
    try {
      await stream.done();
      return last;
    } catch (error) {
      throw streamErrors.get(stream.signal) ?? error;
    } finally {
      finished = true;
      idle.abort(STREAM_CLOSED);
      // Close the connection whatever happened (the client leaves it open after a bad event).
      connection.abort(STREAM_CLOSED);
      forget(requestId, connection.signal);
      wait.signal?.removeEventListener('abort', abort);
    }
  };

  return {
    async submit(endpoint, input, submitOptions = {}) {
      const body = (await client.queue.submit(endpoint, {
        input,
        ...(submitOptions.startTimeoutSeconds !== undefined ? { startTimeout: submitOptions.startTimeoutSeconds } : {}),
        ...(submitOptions.priority !== undefined ? { priority: submitOptions.priority } : {}),
        ...(submitOptions.signal ? { abortSignal: submitOptions.signal } : {}),
      })) as unknown as Record<string, unknown>;
      const requestId = body?.['request_id'];
      if (typeof requestId !== 'string' || requestId === '') throw new FalProtocolError(`fal accepted a submit to ${endpoint} without a request_id`);
      return { requestId };
    },

    status,

    async waitForCompletion(endpoint, requestId, wait) {
      let failures = 0;
      let streamFailures = 0;
      let notFound = 0;
      for (;;) {
        wait.signal?.throwIfAborted();
        let delay = wait.pollIntervalMs;
        // A stream is only a faster way to hear the news: whatever breaks it (a cut, a proxy that
        // does not carry SSE, a 404 from a router), the status read below is the judge. After
        // three broken streams in a row this wait polls instead.
        if (wait.mode === 'stream' && streamFailures < STREAM_FAILURES_BEFORE_POLLING) {
          try {
            const streamed = await streamOnce(endpoint, requestId, wait);
            if (streamed?.state === 'COMPLETED') return streamed;
            // A stream that said nothing useful (only keep-alives, or a buffering proxy) is broken too.
            streamFailures = streamed === undefined ? streamFailures + 1 : 0;
          } catch (error) {
            if (wait.signal?.aborted) throw error;
            streamFailures++;
          }
        }
        try {
          // Even past the deadline, a request gets this one look before it is given up: it may have finished.
          const current = await status(endpoint, requestId, wait.signal);
          wait.onStatus?.(current);
          if (current.state === 'COMPLETED') return current;
          failures = 0;
        } catch (error) {
          // A 404 may be a replica that has not seen the request yet: only a repeated one means it is gone.
          const notFoundYet = error instanceof FalHttpError && error.status === 404 && notFound++ < NOT_FOUND_READS;
          if (wait.signal?.aborted || !(isTransientFalError(error) || notFoundYet)) throw error;
          failures++;
          const retryAfter = error instanceof FalHttpError ? error.retryAfterMs : undefined;
          delay = Math.max(retryAfter ?? 0, Math.min(wait.pollIntervalMs * 2 ** Math.min(failures, 6), 30_000));
        }
        const left = wait.deadline - clock.now();
        if (left <= 0) throw new FalTimeoutError('status', `${endpoint} request ${requestId} did not complete within its wait budget`, requestId);
        await clock.sleep(Math.min(delay, left), wait.signal);
      }
    },

    async result(endpoint, requestId, signal) {
      const { data, requestId: answeredId } = await client.queue.result(endpoint, { requestId, ...(signal ? { abortSignal: signal } : {}) });
      return { data, requestId: answeredId || requestId };
    },

    async cancel(endpoint, requestId) {
      try {
        await client.queue.cancel(endpoint, { requestId });
        return 'requested';
      } catch (error) {
        if (error instanceof FalHttpError && error.status === 400) return 'already-completed';
        throw error;
      }
    },

    async upload(bytes, contentType, fileName) {
      const file = new File([bytes], fileName, { type: contentType });
      return client.storage.upload(file);
    },

    async checkFile(url, signal) {
      try {
        // No credentials: fal's file URLs are public, and a key has no business going to a CDN.
        await falFetch(url, { method: 'HEAD', ...(signal ? { signal } : {}) });
        return 'present';
      } catch (error) {
        if (error instanceof FalHttpError && (error.status === 404 || error.status === 410 || error.status === 403)) return 'gone';
        throw error;
      }
    },

    close: () => falFetch.close(),
  };
}
