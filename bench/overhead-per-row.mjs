// Figure: what falbatch costs per row, with fal's own time taken away (zero latency, more runners
// than rows in flight): rows/s of one `falbatch work` process against a bare script, p-limit around
// fal.subscribe (streaming) with no queue and nothing saved, measured in the same run. Both are
// spawned as users run them, against the emulator in a process of its own (a fresh one for each
// measurement); rounds alternate the two and medians are reported (this VM drifts).
//
// rows/s is the steady rate: rows finished between the first and the last finish, over that time
// (process start-up, Redis checks and connections are a constant, not a per-row cost, and are
// reported apart as `startupMs`: spawn to first row done). The falbatch side's times are the rows'
// own finished_at. The worker runs as `falbatch work` does by default (info logs, schedules served).
// Also reported, since on 2 cores the three processes (client, emulator, Redis) share the CPU and
// CPU is what a row costs: each side's CPU time per row (start-up included), and Redis's.
//
//   npm run build && node bench/overhead-per-row.mjs
//   BENCH_ROWS (3000), BENCH_CONCURRENCY (64), BENCH_RUNNERS (256), BENCH_ROUNDS (3), REDIS_URL (else a private redis-server);
//   BENCH_BASELINE_FETCH=keep-alive gives the bare script falbatch's HTTP transport (see lib/subscribe-loop.mjs);
//   BENCH_PROFILE=DIR writes a CPU profile of each `work` process there (node --cpu-prof);
//   BENCH_MONITOR=1 also counts the Redis commands the worker sends per row (MONITOR: slows Redis,
//   so the rows/s of that round are not comparable; use a small BENCH_ROWS).
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Redis } from 'ioredis';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { ROOT, cpuSecondsOf, falbatchEnv, redisCounters, round, runFalbatch, spawnNode, startEmulator } from './lib/processes.mjs';
import { openContext, resolveConfig, silentLogger, waitForBatch } from '../dist/index.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const RUNNERS = Number(process.env.BENCH_RUNNERS ?? 256);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const KEEP_ALIVE_BASELINE = process.env.BENCH_BASELINE_FETCH === 'keep-alive';
const PROFILE = process.env.BENCH_PROFILE;
const MONITOR = process.env.BENCH_MONITOR === '1';
const redisServer = await benchRedis();
const REDIS_URL = redisServer.url;
const manifest = writeManifest(ROWS, 'overhead');
const say = (text) => process.stderr.write(`${text}\n`);
// What else the machine ran meanwhile (1-minute load average at start and end): on 2 cores, others' work shows.
const load = [loadavg()[0]];

const emulatorArgs = ['--runners', String(RUNNERS), '--latency', '0ms'];

async function baseline() {
  const emulator = await startEmulator(emulatorArgs);
  try {
    const spawnedAt = Date.now();
    const script = spawnNode([], {
      script: `${ROOT}bench/lib/subscribe-loop.mjs`,
      env: {
        FAL_BASE_URL: emulator.url,
        BENCH_ROWS: String(ROWS),
        BENCH_CONCURRENCY: String(CONCURRENCY),
        ...(KEEP_ALIVE_BASELINE ? { BENCH_BASELINE_FETCH: 'keep-alive' } : {}),
      },
    });
    const code = await script.exited;
    if (code !== 0) throw new Error(`the bare script exited ${code}:\n${script.stderr()}`);
    const { ok, firstAt, lastAt, cpuMs } = JSON.parse(script.stdout());
    const { billed } = await emulator.stats();
    return { ok, billed, firstAt, lastAt, spawnedAt, cpuMs };
  } finally {
    await emulator.close();
  }
}

/**
 * Counts the commands Redis receives for keys under `prefix`, by name, top-level and inside
 * scripts, leaving out those of the connection `ignored` (this script's own status polling).
 */
async function monitorPrefix(prefix, ignored) {
  const redis = new Redis(REDIS_URL);
  const monitor = await redis.monitor();
  const counts = { topLevel: {}, inScripts: {} };
  const ignoredSource = `:${ignored.stream.localPort}`;
  let lastSource = '';
  monitor.on('monitor', (_time, args, source) => {
    // Commands a script runs are shown as from `lua`, right after the script's own line.
    if (!source.includes('lua')) lastSource = source;
    if (lastSource.endsWith(ignoredSource) || !args.some((arg) => arg.includes(prefix))) return;
    const side = source.includes('lua') ? counts.inScripts : counts.topLevel;
    const name = args[0].toLowerCase();
    side[name] = (side[name] ?? 0) + 1;
  });
  return {
    counts,
    stop: () => {
      monitor.disconnect();
      redis.disconnect();
    },
  };
}

