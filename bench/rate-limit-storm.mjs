// Figure: how much time falbatch's throttle adds to a storm of 429s beyond what fal asked for.
// For STORM_MS every submit is answered 429 with Retry-After 1 s; then the storm ends. The ideal
// is the storm, plus the same batch's time without a storm (measured in the same run): what is
// left over is the throttle's own cost (waits longer than Retry-After, idle slots after the storm).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { createFalEmulator } from '../dist/emulator/create-fal-emulator.js';
import { openContext, resolveConfig, runBatch } from '../dist/index.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 150);
const RUNNERS = Number(process.env.BENCH_RUNNERS ?? 8);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 200);
const STORM_MS = Number(process.env.BENCH_STORM_MS ?? 10_000);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-'));
const manifest = join(dir, 'rows.csv');
writeFileSync(manifest, `image_url,prompt\n${Array.from({ length: ROWS }, (_, i) => `https://example.com/${i}.jpg,caption ${i}`).join('\n')}\n`);

async function once(storm) {
  const emulator = await createFalEmulator({
    key: 'k',
    runners: RUNNERS,
    latency: `${LATENCY_MS}ms`,
    retryAfterSeconds: 1,
    faults: storm ? ['429@submit=1'] : [],
  });
  const prefix = `bench-storm-${Date.now()}`;
  const config = resolveConfig({ REDIS_URL, FAL_KEY: 'k', FAL_BASE_URL: emulator.url }, { prefix, concurrency: RUNNERS });
  const ctx = await openContext(config);
  const timer = storm ? setTimeout(() => emulator.setFaults([]), STORM_MS) : undefined;
  const started = performance.now();
  const summary = await runBatch(ctx, { manifest, out: join(dir, 'out.csv') });
  const seconds = (performance.now() - started) / 1000;
  clearTimeout(timer);
  const stats = emulator.stats();
  await ctx.close();
  await emulator.close();
  await deletePrefix(REDIS_URL, prefix);
  return { seconds, ok: summary.export.ok, rateLimited: stats.faults['429@submit'] ?? 0, billed: stats.billed };
}

const calm = await once(false);
const storm = await once(true);
rmSync(dir, { recursive: true, force: true });
const ideal = STORM_MS / 1000 + calm.seconds;
console.log(
  JSON.stringify({
    figure: 'rate-limit-storm',
    rows: ROWS,
    runners: RUNNERS,
    falProcessingMs: LATENCY_MS,
    stormSeconds: STORM_MS / 1000,
    retryAfterSeconds: 1,
    baseline: {
      what: 'the same batch without a storm, plus the storm itself',
      seconds: Number(ideal.toFixed(2)),
      calmSeconds: Number(calm.seconds.toFixed(2)),
    },
    falbatch: {
      what: 'falbatch run through the storm',
      seconds: Number(storm.seconds.toFixed(2)),
      ok: storm.ok,
      answered429: storm.rateLimited,
      billed: storm.billed,
    },
    addedSeconds: Number((storm.seconds - ideal).toFixed(2)),
    ratio: Number((storm.seconds / ideal).toFixed(3)),
  }),
);
