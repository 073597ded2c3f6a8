import pLimit, { type LimitFunction } from 'p-limit';
import { ConfigError, FalbatchError, FalHttpError, FalProtocolError, FalTimeoutError, FalTransportError, falDetailText } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock } from '../time.js';
import { retryDelay } from '../fal/backoff.js';
import type { PreparedImage } from './prepare-image.js';
import type { LocalImageDelivery, LocalImageReference } from './resolve-images.js';

/** What uploading needs of fal storage (FalCaller has both). */
export interface FileUploader {
  /** Uploads the bytes; resolves with the file's URL. */
  upload(bytes: Uint8Array, contentType: string, fileName: string): Promise<string>;
  /** Whether a stored file's URL still serves it (`gone` on 403/404/410); throws when that cannot be told. */
  checkFile(url: string, signal?: AbortSignal): Promise<'present' | 'gone'>;
}

/** Content identity → URL of its upload, shared across rows, batches and runs (queue/upload-cache.ts). */
export interface UploadCache {
  get(identity: string): Promise<string | undefined>;
  /** Remembers a fresh upload, for a time inside fal's retention. */
  set(identity: string, url: string): Promise<void>;
}

/**
 * Cached upload URLs found served, and when: kept by a long-running process (a schedule service)
 * across its enqueues, so that a tick over an unchanged manifest does not check every cached image
 * again. Without one, each enqueue run checks each cached URL once.
 */
export interface CheckedUploads {
  /** Whether `url` was found served less than the re-check interval ago. */
  fresh(url: string, now: number): boolean;
  /** `url` is served now (just checked, or just uploaded). */
  remember(url: string, now: number): void;
}

/** Most URLs a CheckedUploads remembers (the oldest checks are forgotten first: checked again). */
const CHECKED_REMEMBERED = 100_000;

/**
 * A process's memory of checked uploads: a URL found served is trusted for `recheckMs` without
 * another check. The cache entry itself dies inside fal's retention (queue/upload-cache.ts), so a
 * URL trusted here is one fal promised to keep; the re-check only catches files fal lost early.
 */
export function createCheckedUploads(recheckMs: number): CheckedUploads {
  const checkedAt = new Map<string, number>();
  return {
    fresh: (url, now) => {
      const at = checkedAt.get(url);
      return at !== undefined && now - at < recheckMs;
    },
    remember: (url, now) => {
      checkedAt.delete(url);
      checkedAt.set(url, now);
      if (checkedAt.size > CHECKED_REMEMBERED) checkedAt.delete(checkedAt.keys().next().value as string);
    },
  };
}

export interface CachedUrlCheckOptions {
  uploader: Pick<FileUploader, 'checkFile'>;
  /** Bounds the checks in flight (shared with the uploads of the run). */
  limit: LimitFunction;
  /** Deadline of one check of a cached URL. */
  checkTimeoutMs: number;
  /** URLs checked by earlier runs of this process, trusted without a check. Default: none. */
  checked?: CheckedUploads | undefined;
  clock?: Clock;
  log?: Logger;
  signal?: AbortSignal | undefined;
}

/** Whether a cached URL is still served: `unknown` when the check could not tell (the URL is then kept). */
export type CachedUrlCheck = (url: string) => Promise<'present' | 'gone' | 'unknown'>;

/**
 * The check of a cached URL, as one run does it (and the dry run forecasts it): a HEAD, unless the
 * process checked the URL recently (`checked`). A check that cannot tell (a time-out, a 5xx, no
 * connection) keeps the cached URL: the cache lives shorter than fal's retention, so the URL is
 * expected to serve, and an unreachable CDN says nothing about the file (re-uploading everything on
 * a CDN hiccup would defeat the cache, and fails the same way). After three such checks in a row
 * the run stops checking.
 */
