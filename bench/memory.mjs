// Figure: memory over a long run. (1) The `falbatch work` process's RSS (VmRSS, sampled every
// second from /proc) from start to end of a big batch: does it grow with the rows done? (2) Redis
// memory per row under the default retention: before enqueue, after enqueue, after every row
// finished. Completed jobs are removed; what stays is what export needs (the batch's results hash,
// row order, keys) and the ledger of paid answers. The run ends by exporting the batch (spawned
// `falbatch export`) and counting its rows. Baseline, in the same run: Redis memory of a bare BullMQ
// run of the same rows (addBulk, then a Worker with removeOnComplete: true returning a short string).
//
// Redis memory is INFO's used_memory (its delta counts each key's overhead in Redis's dictionaries;
// on a Redis that others use at the same time it carries their writes too: the run starts a private
// redis-server unless REDIS_URL is set, see lib/bench-redis.mjs) and MEMORY USAGE summed over the
// run's own keys (exact whatever else shares the Redis), also given by kind of key.
//
// The emulator (zero latency, many runners) has a process of its own, and so does each falbatch
// command. `enqueue` runs first; the worker starts when it has returned, or when it waits for
// workers (a queue holding --max-waiting rows), whichever comes first.
//
//   npm run build && node bench/memory.mjs
//   BENCH_ROWS=100000 BENCH_CONCURRENCY=32 BENCH_RUNNERS=256
import { memoryOf, usedMemory } from './lib/redis-memory.mjs';
import { randomUUID } from 'node:crypto';
import { createReadStream, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { cpuSecondsOf, falbatchEnv, markdownTable, round, rssOf, runFalbatch, sleep, spawnNode, startEmulator, until } from './lib/processes.mjs';
import { getStatus, openContext, resolveConfig, silentLogger } from '../dist/index.js';

// 100,000 rows: about 5 minutes on 2 cores (the worker did ~450 rows/s at zero latency); fewer with BENCH_ROWS.
const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const RUNNERS = Number(process.env.BENCH_RUNNERS ?? 256);
const redisServer = await benchRedis();
const REDIS_URL = redisServer.url;
const MiB = 2 ** 20;
const say = (text) => process.stderr.write(`${text}\n`);
const manifest = writeManifest(ROWS, 'memory');
const redis = new Redis(REDIS_URL);

function kindOf(key) {
  return key
    .split(':')
    .map((part) => (part.includes('/') || /^[0-9a-f-]{12,}$/i.test(part) || /^\d+$/.test(part) ? '*' : part))
    .join(':');
}

async function snapshot(prefix) {
  const [used, own] = [await usedMemory(redis), await memoryOf(redis, prefix, kindOf)];
  return { usedMemory: used, ownBytes: own.bytes, ownKeys: own.keys, byKind: own.byKind };
}

/** The baseline: the same rows through bare BullMQ, nothing kept but what BullMQ keeps. */
async function bareBullmq() {
  const prefix = `bench-bare-${randomUUID().slice(0, 8)}`;
  const connections = [new Redis(REDIS_URL, { maxRetriesPerRequest: null }), new Redis(REDIS_URL, { maxRetriesPerRequest: null })];
  const queue = new Queue('rows', { prefix, connection: connections[0] });
  let worker;
  try {
    const before = await snapshot(prefix);
    const started = performance.now();
    for (let from = 0; from < ROWS; from += 1000) {
      const chunk = [];
      for (let i = from; i < Math.min(ROWS, from + 1000); i++) {
        chunk.push({
          name: 'row',
          data: { image_url: `https://example.com/${i}.jpg`, prompt: `caption ${i}` },
          opts: { jobId: `row-${i}`, removeOnComplete: true },
        });
      }
      await queue.addBulk(chunk);
    }
    const enqueued = await snapshot(prefix);
    let done = 0;
    worker = new Worker('rows', async () => 'ok', {
      prefix,
      connection: connections[1],
      concurrency: CONCURRENCY,
    });
    worker.on('completed', () => done++);
    await until('the bare BullMQ run to finish', () => done >= ROWS, { everyMs: 100 });
    const seconds = (performance.now() - started) / 1000;
    await worker.close();
    const finished = await snapshot(prefix);
    return { seconds, before, enqueued, finished };
  } finally {
    await worker?.close();
    await queue.close();
    for (const connection of connections) connection.disconnect();
    await deletePrefix(REDIS_URL, prefix);
  }
}

async function falbatch() {
  const emulator = await startEmulator(['--runners', String(RUNNERS), '--latency', '0ms', '--seed', '1']);
  const prefix = `bench-memory-${randomUUID().slice(0, 8)}`;
  const env = falbatchEnv(REDIS_URL, emulator.url);
  const ctx = await openContext(resolveConfig({ REDIS_URL }, { prefix }), { log: silentLogger });
  const batchStatus = () => getStatus(ctx, 'memory').catch(() => undefined);
  let worker;
  let enqueue;
  try {
    const before = await snapshot(prefix);
    const started = performance.now();
    enqueue = spawnNode(['enqueue', manifest.path, '--batch', 'memory', '--prefix', prefix, '--json', '--log-level', 'warn'], { env });
    // Enqueue returns once every row is stored, or (a queue holding --max-waiting rows) waits for
    // workers: then the worker starts.
    const returned = enqueue.exited.then((code) => ({ code }));
    const waits = enqueue
      .waitFor(/waiting for workers/i, 3_600_000)
      .then(() => ({ waiting: true }))
      .catch(() => new Promise(() => {}));
    const enqueueEnd = await Promise.race([returned, waits]);
    if ('code' in enqueueEnd && enqueueEnd.code !== 0) throw new Error(`falbatch enqueue exited ${enqueueEnd.code}:\n${enqueue.stderr()}`);
    const enqueueSeconds = (performance.now() - started) / 1000;
    const atEnqueue = await batchStatus();
    const enqueued = { ...(await snapshot(prefix)), jobs: atEnqueue?.jobs ?? 0, queued: await queuedJobs(ctx), producerWaiting: 'waiting' in enqueueEnd };
    say(
      `enqueue ${enqueued.producerWaiting ? 'waits for workers' : 'returned'} after ${enqueueSeconds.toFixed(1)} s: ${enqueued.jobs} rows in the batch, ${enqueued.queued} jobs queued`,
    );

    worker = spawnNode(['work', '--concurrency', String(CONCURRENCY), '--prefix', prefix, '--log-level', 'info'], { env });
    await worker.waitFor(/worker started/, 60_000);
    const workStarted = performance.now();
    const cpuAtStart = cpuSecondsOf(worker.pid) ?? 0;
    const samples = [{ seconds: 0, done: 0, rss: rssOf(worker.pid) }];
    let status;
    const sampler = setInterval(() => {
      const rss = rssOf(worker.pid);
      if (rss !== undefined) samples.push({ seconds: (performance.now() - workStarted) / 1000, done: (status?.ok ?? 0) + (status?.failed ?? 0), rss });
    }, 1000);
    let lastSaid = 0;
    await until(
      'the batch to finish',
      async () => {
        emulator.assertRunning();
        worker.assertRunning();
        status = await batchStatus();
        if (performance.now() - lastSaid > 15_000) {
          lastSaid = performance.now();
          say(`  ${(status?.ok ?? 0) + (status?.failed ?? 0)} of ${ROWS} rows done, worker RSS ${((rssOf(worker.pid) ?? 0) / MiB).toFixed(0)} MiB`);
        }
        return status?.finished === true;
      },
      { everyMs: 250, timeoutMs: 3_600_000 },
    );
    clearInterval(sampler);
    const workSeconds = (performance.now() - workStarted) / 1000;
    const workerCpuMsPerRow = (((cpuSecondsOf(worker.pid) ?? 0) - cpuAtStart) * 1000) / ROWS;
    samples.push({ seconds: workSeconds, done: status.ok + status.failed, rss: rssOf(worker.pid) });
    const enqueueCode = await enqueue.exited;
    if (enqueueCode !== 0) throw new Error(`falbatch enqueue exited ${enqueueCode}:\n${enqueue.stderr()}`);
    const finished = { ...(await snapshot(prefix)), queued: await queuedJobs(ctx) };
    const stopCode = await worker.stop();
    if (stopCode !== 0) say(`falbatch work exited ${stopCode}:\n${worker.stderr()}`);

    // What stays in Redis is what export needs: export the batch and count its rows.
    const out = join(manifest.dir, 'results.jsonl');
    await runFalbatch(['export', '--batch', 'memory', '--out', out, '--prefix', prefix, '--log-level', 'error'], env);
    const exported = await countExport(out);
    const stats = await emulator.stats();
    return {
      before,
      enqueued,
      enqueueSeconds,
      finished,
      workSeconds,
      workerCpuMsPerRow,
      status,
      samples,
      exported,
      billed: stats.billed,
      duplicateBilled: stats.duplicateBilled,
    };
  } finally {
    await worker?.stop();
    await enqueue?.stop();
    await ctx.close();
    await emulator.close();
    await deletePrefix(REDIS_URL, prefix);
  }
}

/** Jobs waiting or prioritized in the row queue (not yet taken by a worker). */
async function queuedJobs(ctx) {
  return ctx.queue.getJobCountByTypes('waiting', 'prioritized', 'active', 'delayed');
}

async function countExport(path) {
  let rows = 0;
  let ok = 0;
  for await (const line of createInterface({ input: createReadStream(path) })) {
    if (line.trim() === '') continue;
    rows++;
    if (JSON.parse(line).status === 'ok') ok++;
  }
  return { rows, ok };
}

const load = [loadavg()[0]];
let bare;
let ours;
try {
  say(`bare BullMQ, ${ROWS} rows…`);
  bare = await bareBullmq();
  await sleep(1000);
  say(`falbatch, ${ROWS} rows…`);
  ours = await falbatch();
} finally {
  rmSync(manifest.dir, { recursive: true, force: true });
  redis.disconnect();
  await redisServer.stop();
}
load.push(loadavg()[0]);

const rss = ours.samples.map((s) => s.rss).filter((v) => v !== undefined);
const at = (fraction) => ours.samples.find((s) => s.done >= fraction * ROWS)?.rss;
const rssFigures = {
  startMiB: round(rss[0] / MiB, 1),
  atTenPercentMiB: round((at(0.1) ?? rss[0]) / MiB, 1),
  atHalfMiB: round((at(0.5) ?? rss.at(-1)) / MiB, 1),
  peakMiB: round(Math.max(...rss) / MiB, 1),
  endMiB: round(rss.at(-1) / MiB, 1),
  growthMiB: round((rss.at(-1) - rss[0]) / MiB, 1),
  growthAfterTenPercentMiB: round((rss.at(-1) - (at(0.1) ?? rss[0])) / MiB, 1),
  samples: rss.length,
};
const perRow = (bytes, rows = ROWS) => Math.round(bytes / rows);
const redisFigures = (run, rowsEnqueued) => ({
  usedMemoryMiB: {
    before: round(run.before.usedMemory / MiB, 1),
    afterEnqueue: round(run.enqueued.usedMemory / MiB, 1),
    afterFinished: round(run.finished.usedMemory / MiB, 1),
  },
  usedMemoryBytesPerRow: {
    afterEnqueue: perRow(run.enqueued.usedMemory - run.before.usedMemory, rowsEnqueued),
    afterFinished: perRow(run.finished.usedMemory - run.before.usedMemory),
  },
  ownKeys: { afterEnqueue: run.enqueued.ownKeys, afterFinished: run.finished.ownKeys },
  ownBytesPerRow: { afterEnqueue: perRow(run.enqueued.ownBytes, rowsEnqueued), afterFinished: perRow(run.finished.ownBytes) },
});
const keptByKind = ours.finished.byKind.slice(0, 8).map((k) => ({ kind: k.kind, keys: k.keys, bytesPerRow: round(k.bytes / ROWS, 1) }));
const bareRedis = redisFigures(bare, ROWS);
const oursRedis = redisFigures(ours, ROWS);

console.log(
  `Memory: ${ROWS} rows, zero latency, ${RUNNERS} runners, --concurrency ${CONCURRENCY}, ${redisServer.what}; load average ${load.map((l) => l.toFixed(1)).join(' → ')}\n\n` +
    `falbatch work RSS over ${ours.workSeconds.toFixed(0)} s (${Math.round(ROWS / ours.workSeconds)} rows/s, ${ours.workerCpuMsPerRow.toFixed(1)} ms of CPU per row), sampled every second:\n\n` +
    markdownTable(
      ['start', 'at 10 % of rows', 'at 50 %', 'peak', 'end', 'growth (end − start)', 'growth after 10 %'],
      [
        [
          rssFigures.startMiB,
          rssFigures.atTenPercentMiB,
          rssFigures.atHalfMiB,
          rssFigures.peakMiB,
          rssFigures.endMiB,
          rssFigures.growthMiB,
          rssFigures.growthAfterTenPercentMiB,
        ].map((v) => `${v} MiB`),
      ],
    ) +
    `\n\nRedis memory per row (used_memory delta; MEMORY USAGE of the run's own keys in brackets):\n\n` +
    markdownTable(
      ['', 'after enqueue', 'after every row finished', 'keys left', 'vs bare BullMQ (finished)'],
      [
        [
          'bare BullMQ (baseline): addBulk + Worker, removeOnComplete',
          `${bareRedis.usedMemoryBytesPerRow.afterEnqueue} B (${bareRedis.ownBytesPerRow.afterEnqueue} B)`,
          `${bareRedis.usedMemoryBytesPerRow.afterFinished} B (${bareRedis.ownBytesPerRow.afterFinished} B)`,
          String(bare.finished.ownKeys),
          '1',
        ],
        [
          `falbatch enqueue + work${ours.enqueued.producerWaiting ? ` (enqueue measured when it waited for workers, ${ours.enqueued.jobs} rows in)` : ''}`,
          `${oursRedis.usedMemoryBytesPerRow.afterEnqueue} B (${oursRedis.ownBytesPerRow.afterEnqueue} B)`,
          `${oursRedis.usedMemoryBytesPerRow.afterFinished} B (${oursRedis.ownBytesPerRow.afterFinished} B)`,
          String(ours.finished.ownKeys),
          `${round(oursRedis.ownBytesPerRow.afterFinished / Math.max(1, bareRedis.ownBytesPerRow.afterFinished), 1)} × (own keys)`,
        ],
      ],
    ) +
    `\n\nWhat falbatch leaves in Redis once every row finished, by kind of key (MEMORY USAGE):\n\n` +
    markdownTable(
      ['key', 'keys', 'bytes per row'],
      keptByKind.map((k) => [`\`${k.kind}\``, String(k.keys), String(k.bytesPerRow)]),
    ) +
    `\n\nexport: ${ours.exported.rows} rows, ${ours.exported.ok} ok; queue jobs left after finishing: ${ours.finished.queued}\n`,
);
console.log(
  JSON.stringify({
    figure: 'memory',
    rows: ROWS,
    concurrency: CONCURRENCY,
    runners: RUNNERS,
    redis: redisServer.what,
    loadAverage: load.map((l) => round(l, 1)),
    worker: {
      seconds: round(ours.workSeconds, 1),
      rowsPerSecond: Math.round(ROWS / ours.workSeconds),
      cpuMsPerRow: round(ours.workerCpuMsPerRow, 2),
      rss: rssFigures,
    },
    rssByProgress: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].map((f) => ({ done: f, MiB: at(f) === undefined ? null : round(at(f) / MiB, 1) })),
    baseline: { what: 'bare BullMQ: addBulk + Worker with removeOnComplete, returns "ok"', seconds: round(bare.seconds, 1), redis: bareRedis },
    falbatch: {
      what: 'falbatch enqueue, then falbatch work',
      enqueueSeconds: round(ours.enqueueSeconds, 1),
      enqueue: { producerWaitedForWorkers: ours.enqueued.producerWaiting, rowsInBatch: ours.enqueued.jobs, jobsQueued: ours.enqueued.queued },
      redis: { ...oursRedis, keptByKind },
      ok: ours.status.ok,
      failed: ours.status.failed,
      jobsLeftInQueue: ours.finished.queued,
      billed: ours.billed,
      duplicateBilled: ours.duplicateBilled,
    },
    export: ours.exported,
    ratioFinishedBytesPerRow: round(oursRedis.ownBytesPerRow.afterFinished / Math.max(1, bareRedis.ownBytesPerRow.afterFinished), 1),
  }),
);
