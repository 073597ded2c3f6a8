import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createFalClient, ValidationError } from '@fal-ai/client';
import sharp from 'sharp';
import { describe, expect, it, onTestFinished } from 'vitest';
import { resolveConfig, type ConfigOverrides } from '../../src/config.js';
import { openContext, type FalbatchContext } from '../../src/context.js';
import { ConfigError, MissingCredentialsError } from '../../src/errors.js';
import { createRoutedFetch } from '../../src/fal/routing.js';
import { silentLogger } from '../../src/log.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { uploadStore } from '../../src/queue/upload-cache.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, FAL_KEY, readCsv, runCliInProcess, type Harness } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

const LLAVA = 'fal-ai/llava-next';

/** A real image of random noise (so it does not compress to nothing), in the given format. */
async function noiseImage(width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const raw = sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } });
  return format === 'png' ? raw.png().toBuffer() : raw.jpeg({ quality: 90 }).toBuffer();
}

/** A context on the harness's namespace and emulator with other settings (closed when the test ends). */
async function contextWith(h: Harness, overrides: ConfigOverrides, env?: Record<string, string>): Promise<FalbatchContext> {
  const config = env
    ? resolveConfig(env, { prefix: h.prefix, backoffBaseMs: 50, backoffMaxMs: 500, ...overrides })
    : resolveConfig({}, { ...h.config, ...overrides });
  const ctx = await openContext(config, { log: silentLogger });
  onTestFinished(() => ctx.close());
  return ctx;
}

interface QueuedJob {
  id: string;
  data: string;
  input: Record<string, unknown>;
}