async function falbatch() {
  const emulator = await startEmulator(emulatorArgs);
  const prefix = `bench-overhead-${randomUUID().slice(0, 8)}`;
  const env = { ...falbatchEnv(REDIS_URL, emulator.url), ...(PROFILE ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${PROFILE}` } : {}) };
  const ctx = await openContext(resolveConfig({ REDIS_URL }, { prefix }), { log: silentLogger });
  let worker;
  let monitor;
  try {
    const { stdout } = await runFalbatch(['enqueue', manifest.path, '--batch', 'overhead', '--prefix', prefix, '--json', '--log-level', 'error'], {
      ...env,
      NODE_OPTIONS: '',
    });
    const { batch } = JSON.parse(stdout);
    monitor = MONITOR ? await monitorPrefix(prefix, ctx.redis) : undefined;
    const redisBefore = await redisCounters(ctx.redis);
    const spawnedAt = Date.now();
    worker = spawnNode(['work', '--concurrency', String(CONCURRENCY), '--prefix', prefix], { env });
    const status = await waitForBatch(ctx, batch, { intervalMs: 100 });
    const cpuMs = (cpuSecondsOf(worker.pid) ?? NaN) * 1000;
    const redisMs = ((await redisCounters(ctx.redis)).cpuSeconds - redisBefore.cpuSeconds) * 1000;
    monitor?.stop();
    // The rows' stored results, as export reads them; finished_at is when each was stored.
    const finished = (await ctx.redis.hvals(ctx.keys.batch(batch).results)).map((json) => JSON.parse(json).finished_at);
    const { billed } = await emulator.stats();
    return { ok: status.ok, billed, firstAt: Math.min(...finished), lastAt: Math.max(...finished), spawnedAt, cpuMs, redisMs, commands: monitor?.counts };
  } finally {
    monitor?.stop();
    if (worker && (await worker.stop()) !== 0) say(`work exited uncleanly:\n${worker.stderr().slice(-2000)}`);
    await ctx.close();
    await emulator.close();
    await deletePrefix(REDIS_URL, prefix);
  }
}

const rate = (r) => (r.ok - 1) / ((r.lastAt - r.firstAt) / 1000);
const cpuPerRow = (r) => round(r.cpuMs / r.ok);
const runs = { baseline: [], falbatch: [] };
try {
  for (let round = 0; round < ROUNDS; round++) {
    runs.baseline.push(await baseline());
    runs.falbatch.push(await falbatch());
    const [b, f] = [runs.baseline.at(-1), runs.falbatch.at(-1)];
    say(
      `round ${round + 1}: bare script ${rate(b).toFixed(0)} rows/s (${cpuPerRow(b)} ms CPU/row), ` +
        `falbatch ${rate(f).toFixed(0)} rows/s (${cpuPerRow(f)} ms CPU/row, Redis ${(f.redisMs / f.ok).toFixed(2)})`,
    );
  }
} finally {
  rmSync(manifest.dir, { recursive: true, force: true });
  await redisServer.stop();
}
load.push(loadavg()[0]);
const median = (list, of) => [...list].map(of).sort((a, b) => a - b)[Math.floor(list.length / 2)];
const summary = (list) => ({
  rowsPerSecond: Math.round(median(list, rate)),
  startupMs: median(list, (r) => r.firstAt - r.spawnedAt),
  // The process's CPU time per row, start-up included (the worker's from /proc: Linux only).
  cpuMsPerRow: median(list, cpuPerRow),
  ok: Math.min(...list.map((r) => r.ok)),
  billed: Math.max(...list.map((r) => r.billed)),
  samples: list.map((r) => Math.round(rate(r))),
});
const base = summary(runs.baseline);
const ours = summary(runs.falbatch);
const ratio = round(median(runs.falbatch, rate) / median(runs.baseline, rate));
const perRow = (side) => {
  const counts = runs.falbatch.at(-1).commands?.[side];
  if (!counts) return undefined;
  return Object.fromEntries(
    Object.entries(counts)
      .sort(([, a], [, b]) => b - a)
      .map(([name, n]) => [name, round(n / ROWS)]),
  );
};
console.log(`| ${ROWS} rows, ${CONCURRENCY} in flight | ${base.rowsPerSecond} | **${ours.rowsPerSecond}** | ${ratio} |`);
console.log(
  JSON.stringify({
    figure: 'overhead-per-row',
    rows: ROWS,
    concurrency: CONCURRENCY,
    runners: RUNNERS,
    falProcessingMs: 0,
    redis: redisServer.what,
    loadAverage: load.map((value) => round(value)),
    baseline: {
      what: `p-limit around fal.subscribe (streaming), its own process, ${KEEP_ALIVE_BASELINE ? "falbatch's keep-alive transport" : 'the global fetch'}`,
      ...base,
    },
    falbatch: {
      what: 'one `falbatch work` process (enqueued beforehand)',
      ...ours,
      // Redis's CPU per row during the run (a shared server counts whatever else it serves meanwhile).
      redisCpuMsPerRow: round(median(runs.falbatch, (r) => r.redisMs / r.ok)),
    },
    ratio,
    ...(MONITOR ? { redisCommandsPerRow: { topLevel: perRow('topLevel'), inScripts: perRow('inScripts') } } : {}),
  }),
);
