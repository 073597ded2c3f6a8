import { StorageError } from '../errors.js';
import type { ObjectStore } from './object-store.js';
import { formatS3Url, type S3Location } from './s3-url.js';

/**
 * A manifest file in a bucket, read by ranges: the shape of manifest/manifest-bytes.ts's
 * ManifestBytes (Parquet readers read the footer, then row groups, never the whole file; CSV and
 * JSONL read it as a stream). `byteLength` is one HEAD, made once.
 */
export interface ObjectBytes {
  /** `s3://bucket/key`, for messages and the batch's name. */
  readonly name: string;
  /** The object's ETag when first looked at (for a batch name that changes with the content). */
  etag(): Promise<string>;
  byteLength(): Promise<number>;
  /** Bytes `start` to `end` (exclusive), one ranged GET. */
  slice(start: number, end: number): Promise<ArrayBuffer>;
  stream(): AsyncIterable<Uint8Array>;
}

/** A manifest object as ObjectBytes; a missing object or bucket fails with a StorageError naming it. */
export function objectBytes(store: ObjectStore, location: S3Location): ObjectBytes {
  let info: Promise<{ size: number; etag: string }> | undefined;
  const head = () =>
    (info ??= store.head(location.bucket, location.key).then(async (found) => {
      if (found) return found;
      // Say which is missing: the bucket, or the object in it.
      await store.checkBucket(location.bucket, 'read');
      throw new StorageError(
        'STORAGE_NOT_FOUND',
        `Cannot read ${formatS3Url(location)} (at ${store.label}): no such object (check the key and the bucket).`,
        location,
      );
    }));
  return {
    name: formatS3Url(location),
    etag: async () => (await head()).etag,
    byteLength: async () => (await head()).size,
    async slice(start, end) {
      if (end <= start) return new ArrayBuffer(0);
      const bytes = await store.read(location.bucket, location.key, { start, end });
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    },
    stream: () => store.stream(location.bucket, location.key),
  };
}