/** Every BullMQ job hash in the namespace, with its raw data (what Redis holds). */
async function queuedJobs(h: Harness): Promise<QueuedJob[]> {
  const jobs: QueuedJob[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await h.ctx.redis.scan(cursor, 'MATCH', `${h.prefix}:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      if ((await h.ctx.redis.type(key)) !== 'hash') continue;
      const data = await h.ctx.redis.hget(key, 'data');
      if (data === null) continue;
      jobs.push({ id: key, data, input: (JSON.parse(data) as { in: Record<string, unknown> }).in });
    }
  } while (cursor !== '0');
  return jobs;
}

/** Every value of every hash in the namespace, joined: to look for image bytes anywhere. */
async function allHashValues(h: Harness): Promise<string> {
  const values: string[] = [];
  for (const key of await h.ctx.redis.keys(`${h.prefix}:*`)) {
    if ((await h.ctx.redis.type(key)) === 'hash') values.push(...Object.values(await h.ctx.redis.hgetall(key)));
  }
  return values.join('\n');
}

function storageUrl(h: Harness): RegExp {
  return new RegExp(`^${h.emulator.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/v3\\.fal\\.media/files/emulated/`);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('local images are uploaded to fal storage once', () => {
  it('uploads 10 images for 50 rows sharing them, keeps image bytes out of Redis, and uploads nothing on a rerun', async () => {
    const h = await createHarness();
    for (let i = 0; i < 10; i++) h.file(`img${i}.png`, pngBytes(`image ${i}`));
    // Rows sharing an image are next to each other, so they are resolved at the same time.
    const rows = Array.from({ length: 50 }, (_, i) => `r${i},img${Math.floor(i / 5)}.png,describe ${i}`);
    const manifest = h.file('m.csv', ['id,image_url,prompt', ...rows].join('\n'));

    const first = await enqueueManifest(h.ctx, { manifest });
    expect(first).toMatchObject({ rows: 50, added: 50, rejected: 0 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 10, storedFiles: 10, fileReads: 0 });

    const jobs = await queuedJobs(h);
    expect(jobs).toHaveLength(50);
    for (const job of jobs) {
      expect(job.data).not.toContain('base64');
      expect(job.input['image_url']).toMatch(storageUrl(h));
    }
    expect(new Set(jobs.map((j) => j.input['image_url'])).size).toBe(10);
    expect(await allHashValues(h)).not.toContain('base64');
    // The cache: one key per content, with a TTL inside fal's retention (6 days by default).
    const cached = await h.ctx.redis.keys(`${h.prefix}:{jobs}:upload:${uploadStore(h.config.falBaseUrl)}:sha256:*`);
    expect(cached).toHaveLength(10);
    const ttl = await h.ctx.redis.pttl(cached[0] ?? '');
    expect(ttl).toBeGreaterThan(6 * 24 * 3600_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(6 * 24 * 3600_000);

    // The same manifest again (same batch), and in a new batch: no upload, one check per content each time.
    const again = await enqueueManifest(h.ctx, { manifest });
    expect(again).toMatchObject({ rows: 50, added: 0, present: 50 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 10, fileReads: 10 });
    const other = await enqueueManifest(h.ctx, { manifest, batch: 'another-batch' });
    expect(other).toMatchObject({ rows: 50, rejected: 0 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 10, fileReads: 20 });
    // A cache hit does not extend the entry: fal's retention counts from the upload.
    expect(await h.ctx.redis.pttl(cached[0] ?? '')).toBeLessThanOrEqual(ttl);
  });

  it('--strict reads the manifest twice but uploads and checks each content once', async () => {
    const h = await createHarness();
    h.file('a.png', pngBytes('strict'));
    const manifest = h.file('m.csv', ['id,image_url,prompt', ...Array.from({ length: 5 }, (_, i) => `r${i},a.png,describe ${i}`)].join('\n'));
    expect(await enqueueManifest(h.ctx, { manifest, strict: true })).toMatchObject({ added: 5 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 1, fileReads: 0 });
  });

  it('uploads again a cached URL that fal no longer serves, and the row succeeds', async () => {
    const h = await createHarness();
    const image = pngBytes('will expire');
    h.file('a.png', image);
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,a.png,describe it\n');
    await enqueueManifest(h.ctx, { manifest, batch: 'first' });
    const [job] = await queuedJobs(h);
    // Nobody works that batch: its job (with the URL about to expire) is dropped.
    await h.ctx.queue.drain(true);
    const oldUrl = String(job?.input['image_url']);
    expect(oldUrl).toMatch(storageUrl(h));
    expect((await fetch(oldUrl, { method: 'HEAD' })).status).toBe(200);

    const expired = await fetch(`${h.emulator.url}/_emulator/files/expire`, { method: 'POST' });
    expect(await expired.json()).toEqual({ expired: 1 });
    expect((await fetch(oldUrl, { method: 'HEAD' })).status).toBe(404);
    expect((await fetch(oldUrl)).status).toBe(404);
    // A model given the expired URL fails as fal's does: a 422, the image could not be loaded.
    const fal = createFalClient({ credentials: FAL_KEY, fetch: createRoutedFetch(h.emulator.url) });
    const failed = await fal.run(LLAVA, { input: { image_url: oldUrl, prompt: 'describe it' } }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(ValidationError);
    expect((failed as ValidationError).getFieldErrors('image_url')[0]?.msg).toMatch(/^Could not load the image: could not download .*404/);

    const out = join(h.dir, 'out.csv');
    const summary = await runBatch(h.ctx, { manifest, batch: 'second', out });
    expect(summary.export).toMatchObject({ rows: 1, ok: 1 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 2, storedFiles: 1, expiredFiles: 1 });
    const newUrl = await h.ctx.redis.get(h.ctx.keys.upload(uploadStore(h.config.falBaseUrl), `sha256:${sha256(image)}`));
    expect(newUrl).toMatch(storageUrl(h));
    expect(newUrl).not.toBe(oldUrl);
    expect((await readCsv(out))[0]).toMatchObject({ id: 'a', status: 'ok', image_url: 'a.png' });
  });

  it('keeps a cached URL whose check cannot tell (no connection): the cache lives shorter than fal keeps files', async () => {
    const h = await createHarness();
    const image = pngBytes('cached');
    h.file('a.png', image);
    const unreachable = 'http://127.0.0.1:1/v3.fal.media/files/emulated/cached.png';
    await h.ctx.redis.set(h.ctx.keys.upload(uploadStore(h.config.falBaseUrl), `sha256:${sha256(image)}`), unreachable, 'PX', 60_000);
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,a.png,describe\n');
    expect(await enqueueManifest(h.ctx, { manifest })).toMatchObject({ added: 1 });
    const [job] = await queuedJobs(h);
    expect(job?.input['image_url']).toBe(unreachable);
    expect(h.emulator.stats().uploads).toBe(0);
  });

  it('retries transient upload failures; an upload that fails for good rejects only the rows that need it, with the reason', async () => {
    const h = await createHarness({ config: { attempts: 3 } });
    h.file('a.png', pngBytes('a'));
    h.file('b.png', pngBytes('b'));
    const manifest = h.file(
      'm.csv',
      ['id,image_url,prompt', 'a1,a.png,one', 'url,https://example.com/x.jpg,two', 'a2,a.png,three', 'b1,b.png,four'].join('\n'),
    );

    // Transient: the first two upload calls answer 503, the retries get through.
    h.emulator.setFaults(['503@upload=1x2']);
    const retried = await enqueueManifest(h.ctx, { manifest, batch: 'transient' });
    expect(retried).toMatchObject({ added: 4, rejected: 0 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 2, faults: { '503@upload': 2 } });

    // For good: every upload answers 500; three attempts per content, then its rows are rejected.
    h.file('c.png', pngBytes('c'));
    h.file('d.png', pngBytes('d'));
    const failing = h.file(
      'f.csv',
      ['id,image_url,prompt', 'c1,c.png,one', 'url,https://example.com/x.jpg,two', 'c2,c.png,three', 'd1,d.png,four', 'a3,a.png,five'].join('\n'),
    );
    h.emulator.reset();
    h.emulator.setFaults(['500@upload=1']);
    const summary = await enqueueManifest(h.ctx, { manifest: failing, batch: 'failing' });
    expect(summary).toMatchObject({ rows: 5, added: 2, rejected: 3 });
    const reason = (file: string): string =>
      `local file "${file}" could not be uploaded to fal storage (3 attempts): fal answered 500 internal_error: Internal server error; enqueue again to retry it, or pass --inline-images`;
    expect(summary.rejections).toEqual([
      { line: 2, reason: reason('c.png') },
      { line: 4, reason: reason('c.png') },
      { line: 5, reason: reason('d.png') },
    ]);
    // Two contents, three attempts each; a.png came from the cache.
    expect(h.emulator.stats()).toMatchObject({ uploads: 0, faults: { '500@upload': 6 } });
  });

  it('stops the enqueue when fal storage refuses the account, or when there are no credentials (a URL manifest needs none)', async () => {
    const h = await createHarness();
    h.file('a.png', pngBytes('a'));
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,a.png,describe\n');
    h.emulator.setKey('another-key');
    const refused = await enqueueManifest(h.ctx, { manifest }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as Error).message).toMatch(/^fal storage refused to take local images \(401: .*\)\. Check FAL_KEY .* or pass --inline-images/);
    h.emulator.setKey(FAL_KEY);

    const bare = await contextWith(h, {}, { REDIS_URL: h.config.redisUrl });
    const missing = await enqueueManifest(bare, { manifest, batch: 'no-key' }).catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(MissingCredentialsError);
    expect((missing as Error).message).toMatch(/^FAL_KEY is not set, so falbatch cannot upload the manifest's local images to fal storage\..*--inline-images/);
    const urls = h.file('urls.csv', 'id,image_url,prompt\nu,https://example.com/a.jpg,describe\n');
    expect(await enqueueManifest(bare, { manifest: urls, batch: 'urls' })).toMatchObject({ added: 1 });
    expect(h.emulator.stats().uploads).toBe(0);
  });
});

describe('local image checks and options', () => {
  it('rejects a text file named .jpg with its line, from its bytes, and a data URI that is text', async () => {
    const h = await createHarness();
    h.file('photo.jpg', 'id,caption\n1,this is a CSV saved as .jpg\n');
    h.file('ok.png', pngBytes('ok'));
    const manifest = h.file(
      'm.csv',
      ['id,image_url,prompt', 'ok,ok.png,fine', 'text,photo.jpg,describe', 'uri,"data:image/png;base64,aGVsbG8gd29ybGQ=",describe'].join('\n'),
    );
    const summary = await enqueueManifest(h.ctx, { manifest });
    expect(summary.rejections).toEqual([
      { line: 3, reason: 'local file "photo.jpg" is not an image: its bytes are text/plain, not a PNG, JPEG, WebP, GIF or BMP image (whatever its name says)' },
      { line: 4, reason: 'image_url holds a data URI whose bytes are text/plain, not a PNG, JPEG, WebP, GIF or BMP image' },
    ]);
    expect(h.emulator.stats().uploads).toBe(1);
  });

  it('--inline-images sends local images inside the jobs as data URIs, and needs no fal credentials to enqueue', async () => {
    const h = await createHarness();
    const image = pngBytes('inline');
    h.file('a.png', image);
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,a.png,describe\n');
    const inline = await contextWith(h, { inlineImages: true }, { REDIS_URL: h.config.redisUrl });
    expect(await enqueueManifest(inline, { manifest })).toMatchObject({ added: 1 });
    const [job] = await queuedJobs(h);
    expect(job?.input['image_url']).toBe(`data:image/png;base64,${image.toString('base64')}`);
    expect(h.emulator.stats().uploads).toBe(0);
    // The same content delivered either way is the same row: an inline run's answers serve an upload run.
    expect(await enqueueManifest(h.ctx, { manifest })).toMatchObject({ added: 0, present: 1 });
  });

  it('--max-side uploads a smaller copy that fits (the file untouched), an image that fits as it is, and a row identity per setting', async () => {
    const h = await createHarness();
    const big = await noiseImage(400, 300, 'jpeg');
    const small = await noiseImage(60, 40, 'png');
    const bigPath = h.file('big.jpg', big);
    h.file('small.png', small);
    const before = statSync(bigPath).mtimeMs;
    const manifest = h.file('m.csv', 'image_url,prompt\nbig.jpg,describe\nsmall.png,describe\n');

    const scaled = await contextWith(h, { maxImageSide: 100 });
    expect(await enqueueManifest(scaled, { manifest, batch: 'scaled' })).toMatchObject({ added: 2 });
    const jobs = await queuedJobs(h);
    for (const job of jobs) expect(job.input['image_url']).toMatch(storageUrl(h));
    const served = await Promise.all(jobs.map(async (j) => Buffer.from(await (await fetch(String(j.input['image_url']))).arrayBuffer())));
    const metas = await Promise.all(served.map((bytes) => sharp(bytes).metadata()));
    const bigCopy = served[metas.findIndex((m) => m.format === 'jpeg')];
    const smallCopy = served[metas.findIndex((m) => m.format === 'png')];
    expect(metas.map((m) => [m.format, m.width, m.height]).sort()).toEqual([
      ['jpeg', 100, 75],
      ['png', 60, 40],
    ]);
    expect(bigCopy?.length).toBeLessThan(big.length / 4);
    expect(smallCopy?.equals(small)).toBe(true);
    // The original is never modified.
    expect(readFileSync(bigPath).equals(big)).toBe(true);
    expect(statSync(bigPath).mtimeMs).toBe(before);

    // Another setting (or none) is another input to fal: the big image's row is a new row; the small one's is the same.
    const summary = await enqueueManifest(h.ctx, { manifest, batch: 'scaled' });
    expect(summary).toMatchObject({ rows: 2, added: 1, present: 1 });
    expect(h.emulator.stats().uploads).toBe(3);
  });

  it('--upload-concurrency bounds the uploads in flight', async () => {
    const h = await createHarness({ config: { uploadConcurrency: 2 } });
    for (let i = 0; i < 4; i++) h.file(`img${i}.png`, pngBytes(`slow ${i}`));
    const manifest = h.file('m.csv', ['image_url,prompt', ...Array.from({ length: 4 }, (_, i) => `img${i}.png,describe`)].join('\n'));
    // Each upload is answered 2 s late, so uploads the client lets overlap do overlap.
    h.emulator.setFaults(['slow@upload=1']);
    expect(await enqueueManifest(h.ctx, { manifest })).toMatchObject({ added: 4 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 4, maxUploadsInProgress: 2, uploadsInProgress: 0 });
  });

  it('the CLI takes --inline-images, --upload-concurrency and --max-side, and says how to go on without FAL_KEY', async () => {
    const h = await createHarness();
    h.file('a.png', pngBytes('cli'));
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,a.png,describe\n');
    const cli = runCliInProcess;

    const noKey = { REDIS_URL: h.config.redisUrl, FALBATCH_PREFIX: h.prefix };
    const refused = await cli(['enqueue', manifest, '--batch', 'no-key'], noKey);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/FAL_KEY is not set, so falbatch cannot upload the manifest's local images.*--inline-images/s);
    const inline = await cli(['enqueue', manifest, '--batch', 'inline', '--inline-images'], noKey);
    expect(inline).toMatchObject({ code: 0 });
    const uploaded = await cli(['enqueue', manifest, '--batch', 'uploaded', '--upload-concurrency', '1', '--max-side', '64', '--json'], h.env());
    expect(uploaded.code).toBe(0);
    expect(JSON.parse(uploaded.stdout)).toMatchObject({ added: 1, rejected: 0 });
    expect(h.emulator.stats().uploads).toBe(1);
    const bad = await cli(['enqueue', manifest, '--upload-concurrency', '0'], h.env());
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('Expected --upload-concurrency to be an integer from 1 to 256, got 0');
  });
});
