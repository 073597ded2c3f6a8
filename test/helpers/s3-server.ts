import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { onTestFinished } from 'vitest';
import { ROOT } from './harness.js';

/** The access key s3rver accepts (it refuses any other key id, but checks no signature). */
export const S3RVER_KEY = 'S3RVER';

export interface TestBucketServer {
  /** `http://127.0.0.1:<port>`: pass as --s3-endpoint / AWS_ENDPOINT_URL. */
  readonly endpoint: string;
  /** Environment for a spawned CLI (credentials, endpoint, region). */
  env(): Record<string, string>;
  /** Creates a bucket. */
  bucket(name: string): Promise<void>;
  /** Puts objects: key → bytes. */
  put(bucket: string, objects: Record<string, Buffer | string>): Promise<void>;
  /** A client for checking what the tests wrote (path style, the test credentials). */
  readonly client: S3Client;
}

/**
 * A real S3 protocol server (s3rver) on a free port, storing into a temp folder, closed when the
 * test ends: ListObjectsV2, HEAD, GET with ranges, PUT and multipart uploads, path-style, signed
 * requests.
 */
export async function startS3Server(): Promise<TestBucketServer> {
  const directory = mkdtempSync(join(tmpdir(), 'falbatch-s3-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', join(ROOT, 'test/fixtures/s3rver.mjs'), directory], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = /^(\{.*\})\n/.exec(out)?.[1];
      if (line) resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited (${code}) before listening`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  onTestFinished(async () => {
    client.destroy();
    child.stdin.end();
    await exited;
    rmSync(directory, { recursive: true, force: true });
  });
  return {
    endpoint,
    client,
    env: () => ({
      AWS_ACCESS_KEY_ID: S3RVER_KEY,
      AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: endpoint,
      // No shared config of the machine's user may answer instead.
      AWS_CONFIG_FILE: join(directory, 'no-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(directory, 'no-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
    async bucket(name) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    async put(bucket, objects) {
      for (const [key, body] of Object.entries(objects)) await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
  };
}
