// Figure: how full falbatch keeps fal's slots. R runners (fal's per-account concurrency) with a
// jittered processing time; every row's wall time is fal's, so a client that never lets a slot sit
// idle finishes in rows × mean latency / R (the ideal). Baseline, in the same run: the best bare
// script, p-limit(R) around fal.subscribe, in streaming and in polling mode. falbatch: a spawned
// `falbatch work --concurrency R` with --wait poll, --wait stream and no --wait flag (the default).
// Each measurement has an emulator process of its own (same seed: the same rows draw the same
// processing times) and the worker or script in another process. Wall time runs from the first
// submit the emulator sees to the last row stored (falbatch: the batch finished, looked at every
// 25 ms; the script: its last answer), so process start-up is left out (reported beside it).
// falbatch's Redis is a private redis-server unless REDIS_URL is set (lib/bench-redis.mjs): a Redis
// busy with others' work slows falbatch's every row and not the script's.
//
//   npm run build && node bench/slot-filling.mjs
//   BENCH_ROWS=800 BENCH_RUNNERS=16 BENCH_LATENCY_MIN_MS=300 BENCH_LATENCY_MAX_MS=500
//   BENCH_HEADROOM=1,2 (also --concurrency R+1, R+2)  BENCH_ROUNDS=1 (medians over rounds)
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { benchRedis } from './lib/bench-redis.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { capacity, measureFalbatch as measureFalbatchRun } from './lib/falbatch-run.mjs';
import { markdownTable, round, spawnNode, startEmulator, ROOT } from './lib/processes.mjs';

const ROWS = Number(process.env.BENCH_ROWS ?? 800);
const RUNNERS = Number(process.env.BENCH_RUNNERS ?? 16);
const MIN_MS = Number(process.env.BENCH_LATENCY_MIN_MS ?? 300);
const MAX_MS = Number(process.env.BENCH_LATENCY_MAX_MS ?? 500);
const HEADROOM = (process.env.BENCH_HEADROOM ?? '').split(',').filter(Boolean).map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const redisServer = await benchRedis();
const REDIS_URL = redisServer.url;
const EMULATOR_ARGS = ['--runners', String(RUNNERS), '--latency', `${MIN_MS}..${MAX_MS}ms`, '--seed', '1'];
const idealSeconds = (ROWS * ((MIN_MS + MAX_MS) / 2)) / RUNNERS / 1000;
const manifest = writeManifest(ROWS, 'slots');
const say = (text) => process.stderr.write(`${text}\n`);
// What else the machine ran meanwhile (1-minute load average at start and end): on 2 cores, others' work shows.
const load = [loadavg()[0]];

async function measureScript(mode) {
  const emulator = await startEmulator(EMULATOR_ARGS);
  try {
    const script = spawnNode([emulator.url, String(ROWS), String(RUNNERS), mode], { script: `${ROOT}bench/lib/subscribe-script.mjs` });
    const code = await script.exited;
    if (code !== 0) throw new Error(`subscribe script (${mode}) exited ${code}:\n${script.stderr()}`);
    const { seconds, ok } = JSON.parse(script.stdout().trim().split('\n').at(-1));
    return { seconds, ok, ...(await capacity(emulator)) };
  } finally {
    await emulator.close();
  }
}

/** falbatch work with these flags (no --concurrency: the CLI's default, auto). */
const measureFalbatch = (concurrency, waitFlags) =>
  measureFalbatchRun({
    emulatorArgs: EMULATOR_ARGS,
    manifestPath: manifest.path,
    redisUrl: REDIS_URL,
    workArgs: [...(concurrency === undefined ? [] : ['--concurrency', String(concurrency)]), ...waitFlags],
    say,
  });

const configs = [
  { key: 'script-stream', what: 'script: p-limit(R) around fal.subscribe, streaming', run: () => measureScript('streaming') },
  { key: 'script-poll', what: 'script: p-limit(R) around fal.subscribe, polling', run: () => measureScript('polling') },
  { key: 'falbatch-poll', what: 'falbatch work --concurrency R --wait poll', run: () => measureFalbatch(RUNNERS, ['--wait', 'poll']) },
  { key: 'falbatch-stream', what: 'falbatch work --concurrency R --wait stream', run: () => measureFalbatch(RUNNERS, ['--wait', 'stream']) },
  { key: 'falbatch-default', what: 'falbatch work --concurrency R (default --wait)', run: () => measureFalbatch(RUNNERS, []) },
  { key: 'falbatch-auto', what: 'falbatch work, no flags (--concurrency auto: slots learned)', run: () => measureFalbatch(undefined, []) },
  ...HEADROOM.map((extra) => ({
    key: `falbatch-default-r+${extra}`,
    what: `extra: falbatch work --concurrency R+${extra} (default --wait)`,
    run: () => measureFalbatch(RUNNERS + extra, []),
  })),
];

