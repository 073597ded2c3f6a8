// Figure: what uploading local images once (the default) saves against sending them inline
// (--inline-images), for a manifest whose rows share images: enqueue time, and Redis memory held by
// the enqueued batch (10,000 jobs, nobody working them yet). Also a rerun into a new batch with the
// upload cache warm, and uploads downscaled with --max-side. The fal emulator runs in this process
// and stores the uploads. Redis memory is MEMORY USAGE over the run's keys (exact on a shared Redis);
// used_memory's delta is given too.
import { memoryOf, usedMemory } from './lib/redis-memory.mjs';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { createFalEmulator } from '../dist/emulator/create-fal-emulator.js';
import { enqueueManifest, openContext, resolveConfig } from '../dist/index.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 10_000);
const IMAGES = Number(process.env.BENCH_IMAGES ?? 2_000);
const MAX_SIDE = Number(process.env.BENCH_MAX_SIDE ?? 128);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-uploads-'));

// ~100 KB each, half PNG, half JPEG, of random noise so they do not compress to nothing.
let imageBytes = 0;
for (let i = 0; i < IMAGES; i++) {
  const png = i % 2 === 0;
  const [width, height] = png ? [184, 180] : [420, 410];
  const raw = sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } });
  const bytes = png ? await raw.png().toBuffer() : await raw.jpeg({ quality: 75 }).toBuffer();
  imageBytes += bytes.length;
  writeFileSync(join(dir, `img${i}.${png ? 'png' : 'jpg'}`), bytes);
}
const manifest = join(dir, 'rows.csv');
const lines = Array.from({ length: ROWS }, (_, i) => `img${i % IMAGES}.${(i % IMAGES) % 2 === 0 ? 'png' : 'jpg'},caption ${i}`);
writeFileSync(manifest, `image_url,prompt\n${lines.join('\n')}\n`);

async function measure(mode) {
  const emulator = await createFalEmulator({ key: 'k' });
  const prefix = `bench-uploads-${mode}-${Date.now()}`;
  const config = resolveConfig(
    { REDIS_URL, FAL_KEY: 'k', FAL_BASE_URL: emulator.url },
    { prefix, inlineImages: mode === 'inline', maxImageSide: mode === 'max-side' ? MAX_SIDE : undefined },
  );
  const redis = new Redis(REDIS_URL);
  const ctx = await openContext(config);
  try {
    const before = await usedMemory(redis);
    let started = performance.now();
    const first = await enqueueManifest(ctx, { manifest, batch: 'first' });
    const seconds = (performance.now() - started) / 1000;
    const usedDelta = (await usedMemory(redis)) - before;
    const memory = await memoryOf(redis, prefix);
    const { uploads, uploadedBytes } = emulator.stats();
    // Again, into a new batch: the cache is warm (uploads) or the bytes are read again (inline).
    started = performance.now();
    await enqueueManifest(ctx, { manifest, batch: 'second' });
    const rerunSeconds = (performance.now() - started) / 1000;
    return {
      enqueueSeconds: Number(seconds.toFixed(2)),
      rowsPerSecond: Math.round(first.rows / seconds),
      redisMiB: Number((memory.bytes / 2 ** 20).toFixed(1)),
      usedMemoryDeltaMiB: Number((usedDelta / 2 ** 20).toFixed(1)),
      keys: memory.keys,
      uploads,
      uploadedMiB: Number((uploadedBytes / 2 ** 20).toFixed(1)),
      rerunNewBatchSeconds: Number(rerunSeconds.toFixed(2)),
      rerunUploads: emulator.stats().uploads - uploads,
      added: first.added,
      rejected: first.rejected,
    };
  } finally {
    await ctx.close();
    await emulator.close();
    await deletePrefix(REDIS_URL, prefix);
    redis.disconnect();
  }
}

const uploaded = await measure('upload');
const inline = await measure('inline');
const scaled = await measure('max-side');
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    figure: 'uploads',
    rows: ROWS,
    images: IMAGES,
    meanImageKiB: Number((imageBytes / IMAGES / 1024).toFixed(1)),
    uploads: { what: 'default: each distinct image uploaded once, jobs carry the URL', ...uploaded },
    inline: { what: '--inline-images: jobs carry data URIs', ...inline },
    maxSide: { what: `uploads with --max-side ${MAX_SIDE}`, ...scaled },
    memoryRatio: Number((inline.redisMiB / uploaded.redisMiB).toFixed(1)),
    timeRatio: Number((inline.enqueueSeconds / uploaded.enqueueSeconds).toFixed(2)),
  }),
);
