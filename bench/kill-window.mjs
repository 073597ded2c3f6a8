// Figure: the window in which a SIGKILLed worker costs an extra fal call, and what kills cost.
//
// fal has no idempotency key: a submit fal accepted whose request id had not reached Redis when the
// worker died is submitted again by the next worker. That window runs from fal accepting the submit
// (the emulator, in this process, notes the time) to Redis running the SET that saves the id (a
// MONITOR connection sees it, stamped with Redis's clock; MONITOR costs Redis some CPU, so windows
// here are if anything longer than without it). Over a busy stretch, the windows summed over
// the run's length is how many rows are in the window at a random instant: the extra calls a kill
// costs on average. Beside it, each row's whole time (from its submitting mark to its result).
//
// Then the same worker (`falbatch work`, a process of its own) is SIGKILLed at random moments; at
// each kill, the submits in flight are counted two ways: the rows whose `submitting:<connection>`
// mark of the killed process is still in Redis once it is dead (what the next worker resubmits), and
// the requests fal accepted during its life whose id never reached Redis. Extra calls (accepted −
// rows) must not exceed the first, and equal the second.
//
//   npm run build && node bench/kill-window.mjs
//   BENCH_ROWS=3000 BENCH_CONCURRENCY=25 BENCH_LATENCIES=30..80ms,1s BENCH_KILLS=20
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { Redis } from 'ioredis';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { falbatchEnv, markdownTable, round, runFalbatch, sleep, spawnNode, until } from './lib/processes.mjs';
import { getStatus, openContext, resolveConfig, silentLogger } from '../dist/index.js';
import { createFalEmulator } from '../dist/emulator/create-fal-emulator.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 25);
const LATENCIES = (process.env.BENCH_LATENCIES ?? '30..80ms,1s').split(',');
const KILLS = Number(process.env.BENCH_KILLS ?? 20);
const KEY = 'bench-key';
const redisServer = await benchRedis();
const REDIS_URL = redisServer.url;
const say = (text) => process.stderr.write(`${text}\n`);
const load = [loadavg()[0]];
/** Wall clock in microseconds. */
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

/**
 * When each request was accepted (the emulator's hook, as it writes its answer) and when Redis ran
 * the SET saving its id, and each row's time from its first submitting mark to its request key's
 * deletion with its result: from a MONITOR connection, stamped with Redis's own clock, so neither
 * this process's delays nor the monitor's are counted.
 */
async function watch(requestKey) {
  const accepted = new Map(); // request id → µs
  const saved = new Map(); // request id → µs (Redis's clock)
  const parsed = new Map(); // request id → µs: when the worker had fal's answer (the `submitted at` it saves, ms)
  const marked = new Map(); // request key → µs of its first mark
  const rows = []; // [marked µs, µs from the row's first mark to its request key's deletion]
  const connection = new Redis(REDIS_URL);
  const monitor = await connection.monitor();
  monitor.on('monitor', (time, args) => {
    const [command, key, value] = args;
    if (typeof key !== 'string' || !key.startsWith(requestKey)) return;
    const at = Math.round(Number(time) * 1e6);
    const verb = String(command).toLowerCase();
    if (verb === 'set' && value.startsWith('rid:')) {
      const id = value.slice(value.indexOf(':', 4) + 1);
      saved.set(id, at);
      parsed.set(id, Number(value.slice(4, value.indexOf(':', 4))) * 1000);
    } else if (verb === 'set' && value.startsWith('submitting:') && !marked.has(key)) marked.set(key, at);
    else if (verb === 'del' && marked.has(key)) {
      rows.push([marked.get(key), at - marked.get(key)]);
      marked.delete(key);
    }
  });
  return {
    accepted,
    saved,
    parsed,
    rows,
    onAccepted: (id) => accepted.set(id, nowUs()),
    close: async () => {
      monitor.disconnect();
      connection.disconnect();
    },
  };
}

