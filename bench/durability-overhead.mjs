// Figure: what falbatch's durability (Redis queue, saved request ids, stored results, export) costs
// in wall time against the simplest thing that works, measured in the same run: a script that runs
// fal.subscribe over the same rows under a p-limit concurrency limiter (no queue, nothing saved).
// Both drive the same emulator (fal's capacity: R runners, fixed processing time).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFalClient } from '@fal-ai/client';
import pLimit from 'p-limit';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { createFalEmulator } from '../dist/emulator/create-fal-emulator.js';
import { createRoutedFetch, openContext, resolveConfig, runBatch } from '../dist/index.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1000);
const RUNNERS = Number(process.env.BENCH_RUNNERS ?? 40);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 500);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-'));
const rows = Array.from({ length: ROWS }, (_, i) => ({ image_url: `https://example.com/${i}.jpg`, prompt: `caption ${i}` }));
const manifest = join(dir, 'rows.csv');
writeFileSync(manifest, `image_url,prompt\n${rows.map((r) => `${r.image_url},${r.prompt}`).join('\n')}\n`);

async function baseline() {
  const emulator = await createFalEmulator({ key: 'k', runners: RUNNERS, latency: `${LATENCY_MS}ms` });
  const fal = createFalClient({ credentials: 'k', fetch: createRoutedFetch(emulator.url) });
  const limit = pLimit(RUNNERS);
  const started = performance.now();
  const answers = await Promise.all(rows.map((input) => limit(() => fal.subscribe('fal-ai/llava-next', { input, mode: 'streaming' }))));
  const seconds = (performance.now() - started) / 1000;
  await emulator.close();
  return { seconds, ok: answers.length };
}

async function falbatch() {
  const emulator = await createFalEmulator({ key: 'k', runners: RUNNERS, latency: `${LATENCY_MS}ms` });
  const prefix = `bench-durability-${Date.now()}`;
  const config = resolveConfig({ REDIS_URL, FAL_KEY: 'k', FAL_BASE_URL: emulator.url }, { prefix, concurrency: RUNNERS });
  const ctx = await openContext(config);
  const started = performance.now();
  const summary = await runBatch(ctx, { manifest, out: join(dir, 'out.csv') });
  const seconds = (performance.now() - started) / 1000;
  await ctx.close();
  await emulator.close();
  await deletePrefix(REDIS_URL, prefix);
  return { seconds, ok: summary.export.ok };
}

const ideal = (Math.ceil(ROWS / RUNNERS) * LATENCY_MS) / 1000;
// Rounds alternate the two, so drift in what else the machine runs hits both alike; medians reported.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const runs = { baseline: [], falbatch: [] };
for (let round = 0; round < ROUNDS; round++) {
  runs.baseline.push(await baseline());
  runs.falbatch.push(await falbatch());
}
const median = (list) => [...list].sort((a, b) => a.seconds - b.seconds)[Math.floor(list.length / 2)];
const base = median(runs.baseline);
const ours = median(runs.falbatch);
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    figure: 'durability-overhead',
    rows: ROWS,
    runners: RUNNERS,
    falProcessingMs: LATENCY_MS,
    idealSeconds: ideal,
    baseline: { what: 'p-limit around fal.subscribe (streaming)', seconds: Number(base.seconds.toFixed(2)), ok: base.ok },
    falbatch: { what: 'falbatch run (enqueue + work + export)', seconds: Number(ours.seconds.toFixed(2)), ok: ours.ok },
    ratio: Number((ours.seconds / base.seconds).toFixed(3)),
    samples: { baseline: runs.baseline.map((r) => Number(r.seconds.toFixed(2))), falbatch: runs.falbatch.map((r) => Number(r.seconds.toFixed(2))) },
  }),
);