export function createCachedUrlCheck(options: CachedUrlCheckOptions): CachedUrlCheck {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? silentLogger;
  let failures = 0;
  return async (url) => {
    if (options.checked?.fresh(url, clock.now())) return 'present';
    if (failures >= CHECK_FAILURES_BEFORE_TRUSTING) return 'unknown';
    try {
      const timeout = AbortSignal.timeout(options.checkTimeoutMs);
      const state = await options.limit(() => options.uploader.checkFile(url, options.signal ? AbortSignal.any([timeout, options.signal]) : timeout));
      failures = 0;
      if (state === 'present') options.checked?.remember(url, clock.now());
      return state;
    } catch (error) {
      options.signal?.throwIfAborted();
      failures++;
      const why = error instanceof Error ? error.message : String(error);
      if (failures === CHECK_FAILURES_BEFORE_TRUSTING) {
        log.warn(`fal storage did not answer ${failures} checks of cached uploads in a row (${why}): cached URLs are used unchecked for the rest of this run`);
      } else {
        log.debug('could not check a cached upload; using it', { url, error: why });
      }
      return 'unknown';
    }
  };
}

export interface UploadingDeliveryOptions {
  uploader: FileUploader;
  cache: UploadCache;
  /** Uploads, and checks of cached URLs, in flight at once (config uploadConcurrency). */
  concurrency: number;
  /** Attempts per upload for transient failures (config attempts). */
  attempts: number;
  /** Backoff between attempts (config backoffBaseMs, backoffMaxMs); a Retry-After is a floor. */
  backoff: { baseMs: number; maxMs: number };
  /** Deadline of one check of a cached URL. */
  checkTimeoutMs: number;
  /** Cached URLs this process checked in earlier runs (a schedule service's ticks). Default: each run checks. */
  checked?: CheckedUploads | undefined;
  clock?: Clock;
  random?: () => number;
  log?: Logger;
  /** Stops waits between attempts (the enqueue's signal). */
  signal?: AbortSignal | undefined;
}

/** What one enqueue run did with its local images. */
export interface UploadCounts {
  /** Files uploaded (each distinct content at most once per run, unless its cached URL had expired). */
  uploaded: number;
  /** Contents whose cached URL was used. */
  reused: number;
  /** Cached URLs fal no longer served, uploaded again. */
  replaced: number;
  /** Contents whose upload failed for good (their rows are rejected). */
  failed: number;
}

export interface UploadingDelivery extends LocalImageDelivery {
  readonly counts: Readonly<UploadCounts>;
}

/** What to do about a failed upload. */
export type UploadVerdict =
  | { kind: 'retry'; reason: string; retryAfterMs: number | undefined }
  | { kind: 'permanent'; reason: string }
  /** Nothing will upload in this run (no credentials, an account fal refuses): stop the enqueue. */
  | { kind: 'fatal'; error: Error };

/**
 * Upload failures as fal call failures are judged (worker/classify-error.ts): 5xx, 408, 429,
 * transport errors and time-outs are transient; another 4xx is this file's own problem; 401, 402 and
 * 403 are the account's, and would refuse every file.
 */
export function classifyUploadError(error: unknown): UploadVerdict {
  if (error instanceof FalHttpError) {
    const detail = falDetailText(error.body);
    const reason = `fal answered ${error.status}${error.errorType ? ` ${error.errorType}` : ''}: ${detail}`;
    if (error.status === 401 || error.status === 402 || error.status === 403) {
      return {
        kind: 'fatal',
        error: new ConfigError(
          `fal storage refused to take local images (${error.status}: ${detail}). Check FAL_KEY (https://fal.ai/dashboard/keys) and the account's balance, ` +
            'or pass --inline-images to send local images inside the jobs instead.',
          { cause: error },
        ),
      };
    }
    if ((error.status === 429 || error.status === 408 || error.status >= 500) && error.retryable !== false) {
      return { kind: 'retry', reason, retryAfterMs: error.retryAfterMs };
    }
    return { kind: 'permanent', reason };
  }
  if (error instanceof FalTransportError || error instanceof FalTimeoutError || error instanceof FalProtocolError) {
    return { kind: 'retry', reason: error.message, retryAfterMs: undefined };
  }
  // Missing credentials, an interruption: nothing another attempt changes.
  if (error instanceof FalbatchError) return { kind: 'fatal', error };
  return { kind: 'retry', reason: error instanceof Error ? error.message : String(error), retryAfterMs: undefined };
}

type Outcome = { ok: true; url: string } | { ok: false; why: string };

/** Settled outcomes kept for the run (beyond it, a repeat costs one cache read and one check). */
const REMEMBERED = 10_000;
/** Failed checks of cached URLs in a row after which the run stops checking (storage unreachable). */
const CHECK_FAILURES_BEFORE_TRUSTING = 3;

