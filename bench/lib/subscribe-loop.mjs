// The bare script a falbatch worker is measured against in bench/overhead-per-row.mjs: p-limit
// around fal.subscribe (streaming), no queue, nothing saved, in a process of its own. Unlike
// subscribe-script.mjs it tells when each row finished and what CPU the process used, for a steady
// rate and a cost per row. Env: FAL_BASE_URL (the emulator), BENCH_ROWS, BENCH_CONCURRENCY;
// BENCH_BASELINE_FETCH=keep-alive gives the client falbatch's own HTTP transport instead of the
// global fetch (what is left between the two is the queue's cost alone). Prints one JSON line:
// { ok, firstAt, lastAt, cpuMs }: when the first and the last row finished (ms since the epoch), and
// the process's CPU time, start-up included.
import { createFalClient } from '@fal-ai/client';
import pLimit from 'p-limit';
import { createHttpFetch } from '../../dist/fal/http-fetch.js';
import { createRoutedFetch } from '../../dist/fal/routing.js';

// The inputs falbatch sends for the benchmarks' manifests (bench/lib/manifest.mjs).
const inputs = Array.from({ length: Number(process.env.BENCH_ROWS) }, (_, i) => ({ image_url: `https://example.com/${i}.jpg`, prompt: `caption ${i}` }));
const inner = process.env.BENCH_BASELINE_FETCH === 'keep-alive' ? createHttpFetch() : globalThis.fetch;
const fal = createFalClient({ credentials: 'bench-key', fetch: createRoutedFetch(process.env.FAL_BASE_URL ?? '', inner) });
const limit = pLimit(Number(process.env.BENCH_CONCURRENCY));
let ok = 0;
let firstAt = Infinity;
let lastAt = 0;
await Promise.all(
  inputs.map((input) =>
    limit(async () => {
      const answer = await fal.subscribe('fal-ai/llava-next', { input, mode: 'streaming' });
      if (answer.data?.output !== undefined) ok++;
      const now = Date.now();
      firstAt = Math.min(firstAt, now);
      lastAt = Math.max(lastAt, now);
    }),
  ),
);
const cpu = process.cpuUsage();
console.log(JSON.stringify({ ok, firstAt, lastAt, cpuMs: Math.round((cpu.user + cpu.system) / 1000) }));
