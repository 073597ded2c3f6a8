import type { FalbatchContext } from '../context.js';
import { MissingCredentialsError } from '../errors.js';
import { createFalCaller, type FalCaller } from '../fal/fal-caller.js';
import { inlineLocalImages, type LocalImageDelivery } from '../manifest/resolve-images.js';
import pLimit from 'p-limit';
import { createCachedUrlCheck, createUploadingDelivery, type CachedUrlCheck, type CheckedUploads, type FileUploader } from '../manifest/upload-images.js';
import { SECOND } from '../time.js';
import { createUploadCache } from './upload-cache.js';

export interface ImageDeliveryOptions {
  /** fal caller to upload with. Default: one made from the config (FAL_KEY, FAL_BASE_URL). */
  fal?: FalCaller | undefined;
  /** Stops waits between upload attempts. */
  signal?: AbortSignal | undefined;
  /** Cached URLs checked by earlier enqueues of this process (see EnqueueOptions.checkedUploads). */
  checkedUploads?: CheckedUploads | undefined;
}

/** A check of a cached URL is a HEAD: quick, or the storage is not answering. */
const CHECK_TIMEOUT_MS = 10 * SECOND;

const NO_CREDENTIALS =
  "FAL_KEY is not set, so falbatch cannot upload the manifest's local images to fal storage. Create a key at https://fal.ai/dashboard/keys " +
  'and export FAL_KEY=... (or FAL_BASE_URL, for an emulator or a proxy), or pass --inline-images to send local images inside the jobs instead.';

/** Refuses at the first local image: a manifest of URLs alone needs no credentials to be enqueued. */
const withoutCredentials: FileUploader = {
  upload: () => Promise.reject(new MissingCredentialsError(NO_CREDENTIALS)),
  checkFile: () => Promise.reject(new MissingCredentialsError(NO_CREDENTIALS)),
};

/** What uploads and checks go through: the run's fal caller, one made from the config, or none without credentials. */
function uploaderFor(ctx: FalbatchContext, run: ImageDeliveryOptions): FileUploader {
  const { config } = ctx;
  if (run.fal) return run.fal;
  const credentials = config.falKey !== undefined || config.falBaseUrl !== undefined;
  return credentials
    ? createFalCaller({ credentials: config.falKey, baseUrl: config.falBaseUrl, callTimeoutMs: config.callTimeoutMs, clock: ctx.clock })
    : withoutCredentials;
}

const checkTimeoutMs = (ctx: FalbatchContext): number => Math.min(CHECK_TIMEOUT_MS, ctx.config.callTimeoutMs);

/**
 * The check an enqueue run makes of a cached upload URL, on its own: for the dry run, which says
 * what the run would upload (a cached URL fal no longer serves is uploaded again).
 */
export function cachedUploadCheck(ctx: FalbatchContext, run: ImageDeliveryOptions): CachedUrlCheck {
  return createCachedUrlCheck({
    uploader: uploaderFor(ctx, run),
    limit: pLimit(ctx.config.uploadConcurrency),
    checkTimeoutMs: checkTimeoutMs(ctx),
    checked: run.checkedUploads,
    clock: ctx.clock,
    log: ctx.log,
    signal: run.signal,
  });
}

/** One delivery per enqueue call: `--strict` reads the manifest twice, and its uploads and checks count once. */
const deliveries = new WeakMap<object, LocalImageDelivery>();

/**
 * How an enqueue run delivers local images: inline (config inlineImages), or uploaded to fal
 * storage through the namespace's upload cache. `run` identifies the enqueue call (its options
 * object): the same one gets the same delivery, and with it the same per-run memory of uploads.
 */
export function localImageDelivery(ctx: FalbatchContext, run: ImageDeliveryOptions): LocalImageDelivery {
  const { config } = ctx;
  if (config.inlineImages) return inlineLocalImages;
  const known = deliveries.get(run);
  if (known) return known;
  const delivery = createUploadingDelivery({
    uploader: uploaderFor(ctx, run),
    cache: createUploadCache(ctx.redis, ctx.keys, { falBaseUrl: config.falBaseUrl, ttlMs: config.uploadCacheTtlMs }),
    concurrency: config.uploadConcurrency,
    attempts: config.attempts,
    backoff: { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs },
    checkTimeoutMs: checkTimeoutMs(ctx),
    checked: run.checkedUploads,
    clock: ctx.clock,
    log: ctx.log,
    signal: run.signal,
  });
  deliveries.set(run, delivery);
  return delivery;
}
