// Figure: a million rows end to end (issue 19 item 6). `falbatch enqueue` of BENCH_ROWS rows (1M),
// then BENCH_WORKERS `falbatch work` processes against a fast emulator (its own process, zero
// latency) until BENCH_WORK_ROWS rows are done (all of them by default), then `falbatch export` of
// the whole batch. Reported: each phase's time, Redis's used_memory (sampled every second: its
// peak), each worker's RSS over time (is it flat?), and the export checked: every row once, in
// manifest order, the rows done `ok`, the emulator billing each at most once.
//
// A million rows through workers takes about half an hour on 2 cores (~500 rows/s); with
// BENCH_WORK_ROWS=200000 the rest stay pending and the export lists them so.
//
//   npm run build && node bench/million.mjs
//   BENCH_ROWS=1000000 BENCH_WORK_ROWS=200000 BENCH_WORKERS=2 BENCH_CONCURRENCY=32 BENCH_RUNNERS=256
import { randomUUID } from 'node:crypto';
import { createReadStream, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { getStatus, openContext, resolveConfig, silentLogger } from '../dist/index.js';
import { benchRedis } from './lib/bench-redis.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { falbatchEnv, markdownTable, round, rssOf, runFalbatch, spawnNode, startEmulator, until } from './lib/processes.mjs';
import { usedMemory } from './lib/redis-memory.mjs';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const WORK_ROWS = Math.min(ROWS, Number(process.env.BENCH_WORK_ROWS ?? ROWS));
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const RUNNERS = Number(process.env.BENCH_RUNNERS ?? 256);
const MiB = 2 ** 20;
const say = (text) => process.stderr.write(`${text}\n`);

const redisServer = await benchRedis();
const redis = new Redis(redisServer.url);
const manifest = writeManifest(ROWS, 'million');
const emulator = await startEmulator(['--runners', String(RUNNERS), '--latency', '0ms', '--seed', '1']);
const prefix = `bench-million-${randomUUID().slice(0, 8)}`;
const env = falbatchEnv(redisServer.url, emulator.url);
const ctx = await openContext(resolveConfig({ REDIS_URL: redisServer.url }, { prefix }), { log: silentLogger });
const load = [loadavg()[0]];
const redisSamples = [];
const sampler = setInterval(() => {
  void usedMemory(redis).then(
    (bytes) => redisSamples.push(bytes),
    () => undefined,
  );
}, 1000);
const workers = [];
const figures = {};
try {
  const redisBefore = await usedMemory(redis);
  let started = performance.now();
  say(`enqueue ${ROWS} rows…`);
  await runFalbatch(['enqueue', manifest.path, '--batch', 'million', '--prefix', prefix, '--log-level', 'error'], env);
  figures.enqueueSeconds = (performance.now() - started) / 1000;
  figures.redisAfterEnqueueMiB = round(((await usedMemory(redis)) - redisBefore) / MiB, 1);
  say(`  ${figures.enqueueSeconds.toFixed(1)} s, Redis +${figures.redisAfterEnqueueMiB} MiB`);

  started = performance.now();
  for (let i = 0; i < WORKERS; i++) {
    const worker = spawnNode(['work', '--concurrency', String(CONCURRENCY), '--prefix', prefix, '--log-level', 'warn'], { env });
    workers.push({ worker, rss: [] });
  }
  let done = 0;
  let lastSaid = 0;
  await until(
    `${WORK_ROWS} rows done`,
    async () => {
      emulator.assertRunning();
      for (const w of workers) {
        w.worker.assertRunning();
        const rss = rssOf(w.worker.pid);
        if (rss !== undefined) w.rss.push({ done, rss });
      }
      const status = await getStatus(ctx, 'million');
      done = status.ok + status.failed;
      if (performance.now() - lastSaid > 30_000) {
        lastSaid = performance.now();
        say(`  ${done} rows done, worker RSS ${workers.map((w) => Math.round((w.rss.at(-1)?.rss ?? 0) / MiB)).join(' / ')} MiB`);
      }
      return done >= WORK_ROWS;
    },
    { everyMs: 1000, timeoutMs: 6 * 3_600_000 },
  );
  figures.workSeconds = (performance.now() - started) / 1000;
  figures.rowsDone = done;
  for (const w of workers) await w.worker.stop();

  started = performance.now();
  const out = join(manifest.dir, 'results.jsonl');
  await runFalbatch(['export', '--batch', 'million', '--out', out, '--prefix', prefix, '--log-level', 'error'], env, [0, 2]);
  figures.exportSeconds = (performance.now() - started) / 1000;
  figures.export = await checkExport(out);
  const stats = await emulator.stats();
  figures.billed = stats.billed;
  figures.duplicateBilled = stats.duplicateBilled;
  figures.redisPeakMiB = round((Math.max(...redisSamples) - redisBefore) / MiB, 1);
} finally {
  clearInterval(sampler);
  for (const w of workers) await w.worker.stop();
  await ctx.close();
  await emulator.close();
  redis.disconnect();
  await redisServer.stop();
  rmSync(manifest.dir, { recursive: true, force: true });
}
load.push(loadavg()[0]);

/** Reads the export: rows in manifest order (the prompt says the row's index), each once, counted by status. */
async function checkExport(path) {
  let rows = 0;
  let inOrder = true;
  const statuses = {};
  for await (const line of createInterface({ input: createReadStream(path) })) {
    if (line.trim() === '') continue;
    const row = JSON.parse(line);
    if (row.prompt !== `caption ${rows}`) inOrder = false;
    statuses[row.status] = (statuses[row.status] ?? 0) + 1;
    rows++;
  }
  return { rows, inOrder, statuses };
}

const rssRows = workers.map((w, i) => {
  const at = (fraction) => w.rss.find((s) => s.done >= fraction * WORK_ROWS)?.rss ?? w.rss.at(-1)?.rss ?? 0;
  const rss = w.rss.map((s) => s.rss);
  return [`work ${i + 1}`, ...[at(0), at(0.1), at(0.5), at(0.9), Math.max(...rss), rss.at(-1) ?? 0].map((v) => round(v / MiB, 0))];
});
console.log(
  `A million rows end to end: ${ROWS} rows enqueued, ${figures.rowsDone} worked by ${WORKERS} \`falbatch work\` (--concurrency ${CONCURRENCY}) against a zero-latency emulator, then exported; ` +
    `${redisServer.what}; load average ${load.map((l) => l.toFixed(1)).join(' → ')}\n\n` +
    markdownTable(
      ['enqueue', 'work', 'rows/s (work)', 'export', 'Redis after enqueue', 'Redis peak', 'export rows', 'in order', 'statuses', 'billed', 'billed twice'],
      [
        [
          `${figures.enqueueSeconds.toFixed(1)} s`,
          `${figures.workSeconds.toFixed(0)} s`,
          Math.round(figures.rowsDone / figures.workSeconds),
          `${figures.exportSeconds.toFixed(1)} s`,
          `${figures.redisAfterEnqueueMiB} MiB`,
          `${figures.redisPeakMiB} MiB`,
          figures.export.rows,
          figures.export.inOrder ? 'yes' : 'NO',
          JSON.stringify(figures.export.statuses),
          figures.billed,
          figures.duplicateBilled,
        ],
      ],
    ) +
    '\n\nWorker RSS (MiB) at 0, 10, 50 and 90 % of the rows worked, peak and end:\n\n' +
    markdownTable(['process', 'start', '10 %', '50 %', '90 %', 'peak', 'end'], rssRows),
);
console.log(JSON.stringify({ bench: 'million', rows: ROWS, workRows: WORK_ROWS, workers: WORKERS, figures, load }, null, 2));
