import type { Readable } from 'node:stream';
import type { ListObjectsV2CommandOutput, S3Client } from '@aws-sdk/client-s3';
import { importOnce } from '../load-dependency.js';
import { storageErrorOf } from './storage-errors.js';

/*
 * The AWS SDK (≈ 10 MB of modules) is loaded by the first s3:// location a command meets, never
 * at start-up: a run over a CSV of URLs does not pay for it.
 */
const PURPOSE = 'Reading and writing s3:// locations';
const loadS3 = importOnce('@aws-sdk/client-s3', PURPOSE, () => import('@aws-sdk/client-s3'));
const loadPresigner = importOnce('@aws-sdk/s3-request-presigner', 'Signing s3:// image URLs for fal', () => import('@aws-sdk/s3-request-presigner'));
const loadUpload = importOnce('@aws-sdk/lib-storage', 'Writing results to s3:// (multipart upload)', () => import('@aws-sdk/lib-storage'));

/** An object as a listing or a HEAD shows it. */
export interface ObjectInfo {
  key: string;
  /** The ETag as the store gives it, quotes removed: changes whenever the content does. */
  etag: string;
  size: number;
}

export interface ObjectStoreOptions {
  /**
   * The store's endpoint (`--s3-endpoint`, else `AWS_ENDPOINT_URL`): R2, MinIO, GCS's S3
   * interoperability endpoint. Default: AWS S3, whose region the SDK's chain finds. With an
   * endpoint, requests are path-style (`<endpoint>/<bucket>/<key>`), which every compatible store takes.
   */
  endpoint?: string | undefined;
  /** Default: AWS_REGION / AWS_DEFAULT_REGION / the profile's; `auto` with an endpoint and none set (R2's). */
  region?: string | undefined;
  /** Default: true with an endpoint, false for AWS S3 (virtual-hosted). */
  forcePathStyle?: boolean | undefined;
  /** Environment read for the region (credentials come from the SDK's own chain). Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

/** A page of a listing (up to 1,000 objects, the store's page), with how many bytes its keys take. */
export type ListPage = ObjectInfo[];

/**
 * The one way falbatch talks to an object store. Credentials come from the AWS SDK's standard
 * chain (environment, shared config and profile, SSO, instance or task role) and are never held
 * here. Every failure is a StorageError naming the bucket and key (see storage-errors.ts).
 */
export interface ObjectStore {
  /** Where the store is, for messages: the endpoint, or `AWS S3`. */
  readonly label: string;
  /** Fails with one line when the bucket is missing or the credentials cannot reach it. `doing`: "list", "read", "write to". */
  checkBucket(bucket: string, doing: string): Promise<void>;
  /** Every object under `prefix`, page by page in key order (UTF-8 binary), never the whole listing at once. */
  list(bucket: string, prefix: string, options?: { pageSize?: number; signal?: AbortSignal }): AsyncGenerator<ListPage>;
  /** The object's ETag and size, or undefined when there is none. */
  head(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /** The object's bytes, or those from `start` to `end` (exclusive). */
  read(bucket: string, key: string, range?: { start: number; end: number }, signal?: AbortSignal): Promise<Uint8Array>;
  /** The object's bytes as they arrive. */
  stream(bucket: string, key: string, signal?: AbortSignal): AsyncIterable<Uint8Array>;
  /** Writes a small object in one PUT: it appears whole or not at all. */
  put(bucket: string, key: string, body: Uint8Array | string, contentType: string): Promise<void>;
  /**
   * Writes an object of any size with a multipart upload: the object appears only when the upload
   * completes, whole; a failure aborts it (no parts left behind to pay for).
   */
  upload(bucket: string, key: string, body: Readable | Uint8Array, contentType: string): Promise<void>;
  /** A GET URL for the object, valid `expiresInSeconds` from `signedAt` (SigV4 allows at most 7 days). */
  presign(bucket: string, key: string, expiresInSeconds: number, signedAt: Date): Promise<string>;
  close(): void;
}

const unquote = (etag: string | undefined): string => (etag ?? '').replace(/^W\//, '').replace(/^"|"$/g, '');

/** An object store client over the AWS SDK v3, made on first use. */
export function createObjectStore(options: ObjectStoreOptions = {}): ObjectStore {
  const env = options.env ?? process.env;
  const endpoint = options.endpoint?.trim() || undefined;
  const label = endpoint ?? 'AWS S3';
  let client: Promise<S3Client> | undefined;
  const clientOf = (): Promise<S3Client> =>
    (client ??= loadS3().then(({ S3Client }) => {
      const region = options.region ?? (env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || (endpoint ? 'auto' : undefined));
      return new S3Client({
        ...(endpoint ? { endpoint } : {}),
        ...(region ? { region } : {}),
        forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
        // A bucket in another region than the one configured is found (AWS S3 says where it is).
        followRegionRedirects: true,
        // Checksums only where the API requires them: R2, MinIO and GCS differ in the newer
        // checksum headers the SDK adds by default, and TLS plus Content-MD5 already guard the bytes.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
    }));
  const fail = (error: unknown, where: { bucket: string; key?: string | undefined }, doing: string): never => {
    throw storageErrorOf(error, where, doing, label) ?? error;
  };

  return {
    label,
    async checkBucket(bucket, doing) {
      const { HeadBucketCommand } = await loadS3();
      try {
        await (await clientOf()).send(new HeadBucketCommand({ Bucket: bucket }));
      } catch (error) {
        // HEAD has no body: a 404 on a bucket is the bucket missing.
        const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 404 || (error as Error).name === 'NotFound')
          fail(Object.assign(new Error('NoSuchBucket'), { name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } }), { bucket }, doing);
        fail(error, { bucket }, doing);
      }
    },
    async *list(bucket, prefix, listOptions = {}) {
      const { ListObjectsV2Command } = await loadS3();
      const s3 = await clientOf();
      const fetchPage = (token: string | undefined): Promise<ListObjectsV2CommandOutput> =>
        s3
          .send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: prefix,
              ...(token ? { ContinuationToken: token } : {}),
              ...(listOptions.pageSize ? { MaxKeys: listOptions.pageSize } : {}),
            }),
            listOptions.signal ? { abortSignal: listOptions.signal } : {},
          )
          .catch((error: unknown) => fail(error, { bucket, key: prefix }, 'list'));
      let next: Promise<ListObjectsV2CommandOutput> | undefined = fetchPage(undefined);
      try {
        while (next) {
          const page: ListObjectsV2CommandOutput = await next;
          const token = page.IsTruncated ? page.NextContinuationToken : undefined;
          // The next page is asked for now, while the caller works through this one: at most two
          // pages (2,000 keys) are held, and the store's latency hides behind the caller's work.
          next = token ? fetchPage(token) : undefined;
          next?.catch(() => undefined);
          yield (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [{ key: o.Key, etag: unquote(o.ETag), size: o.Size ?? 0 }]));
        }
      } finally {
        await next?.catch(() => undefined);
      }
    },
    async head(bucket, key) {
      const { HeadObjectCommand } = await loadS3();
      try {
        const info = await (await clientOf()).send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { key, etag: unquote(info.ETag), size: info.ContentLength ?? 0 };
      } catch (error) {
        const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 404 || (error as Error).name === 'NotFound' || (error as Error).name === 'NoSuchKey') return undefined;
        return fail(error, { bucket, key }, 'read');
      }
    },
    async read(bucket, key, range, signal) {
      const { GetObjectCommand } = await loadS3();
      try {
        const answer = await (await clientOf()).send(
          new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end - 1}` } : {}) }),
          signal ? { abortSignal: signal } : {},
        );
        if (!answer.Body) return new Uint8Array();
        return await answer.Body.transformToByteArray();
      } catch (error) {
        return fail(error, { bucket, key }, 'read');
      }
    },
    async *stream(bucket, key, signal) {
      const { GetObjectCommand } = await loadS3();
      let body: AsyncIterable<Uint8Array> | undefined;
      try {
        const answer = await (await clientOf()).send(new GetObjectCommand({ Bucket: bucket, Key: key }), signal ? { abortSignal: signal } : {});
        body = answer.Body as AsyncIterable<Uint8Array> | undefined;
      } catch (error) {
        fail(error, { bucket, key }, 'read');
      }
      if (!body) return;
      try {
        for await (const chunk of body) yield chunk;
      } catch (error) {
        fail(error, { bucket, key }, 'read');
      }
    },
    async put(bucket, key, body, contentType) {
      const { PutObjectCommand } = await loadS3();
      try {
        await (await clientOf()).send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
      } catch (error) {
        fail(error, { bucket, key }, 'write');
      }
    },
    async upload(bucket, key, body, contentType) {
      const { Upload } = await loadUpload();
      const upload = new Upload({
        client: await clientOf(),
        params: { Bucket: bucket, Key: key, Body: body, ContentType: contentType },
        // A failed part aborts the whole upload: the store drops the parts, the key is untouched.
        leavePartsOnError: false,
        queueSize: 4,
      });
      try {
        await upload.done();
      } catch (error) {
        await upload.abort().catch(() => undefined);
        fail(error, { bucket, key }, 'write');
      }
    },
    async presign(bucket, key, expiresInSeconds, signedAt) {
      const [{ GetObjectCommand }, { getSignedUrl }] = await Promise.all([loadS3(), loadPresigner()]);
      try {
        return await getSignedUrl(await clientOf(), new GetObjectCommand({ Bucket: bucket, Key: key }), {
          expiresIn: expiresInSeconds,
          signingDate: signedAt,
        });
      } catch (error) {
        return fail(error, { bucket, key }, 'sign a URL for');
      }
    },
    close() {
      void client?.then((c) => c.destroy()).catch(() => undefined);
      client = undefined;
    },
  };
}