/** A file name that says nothing of the local one (CDN URLs are public): the content's hash. */
function uploadName(image: PreparedImage, ext: string): string {
  // `sha256:<hex>[@<N>px]` for a local image, `s3etag:<etag>:<size>` for an object in a bucket.
  const [hash = '', size] = image.identity.replace(/^(sha256|s3etag):/, '').split('@');
  return `${hash.replace(/[^A-Za-z0-9]/g, '-').slice(0, 16)}${size ? `-${size}` : ''}.${ext}`;
}

/**
 * Local images uploaded to fal storage, the job carrying only the URL. Each distinct content
 * (identity) is uploaded at most once: concurrent rows share one upload, later rows, batches and
 * runs find its URL in the cache. A cached URL is checked once per run (HEAD, see
 * createCachedUrlCheck), or once per re-check interval across the runs sharing `checked`: one fal
 * no longer serves is uploaded again and the cache overwritten. Uploads are retried like fal calls;
 * one that fails for good rejects the rows that need it, with the reason.
 */
export function createUploadingDelivery(options: UploadingDeliveryOptions): UploadingDelivery {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? silentLogger;
  const limit = pLimit(options.concurrency);
  const counts: UploadCounts = { uploaded: 0, reused: 0, replaced: 0, failed: 0 };
  /** Per content: its URL, or why it could not be uploaded (said per row, naming the row's own cell). */
  const outcomes = new Map<string, Promise<Outcome>>();
  const check = createCachedUrlCheck({
    uploader: options.uploader,
    limit,
    checkTimeoutMs: options.checkTimeoutMs,
    checked: options.checked,
    clock,
    log,
    signal: options.signal,
  });

  const upload = async (image: PreparedImage, cell: string): Promise<Outcome> => {
    const content = await image.content();
    const name = uploadName(image, content.ext);
    for (let attempt = 1; ; attempt++) {
      try {
        const url = await limit(() => options.uploader.upload(content.bytes, content.mime, name));
        if (typeof url !== 'string' || !/^https?:\/\//i.test(url))
          throw new FalProtocolError(`fal storage answered an upload without a file URL: ${String(url).slice(0, 200)}`);
        counts.uploaded++;
        return { ok: true, url };
      } catch (error) {
        const verdict = classifyUploadError(error);
        if (verdict.kind === 'fatal') throw verdict.error;
        if (verdict.kind === 'permanent' || attempt >= options.attempts) {
          counts.failed++;
          return { ok: false, why: `could not be uploaded to fal storage${attempt > 1 ? ` (${attempt} attempts)` : ''}: ${verdict.reason}` };
        }
        log.debug('upload failed; trying again', { file: cell, attempt, error: verdict.reason });
        await clock.sleep(retryDelay(attempt, options.backoff, verdict.retryAfterMs, options.random), options.signal);
      }
    }
  };

  const deliver = async (image: PreparedImage, cell: string): Promise<Outcome> => {
    const cached = await options.cache.get(image.identity);
    if (cached !== undefined) {
      if ((await check(cached)) !== 'gone') {
        counts.reused++;
        return { ok: true, url: cached };
      }
      counts.replaced++;
      // Once at info (expiry usually hits a whole earlier run's uploads at once), then at debug.
      const message = `fal storage no longer serves the cached upload of local file "${cell}" (expired): uploading it again`;
      if (counts.replaced === 1) log.info(`${message}; others that expired are uploaded again too`);
      else log.debug(message);
    }
    const uploaded = await upload(image, cell);
    if (uploaded.ok) {
      await options.cache.set(image.identity, uploaded.url);
      options.checked?.remember(uploaded.url, clock.now());
    }
    return uploaded;
  };

  return {
    counts,
    async reference(image, cell): Promise<LocalImageReference> {
      let outcome = outcomes.get(image.identity);
      if (outcome === undefined) {
        outcome = deliver(image, cell);
        outcomes.set(image.identity, outcome);
        // The oldest are long settled: the rows resolving at once are a handful.
        if (outcomes.size > REMEMBERED) outcomes.delete(outcomes.keys().next().value as string);
      }
      const settled = await outcome;
      return settled.ok
        ? { ok: true, reference: settled.url }
        : { ok: false, reason: `local file "${cell}" ${settled.why}; enqueue again to retry it, or pass --inline-images` };
    },
  };
}
