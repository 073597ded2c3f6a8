import type { Clock } from '../time.js';
import type { ObjectStore } from './object-store.js';
import { isS3Url, parseS3Url } from './s3-url.js';

/** True when a fal input holds an `s3://` image (a whole string value, wherever it sits). */
export function hasS3References(value: unknown): boolean {
  if (typeof value === 'string') return isS3Url(value);
  if (Array.isArray(value)) return value.some(hasS3References);
  if (value !== null && typeof value === 'object') return Object.values(value).some(hasS3References);
  return false;
}

export interface SignInputOptions {
  store: ObjectStore;
  /** How long each URL stays valid (config presignExpiryMs). */
  expiresInMs: number;
  /** Signing time: the worker's clock, injectable. */
  clock: Pick<Clock, 'now'>;
}

/**
 * The fal input with each `s3://bucket/key` replaced by a presigned GET URL, signed now: the worker
 * calls this just before it submits the row (never at enqueue: a row may wait in the queue for
 * hours), so the URL is valid from the submit for `expiresInMs`, covering fal's queue wait. The job's
 * own input keeps the `s3://` locations: a retry signs afresh. Signing is local (no request), once
 * credentials are resolved.
 */
export async function signInput<T>(input: T, options: SignInputOptions): Promise<T> {
  const signedAt = new Date(options.clock.now());
  const seconds = Math.max(1, Math.floor(options.expiresInMs / 1000));
  const walk = async (value: unknown): Promise<unknown> => {
    if (typeof value === 'string') {
      if (!isS3Url(value)) return value;
      const { bucket, key } = parseS3Url(value);
      return options.store.presign(bucket, key, seconds, signedAt);
    }
    if (Array.isArray(value)) return Promise.all(value.map(walk));
    if (value !== null && typeof value === 'object') {
      const entries = await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await walk(v)] as const));
      return Object.fromEntries(entries);
    }
    return value;
  };
  return (await walk(input)) as T;
}

/**
 * Text with the query of every presigned URL cut (`https://host/bucket/key?…`): a signature and
 * the access key id it names must not reach a row's error, a log or Redis, whatever fal quotes back.
 */
export function redactSignedUrls(text: string): string {
  return text.replace(/(https?:\/\/[^\s?"'<>]+)\?[^\s"'<>]*X-Amz-[^\s"'<>]*/gi, '$1?…');
}