const samples = Object.fromEntries(configs.map((c) => [c.key, []]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const config of configs) {
      const result = await config.run();
      say(`round ${round + 1}/${ROUNDS} ${config.key}: ${result.seconds.toFixed(2)} s, ok ${result.ok}, max in progress ${result.maxInProgress}`);
      samples[config.key].push(result);
    }
  }
} finally {
  rmSync(manifest.dir, { recursive: true, force: true });
  await redisServer.stop();
}
load.push(loadavg()[0]);

const median = (list) => [...list].sort((a, b) => a.seconds - b.seconds)[Math.floor(list.length / 2)];
const results = configs.map((c) => ({ key: c.key, what: c.what, ...median(samples[c.key]) }));
const scripts = results.filter((r) => r.key.startsWith('script-'));
const best = scripts.reduce((a, b) => (b.seconds < a.seconds ? b : a));
const falbatchModes = results.filter((r) => ['falbatch-poll', 'falbatch-stream', 'falbatch-default', 'falbatch-auto'].includes(r.key));
const byKey = Object.fromEntries(results.map((r) => [r.key, r]));
// What each slot sat idle per row: R × wall − the fal time all rows took, over the rows.
const idleMsPerRow = (seconds) => ((RUNNERS * seconds - ROWS * ((MIN_MS + MAX_MS) / 2 / 1000)) / ROWS) * 1000;
const figures = results.map((r) => ({
  ...r,
  seconds: round(r.seconds),
  fromSpawnSeconds: r.fromSpawnSeconds === undefined ? undefined : round(r.fromSpawnSeconds),
  ofIdeal: round(idealSeconds / r.seconds, 3),
  vsBestScript: round(best.seconds / r.seconds, 3),
  idleSlotMsPerRow: Math.round(idleMsPerRow(r.seconds)),
}));
const fastestMode = falbatchModes.reduce((a, b) => (b.seconds < a.seconds ? b : a));
const target = {
  defaultIsBestMode: byKey['falbatch-default'].seconds <= fastestMode.seconds * 1.005,
  defaultVsBestScriptAtLeast099: best.seconds / byKey['falbatch-default'].seconds >= 0.99,
  defaultOfIdealAtLeast097: idealSeconds / byKey['falbatch-default'].seconds >= 0.97,
  // The CLI's default is now auto (no --concurrency): the same targets, without being told R.
  autoVsBestScriptAtLeast099: best.seconds / byKey['falbatch-auto'].seconds >= 0.99,
  autoOfIdealAtLeast097: idealSeconds / byKey['falbatch-auto'].seconds >= 0.97,
};

console.log(
  `Slot filling: ${ROWS} rows, ${RUNNERS} runners, ${MIN_MS}–${MAX_MS} ms per request; ideal ${idealSeconds.toFixed(2)} s; ${redisServer.what}; load average ${load.map((l) => l.toFixed(1)).join(' → ')}\n\n` +
    markdownTable(
      ['', 'seconds', 'of ideal', 'vs best script', 'idle slot ms / row', 'max in progress', 'ok', 'from spawn'],
      figures.map((r) => [
        r.what,
        r.seconds.toFixed(2),
        r.ofIdeal.toFixed(3),
        r.vsBestScript.toFixed(3),
        String(r.idleSlotMsPerRow),
        String(r.maxInProgress),
        String(r.ok),
        r.fromSpawnSeconds === undefined ? '' : `${r.fromSpawnSeconds.toFixed(2)} s`,
      ]),
    ) +
    '\n',
);
console.log(
  JSON.stringify({
    figure: 'slot-filling',
    rows: ROWS,
    runners: RUNNERS,
    latencyMs: [MIN_MS, MAX_MS],
    redis: redisServer.what,
    rounds: ROUNDS,
    loadAverage: load.map((l) => round(l, 1)),
    idealSeconds: round(idealSeconds),
    baseline: { what: `best script: ${best.what}`, seconds: round(best.seconds) },
    results: figures,
    target,
    samples: Object.fromEntries(Object.entries(samples).map(([key, list]) => [key, list.map((r) => round(r.seconds))])),
  }),
);
