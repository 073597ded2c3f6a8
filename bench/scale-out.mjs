// Figure: rows per second with 1, 2 and 4 `falbatch work` processes on one Redis, under one
// --global-concurrency cap G, and whether the cap held at every moment (the emulator's most
// requests outstanding: accepted and result not yet read). fal's processing time is zero (or
// small), so what bounds throughput is falbatch's own work per row, Redis and the CPU. Baseline, in
// the same run: 1 process. The emulator has G runners and a process of its own.
//
// Each measurement: enqueue the rows (spawned `falbatch enqueue`), pause the queue, start the work
// processes and wait until each says it started, then resume the queue: the clock runs from the
// resume to the batch finished (looked at every 25 ms), so process start-up is left out. Beside
// rows/s: CPU used per row over that window by the work processes (/proc), and by Redis and the
// commands it ran (INFO; the whole server, so others' use of a shared Redis counts too): what a
// row costs each, whatever else the machine runs meanwhile.
//
//   npm run build && node bench/scale-out.mjs
//   BENCH_ROWS=1500 BENCH_GLOBAL=16 BENCH_CONCURRENCY=16 BENCH_LATENCY_MS=0 BENCH_PROCESSES=1,2,4 BENCH_ROUNDS=3
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { cpuSecondsOf, falbatchEnv, markdownTable, redisCounters, round, runFalbatch, spawnNode, startEmulator, until } from './lib/processes.mjs';
import { getStatus, openContext, pauseQueueByOperator, resolveConfig, resumeQueue, silentLogger } from '../dist/index.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1500);
const GLOBAL = Number(process.env.BENCH_GLOBAL ?? 16);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 0);
const PROCESSES = (process.env.BENCH_PROCESSES ?? '1,2,4').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const redisServer = await benchRedis();
const REDIS_URL = redisServer.url;
const manifest = writeManifest(ROWS, 'scale');
const say = (text) => process.stderr.write(`${text}\n`);
// What else the machine ran meanwhile (1-minute load average at start and end): on 2 cores, others' work shows.
const load = [loadavg()[0]];

async function measure(processes) {
  const emulator = await startEmulator(['--runners', String(GLOBAL), '--latency', `${LATENCY_MS}ms`, '--seed', '1']);
  const prefix = `bench-scale-${randomUUID().slice(0, 8)}`;
  const env = falbatchEnv(REDIS_URL, emulator.url);
  const ctx = await openContext(resolveConfig({ REDIS_URL }, { prefix }), { log: silentLogger });
  const workers = [];
  try {
    await runFalbatch(['enqueue', manifest.path, '--batch', 'scale', '--prefix', prefix, '--log-level', 'error'], env);
    await pauseQueueByOperator(ctx);
    for (let i = 0; i < processes; i++) {
      workers.push(
        spawnNode(['work', '--concurrency', String(CONCURRENCY), '--global-concurrency', String(GLOBAL), '--prefix', prefix, '--log-level', 'info'], { env }),
      );
    }
    await Promise.all(workers.map((worker) => worker.waitFor(/worker started/, 60_000)));
    await emulator.reset();
    // CPU each party used over the timed window: the work processes, the emulator, Redis.
    const cpu = () => ({ workers: workers.reduce((sum, w) => sum + (cpuSecondsOf(w.pid) ?? 0), 0), emulator: cpuSecondsOf(emulator.pid) ?? 0 });
    const [cpuBefore, redisBefore] = [cpu(), await redisCounters(ctx.redis)];
    const started = performance.now();
    await resumeQueue(ctx);
    let status;
    const ended = await until('the batch to finish', async () => {
      emulator.assertRunning();
      for (const worker of workers) worker.assertRunning();
      return (status = await getStatus(ctx, 'scale')).finished;
    });
    const [cpuAfter, redisAfter] = [cpu(), await redisCounters(ctx.redis)];
    const stats = await emulator.stats();
    const seconds = (ended - started) / 1000;
    return {
      processes,
      seconds,
      rowsPerSecond: status.ok / seconds,
      workerCpuMsPerRow: ((cpuAfter.workers - cpuBefore.workers) * 1000) / ROWS,
      emulatorCpuMsPerRow: ((cpuAfter.emulator - cpuBefore.emulator) * 1000) / ROWS,
      redisCpuMsPerRow: ((redisAfter.cpuSeconds - redisBefore.cpuSeconds) * 1000) / ROWS,
      redisCommandsPerRow: (redisAfter.commands - redisBefore.commands) / ROWS,
      redisTopCommandsPerRow: Object.entries(redisAfter.byCommand)
        .map(([name, calls]) => /** @type {[string, number]} */ ([name, round((calls - (redisBefore.byCommand[name] ?? 0)) / ROWS, 1)]))
        .filter(([, perRow]) => perRow > 0)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8),
      ok: status.ok,
      failed: status.failed,
      maxOutstanding: stats.maxOutstanding,
      maxInProgress: stats.maxInProgress,
      billed: stats.billed,
      duplicateBilled: stats.duplicateBilled,
    };
  } finally {
    const codes = await Promise.all(workers.map((worker) => worker.stop()));
    codes.forEach((code, i) => {
      if (code !== 0) say(`falbatch work #${i + 1} exited ${code}:\n${workers[i].stderr()}`);
    });
    await ctx.close();
    await emulator.close();
    await deletePrefix(REDIS_URL, prefix);
  }
}