/** Rows whose request key holds a submitting mark, as `key=mark` pairs. */
async function marks(redis, requestKey) {
  const found = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${requestKey}*`, 'COUNT', 1000);
    cursor = next;
    const values = keys.length > 0 ? await redis.mget(...keys) : [];
    keys.forEach((key, i) => {
      if (values[i]?.startsWith('submitting:')) found.push(`${key}=${values[i]}`);
    });
  } while (cursor !== '0');
  return found;
}

async function measure(latency) {
  const prefix = `bench-kw-${randomUUID().slice(0, 8)}`;
  const ctx = await openContext(resolveConfig({ REDIS_URL }, { prefix }), { log: silentLogger });
  const seen = await watch(ctx.keys.request(''));
  const emulator = await createFalEmulator({ key: KEY, runners: CONCURRENCY, latency, seed: 3, onAccepted: seen.onAccepted });
  const env = falbatchEnv(REDIS_URL, emulator.url);
  const manifest = writeManifest(ROWS, 'kw');
  const args = ['work', '--concurrency', String(CONCURRENCY), '--lock-duration', '1s', '--prefix', prefix, '--log-level', 'error'];
  const kills = [];
  let worker;
  try {
    await runFalbatch(['enqueue', manifest.path, '--batch', 'kw', '--prefix', prefix, '--log-level', 'error'], env);
    const finished = async () => (await getStatus(ctx, 'kw')).finished;
    const counted = new Set();
    const stopAt = Math.round(ROWS * 0.8);
    // Killed at random moments while rows remain, then one last worker finishes the batch.
    while (kills.length < KILLS) {
      const status = await getStatus(ctx, 'kw');
      if (status.ok >= stopAt) break;
      const bornUs = nowUs();
      worker = spawnNode(args, { env });
      const before = status.ok;
      await until('rows to be answered', async () => (worker.assertRunning(), (await getStatus(ctx, 'kw')).ok >= before + CONCURRENCY), { everyMs: 10 });
      // A random moment over the next 1.5 s: past the worker's first submits, which all go at once.
      await sleep(Math.random() * 1500);
      const killedUs = nowUs();
      worker.child.kill('SIGKILL');
      await worker.exited;
      worker = undefined;
      const fresh = (await marks(ctx.redis, ctx.keys.request(''))).filter((pair) => !counted.has(pair));
      for (const pair of fresh) counted.add(pair);
      kills.push({ bornUs, killedUs, marks: fresh.length });
    }
    worker = spawnNode(args, { env });
    await until('the batch to finish', async () => (worker.assertRunning(), finished()), { everyMs: 25 });
    await worker.stop();
    worker = undefined;
    const stats = emulator.stats();
    const status = await getStatus(ctx, 'kw');
    const results = await ctx.redis.hlen(ctx.keys.batch('kw').results);
    // Let MONITOR's last lines arrive before reading what it saw.
    await sleep(200);
    // Accepted requests whose id never reached Redis.
    const orphans = [...seen.accepted].filter(([id]) => !seen.saved.has(id));
    // Each to the worker alive when fal accepted it (one at a time: the next starts after a kill).
    kills.forEach((kill, i) => {
      kill.orphans = orphans.filter(([, at]) => at >= kill.bornUs && at < (kills[i + 1]?.bornUs ?? Infinity)).length;
    });
    // The window of requests saved while a worker ran undisturbed (the last one), over its busy stretch.
    const lastBorn = kills.at(-1)?.killedUs ?? 0;
    const pairs = [...seen.saved]
      .filter(([id, at]) => seen.accepted.has(id) && at > lastBorn)
      .map(([id, at]) => [seen.accepted.get(id), at, seen.parsed.get(id)]);
    pairs.sort((a, b) => a[0] - b[0]);
    const busy = pairs.slice(Math.floor(pairs.length * 0.1), Math.floor(pairs.length * 0.9));
    const windows = busy.map(([a, s]) => Math.max(0, s - a));
    const spanUs = busy.length > 1 ? busy.at(-1)[0] - busy[0][0] : 1;
    const meanWindowMs = windows.reduce((s, w) => s + w, 0) / windows.length / 1000;
    // The window in two: fal's answer reaching the worker and parsed (ms resolution), then the SET run by Redis.
    const answeredMs = busy.reduce((s, [a, , p]) => s + Math.max(0, p - a), 0) / busy.length / 1000;
    const sorted = [...windows].sort((a, b) => a - b);
    const lastRows = seen.rows.filter(([at]) => at > lastBorn);
    const rowMs = lastRows.reduce((s, [, t]) => s + t, 0) / lastRows.length / 1000;
    const inWindow = windows.reduce((s, w) => s + w, 0) / spanUs;
    return {
      latency,
      rows: ROWS,
      ok: status.ok,
      results,
      meanWindowMs,
      p99WindowMs: sorted[Math.floor(sorted.length * 0.99)] / 1000,
      answeredMs,
      savedMs: meanWindowMs - answeredMs,
      meanRowMs: rowMs,
      windowShare: meanWindowMs / rowMs,
      expectedPerKill: inWindow,
      kills: kills.length,
      extraCalls: stats.accepted - ROWS,
      duplicateBilled: stats.duplicateBilled,
      markedAtKills: kills.reduce((s, k) => s + k.marks, 0),
      orphansAtKills: kills.reduce((s, k) => s + k.orphans, 0),
      maxMarkedAtAKill: Math.max(...kills.map((k) => k.marks)),
      boundHeld: stats.accepted - ROWS <= kills.reduce((s, k) => s + k.marks, 0),
    };
  } finally {
    if (worker) await worker.stop();
    await seen.close();
    await ctx.close();
    await emulator.close();
    await deletePrefix(REDIS_URL, prefix);
    rmSync(manifest.dir, { recursive: true, force: true });
  }
}

const results = [];
try {
  for (const latency of LATENCIES) {
    const result = await measure(latency);
    say(JSON.stringify(result));
    results.push(result);
  }
} finally {
  await redisServer.stop();
}
load.push(loadavg()[0]);

console.log(
  `Kill window: ${ROWS} rows, --concurrency ${CONCURRENCY}, ${KILLS} SIGKILLs, ${cpus().length} cores, ${redisServer.what}, load average ${load.map((l) => l.toFixed(1)).join(' → ')}\n\n` +
    markdownTable(
      [
        'fal time',
        'window: accepted → id in Redis (mean, p99)',
        'of which: answer → worker',
        'then: → id in Redis',
        'row: mark → result',
        'share',
        'expected extra calls per kill',
        'kills',
        'extra calls',
        'per kill',
        'submits in flight at the kills (marks)',
        'most at one kill',
        'bound held',
      ],
      results.map((r) => [
        r.latency,
        `${r.meanWindowMs.toFixed(1)} ms, ${r.p99WindowMs.toFixed(0)} ms`,
        `${r.answeredMs.toFixed(1)} ms`,
        `${r.savedMs.toFixed(1)} ms`,
        `${r.meanRowMs.toFixed(0)} ms`,
        `${(r.windowShare * 100).toFixed(1)} %`,
        r.expectedPerKill.toFixed(2),
        String(r.kills),
        String(r.extraCalls),
        (r.extraCalls / r.kills).toFixed(2),
        String(r.markedAtKills),
        String(r.maxMarkedAtAKill),
        r.boundHeld ? 'yes' : 'NO',
      ]),
    ) +
    '\n',
);
console.log(
  JSON.stringify({
    figure: 'kill-window',
    rows: ROWS,
    concurrency: CONCURRENCY,
    cores: cpus().length,
    redis: redisServer.what,
    loadAverage: load.map((l) => round(l, 1)),
    results: results.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? round(v, 3) : v]))),
  }),
);
