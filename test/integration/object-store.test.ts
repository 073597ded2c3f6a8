import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { objectBytes } from '../../src/storage/object-bytes.js';
import { createObjectStore } from '../../src/storage/object-store.js';
import { parseS3Url } from '../../src/storage/s3-url.js';
import { pngBytes } from '../helpers/images.js';
import { S3RVER_KEY, startS3Server } from '../helpers/s3-server.js';

function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  return body().finally(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe('s3:// locations', () => {
  it('parses bucket and key, and refuses what no store would take as a bucket', () => {
    expect(parseS3Url('s3://photos-1/a/b c.png')).toEqual({ bucket: 'photos-1', key: 'a/b c.png' });
    expect(parseS3Url('s3://photos-1')).toEqual({ bucket: 'photos-1', key: '' });
    expect(() => parseS3Url('s3://Photos/x')).toThrow(/"Photos" is not a bucket name/);
    expect(() => parseS3Url('s3://ab/x')).toThrow(/not a bucket name/);
  });
});

describe('the object store over a real S3 protocol server', () => {
  it('lists a prefix page by page in key order, with ETags and sizes; reads ranges; HEAD of a missing key is undefined', async () => {
    const s3 = await startS3Server();
    await s3.bucket('data');
    const objects: Record<string, Buffer> = {};
    for (let i = 0; i < 7; i++) objects[`photos/${String(i).padStart(2, '0')}.png`] = pngBytes(`img${i}`);
    await s3.put('data', { ...objects, 'other/x.png': pngBytes('x') });
    await withEnv(s3.env(), async () => {
      const store = createObjectStore({ endpoint: s3.endpoint });
      try {
        const pages: string[][] = [];
        for await (const page of store.list('data', 'photos/', { pageSize: 3 })) pages.push(page.map((o) => o.key));
        expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(pages.flat()).toEqual(Object.keys(objects));
        const head = await store.head('data', 'photos/00.png');
        expect(head?.size).toBe(objects['photos/00.png']?.length);
        expect(head?.etag).toMatch(/^[0-9a-f]{32}$/);
        expect(await store.head('data', 'photos/nope.png')).toBeUndefined();
        const bytes = objectBytes(store, parseS3Url('s3://data/photos/01.png'));
        expect(await bytes.byteLength()).toBe(objects['photos/01.png']?.length);
        expect(Buffer.from(await bytes.slice(1, 4)).toString('latin1')).toBe('PNG');
        const streamed: Buffer[] = [];
        for await (const chunk of bytes.stream()) streamed.push(Buffer.from(chunk));
        expect(Buffer.concat(streamed).equals(objects['photos/01.png'] as Buffer)).toBe(true);
      } finally {
        store.close();
      }
    });
  });

  it('a missing bucket, a missing object and a refused key id each fail with one line naming the bucket or object, and no credential', async () => {
    const s3 = await startS3Server();
    await s3.bucket('data');
    await withEnv(s3.env(), async () => {
      const store = createObjectStore({ endpoint: s3.endpoint });
      try {
        const missingBucket = await store.checkBucket('no-such-bucket', 'list').catch((e: unknown) => e);
        expect(missingBucket).toBeInstanceOf(StorageError);
        expect((missingBucket as StorageError).code).toBe('STORAGE_NOT_FOUND');
        expect((missingBucket as Error).message).toMatch(/bucket no-such-bucket does not exist/);
        const missingObject = await objectBytes(store, parseS3Url('s3://data/manifests/train.csv'))
          .byteLength()
          .catch((e: unknown) => e);
        expect((missingObject as StorageError).code).toBe('STORAGE_NOT_FOUND');
        expect((missingObject as Error).message).toMatch(/s3:\/\/data\/manifests\/train\.csv .*no such object/);
      } finally {
        store.close();
      }
    });
    await withEnv({ ...s3.env(), AWS_ACCESS_KEY_ID: 'AKIAWRONGWRONGWRONG', AWS_SECRET_ACCESS_KEY: 'very-secret-value' }, async () => {
      const store = createObjectStore({ endpoint: s3.endpoint });
      try {
        const denied = await store.checkBucket('data', 'list').catch((e: unknown) => e);
        expect((denied as StorageError).code).toBe('STORAGE_DENIED');
        expect((denied as Error).message).toMatch(/bucket data .*refused the credentials.*AWS_ACCESS_KEY_ID/);
        expect((denied as Error).message).not.toContain('very-secret-value');
        expect((denied as Error).message.split('\n')).toHaveLength(1);
      } finally {
        store.close();
      }
    });
    await withEnv({ ...s3.env(), AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_PROFILE: undefined }, async () => {
      const store = createObjectStore({ endpoint: s3.endpoint });
      try {
        const none = await store.checkBucket('data', 'list').catch((e: unknown) => e);
        expect((none as StorageError).code).toBe('STORAGE_DENIED');
        expect((none as Error).message).toMatch(/bucket data: no AWS credentials were found; set AWS_ACCESS_KEY_ID/);
      } finally {
        store.close();
      }
    });
    expect(S3RVER_KEY).toBe('S3RVER');
  });

  it('writes with PUT and with a multipart upload; presigned URLs read the object', async () => {
    const s3 = await startS3Server();
    await s3.bucket('data');
    await withEnv(s3.env(), async () => {
      const store = createObjectStore({ endpoint: s3.endpoint });
      try {
        await store.put('data', 'a.txt', 'hello', 'text/plain');
        expect(Buffer.from(await store.read('data', 'a.txt')).toString()).toBe('hello');
        const big = Buffer.alloc(11 * 1024 * 1024, 7);
        await store.upload('data', 'results/big.bin', big, 'application/octet-stream');
        expect((await store.head('data', 'results/big.bin'))?.size).toBe(big.length);
        const url = await store.presign('data', 'a.txt', 600, new Date());
        expect(url).toMatch(/X-Amz-Expires=600/);
        const fetched = await fetch(url);
        expect(await fetched.text()).toBe('hello');
      } finally {
        store.close();
      }
    });
  });
});
