import { StorageError } from '../errors.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';
import { formatS3Url, parseS3Url, type S3Location } from '../storage/s3-url.js';

/**
 * What a listing already told of the objects it yielded (ETag, size), kept until their rows are
 * resolved: a row of a listed prefix needs no HEAD. Bounded: past `size` objects the oldest are
 * forgotten, and their rows make one HEAD each (a CSV of s3:// keys does that for every row).
 */
export interface ObjectInfoMemo {
  note(bucket: string, info: ObjectInfo): void;
  /** The object's info, forgotten once taken (each listed object is one row). */
  take(bucket: string, key: string): ObjectInfo | undefined;
}

export function createObjectInfoMemo(size = 20_000): ObjectInfoMemo {
  const known = new Map<string, ObjectInfo>();
  return {
    note(bucket, info) {
      known.set(`${bucket}/${info.key}`, info);
      if (known.size > size) known.delete(known.keys().next().value as string);
    },
    take(bucket, key) {
      const id = `${bucket}/${key}`;
      const info = known.get(id);
      known.delete(id);
      return info;
    },
  };
}

/**
 * An s3:// image's identity, part of its row's fingerprint: its ETag and size, which change
 * whenever its content does, known from a listing without reading a byte. The same bytes at
 * another key (a copy) have the same identity, and share one paid answer.
 */
export function objectIdentity(info: Pick<ObjectInfo, 'etag' | 'size'>): string {
  return `s3etag:${info.etag}:${info.size}`;
}

/** An s3:// image as a row gets it: the location goes into the job; the worker signs a URL for it just before it submits. */
export type S3ImageResult = { ok: true; location: S3Location; reference: string; identity: string; info: ObjectInfo } | { ok: false; reason: string };

/** Resolves `s3://bucket/key` cells: a listed object by what its listing said, another by one HEAD. */
export interface S3ImageSource {
  resolve(cell: string, column: string): Promise<S3ImageResult>;
}

export function createS3ImageSource(store: () => ObjectStore, memo: ObjectInfoMemo): S3ImageSource {
  return {
    async resolve(cell, column) {
      let location: S3Location;
      try {
        location = parseS3Url(cell);
      } catch (error) {
        return { ok: false, reason: `${column} ${(error as Error).message}` };
      }
      if (location.key === '' || location.key.endsWith('/')) return { ok: false, reason: `${column} "${cell}" names a prefix, not an object` };
      let info = memo.take(location.bucket, location.key);
      if (!info) {
        try {
          info = await store().head(location.bucket, location.key);
        } catch (error) {
          // Credentials refused, or a bucket that does not exist: every row would fail the same
          // way, so the run stops with the one line that says what to set.
          if (error instanceof StorageError && error.code !== 'STORAGE_NOT_FOUND') throw error;
          return { ok: false, reason: `${column} ${(error as Error).message}` };
        }
        if (!info) return { ok: false, reason: `${column} ${formatS3Url(location)} not found (no such object in bucket ${location.bucket})` };
      }
      return { ok: true, location, reference: formatS3Url(location), identity: objectIdentity(info), info };
    },
  };
}
