import { createHash } from 'node:crypto';
import type { RedisClient } from './connection.js';
import type { UploadCache } from '../manifest/upload-images.js';
import type { KeyLayout } from './keys.js';

export interface UploadCacheOptions {
  /** FAL_BASE_URL: the storage uploads go to. Undefined: fal's own. */
  falBaseUrl: string | undefined;
  /** How long a URL is reused after its upload (config uploadCacheTtlMs): inside fal's retention. */
  ttlMs: number;
}

/**
 * Which fal storage a URL belongs to: `fal` for fal's own, `b<hash>` for another base URL (an
 * emulator, whose files die with it; a proxy). A URL is reused only where it was uploaded.
 */
export function uploadStore(falBaseUrl: string | undefined): string {
  if (falBaseUrl === undefined) return 'fal';
  return `b${createHash('sha256').update(falBaseUrl.replace(/\/+$/, '')).digest('hex').slice(0, 12)}`;
}

/**
 * The upload cache in Redis: one string key per content (`keys.upload`), set with PX when the
 * file is uploaded. A hit never extends it: fal's retention counts from the upload, so the entry
 * must die while the file still lives, however often it is reused.
 */
export function createUploadCache(redis: RedisClient, keys: KeyLayout, options: UploadCacheOptions): UploadCache {
  const store = uploadStore(options.falBaseUrl);
  return {
    async get(identity) {
      return (await redis.get(keys.upload(store, identity))) ?? undefined;
    },
    async set(identity, url) {
      await redis.set(keys.upload(store, identity), url, 'PX', options.ttlMs);
    },
  };
}
