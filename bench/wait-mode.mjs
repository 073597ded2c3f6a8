// Figure: time a row waits beyond fal's own processing, and HTTP calls per row, for the two ways a
// worker can learn that its fal request finished: the SSE status stream, or polling every 500 ms
// (fal's default interval). Baseline, in the same run: the emulator's processing time itself.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createFalEmulator } from '../dist/emulator/create-fal-emulator.js';
import { openContext, resolveConfig, runBatch } from '../dist/index.js';
import { readFileSync } from 'node:fs';

const ROWS = Number(process.env.BENCH_ROWS ?? 200);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 700);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-'));
const manifest = join(dir, 'rows.csv');
writeFileSync(manifest, `image_url,prompt\n${Array.from({ length: ROWS }, (_, i) => `https://example.com/${i}.jpg,bench ${i}`).join('\n')}\n`);

async function measure(mode) {
  const emulator = await createFalEmulator({ key: 'k', runners: 40, latency: `${LATENCY_MS}ms` });
  const prefix = `bench-wait-${mode}-${Date.now()}`;
  const config = resolveConfig({ REDIS_URL, FAL_KEY: 'k', FAL_BASE_URL: emulator.url }, { prefix, waitMode: mode, concurrency: 40 });
  const ctx = await openContext(config);
  const started = performance.now();
  const summary = await runBatch(ctx, { manifest, out: join(dir, `${mode}.jsonl`) });
  const seconds = (performance.now() - started) / 1000;
  const rows = readFileSync(join(dir, `${mode}.jsonl`), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const meanLatency = rows.reduce((sum, r) => sum + r.latency_ms, 0) / rows.length;
  const stats = emulator.stats();
  await ctx.close();
  await emulator.close();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  return {
    mode,
    ok: summary.export.ok,
    meanLatencyMs: Math.round(meanLatency),
    wastedMsPerRow: Math.round(meanLatency - LATENCY_MS),
    statusCallsPerRow: Number(((stats.statusCalls + stats.streamCalls) / ROWS).toFixed(2)),
    rowsPerSecond: Number((ROWS / seconds).toFixed(1)),
  };
}

const results = [];
for (const mode of ['poll', 'stream']) results.push(await measure(mode));
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ figure: 'wait-mode', rows: ROWS, falProcessingMs: LATENCY_MS, results }));
