import { ConfigError } from '../errors.js';

/** An object, or a prefix of objects, in a bucket. */
export interface S3Location {
  bucket: string;
  /** The object's key, or the prefix (`photos/`); '' for the whole bucket. */
  key: string;
}

/** True for text that names an object store location (`s3://…`). */
export function isS3Url(text: string): boolean {
  return /^s3:\/\//i.test(text.trim());
}

/**
 * `s3://bucket/photos/cat.png` → { bucket: 'bucket', key: 'photos/cat.png' }. The bucket name is
 * checked as S3 and its compatibles (R2, MinIO, GCS) accept them (3–63 characters of lowercase
 * letters, digits, dots and hyphens), so a typo fails before any request; the key is taken as it
 * is (keys may hold any character).
 */
export function parseS3Url(text: string): S3Location {
  const trimmed = text.trim();
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/is.exec(trimmed);
  if (!match) throw new ConfigError(`"${text}" is not an s3:// location: expected s3://<bucket>/<key or prefix>.`);
  const bucket = match[1] ?? '';
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(
      `"${text}": "${bucket}" is not a bucket name (3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit).`,
    );
  }
  return { bucket, key: match[2] ?? '' };
}

/** `s3://bucket/key`. */
export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`;
}