const samples = Object.fromEntries(PROCESSES.map((n) => [n, []]));
try {
  // Rounds alternate the process counts, so drift in what else the machine runs hits all alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const n of PROCESSES) {
      const result = await measure(n);
      say(`round ${round + 1}/${ROUNDS}, ${n} process(es): ${result.rowsPerSecond.toFixed(0)} rows/s, max outstanding ${result.maxOutstanding}`);
      samples[n].push(result);
    }
  }
} finally {
  rmSync(manifest.dir, { recursive: true, force: true });
  await redisServer.stop();
}
load.push(loadavg()[0]);

const median = (list) => [...list].sort((a, b) => a.rowsPerSecond - b.rowsPerSecond)[Math.floor(list.length / 2)];
// The cap must hold in every run, not only in the median one.
const worst = (list, field) => Math.max(...list.map((r) => r[field]));
const results = PROCESSES.map((n) => ({
  ...median(samples[n]),
  maxOutstanding: worst(samples[n], 'maxOutstanding'),
  maxInProgress: worst(samples[n], 'maxInProgress'),
  duplicateBilled: worst(samples[n], 'duplicateBilled'),
}));
const base = results.find((r) => r.processes === 1) ?? results[0];
const figures = results.map((r) => ({
  processes: r.processes,
  seconds: round(r.seconds),
  rowsPerSecond: Math.round(r.rowsPerSecond),
  vsOneProcess: round(r.rowsPerSecond / base.rowsPerSecond, 2),
  workerCpuMsPerRow: round(r.workerCpuMsPerRow, 2),
  emulatorCpuMsPerRow: round(r.emulatorCpuMsPerRow, 2),
  redisCpuMsPerRow: round(r.redisCpuMsPerRow, 3),
  redisCommandsPerRow: round(r.redisCommandsPerRow, 1),
  redisTopCommandsPerRow: Object.fromEntries(r.redisTopCommandsPerRow),
  ok: r.ok,
  failed: r.failed,
  maxOutstanding: r.maxOutstanding,
  maxInProgress: r.maxInProgress,
  capHeld: r.maxOutstanding <= GLOBAL,
  duplicateBilled: r.duplicateBilled,
}));

console.log(
  `Scale-out: ${ROWS} rows, --global-concurrency ${GLOBAL}, --concurrency ${CONCURRENCY} per process, ${GLOBAL} runners at ${LATENCY_MS} ms, ${cpus().length} cores, ${redisServer.what}, load average ${load.map((l) => l.toFixed(1)).join(' → ')}; medians of ${ROUNDS}\n\n` +
    markdownTable(
      [
        'work processes',
        'seconds',
        'rows/s',
        'vs 1 process',
        'worker CPU ms / row',
        'Redis CPU ms / row',
        'Redis commands / row',
        `max outstanding (cap ${GLOBAL})`,
        'max in progress',
        'ok',
        'paid twice',
      ],
      figures.map((r) => [
        String(r.processes),
        r.seconds.toFixed(2),
        String(r.rowsPerSecond),
        r.vsOneProcess.toFixed(2),
        r.workerCpuMsPerRow.toFixed(2),
        r.redisCpuMsPerRow.toFixed(3),
        r.redisCommandsPerRow.toFixed(1),
        `${r.maxOutstanding}${r.capHeld ? '' : ' (CAP EXCEEDED)'}`,
        String(r.maxInProgress),
        String(r.ok),
        String(r.duplicateBilled),
      ]),
    ) +
    '\n',
);
console.log(
  JSON.stringify({
    figure: 'scale-out',
    rows: ROWS,
    globalConcurrency: GLOBAL,
    concurrencyPerProcess: CONCURRENCY,
    falProcessingMs: LATENCY_MS,
    cores: cpus().length,
    redis: redisServer.what,
    rounds: ROUNDS,
    loadAverage: load.map((l) => round(l, 1)),
    baseline: { what: '1 work process', rowsPerSecond: figures.find((r) => r.processes === base.processes).rowsPerSecond },
    results: figures,
    capHeldEverywhere: figures.every((r) => r.capHeld),
    samples: Object.fromEntries(Object.entries(samples).map(([n, list]) => [n, list.map((r) => Math.round(r.rowsPerSecond))])),
  }),
);
