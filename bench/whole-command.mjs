// Figure (issue 19): what a user feels, timing the whole command from pressing enter to the prompt
// coming back. `falbatch run m.csv --out r.csv` (start-up, connect, enqueue, work, wait, export,
// exit) against the bare script a user would write instead (lib/whole-script.mjs: p-limit around
// fal.subscribe, answers written at the end), each spawned as a process of its own and timed from
// spawn to exit, so both sides' process start counts. Each measurement gets a fresh emulator
// process (same seed: the same rows draw the same processing times) and falbatch a namespace of
// its own; the two sides alternate within a round and the medians of BENCH_ROUNDS are reported,
// with the load average (2 shared cores: others' work shows).
//
// Cases (the table):
//   slots: 800 rows, 16 runners, 300–500 ms: both told 16 (--concurrency 16, p-limit 16); target
//          falbatch ≥ 0.97 of the ideal (rows × mean latency / runners) and ≥ 0.99× the script.
//   overhead: 3,000 rows, zero latency, 256 runners, 64 in flight: rows/s, target ≥ 0.9× the script.
//   auto: 1,500 rows, 23 runners, falbatch not told (--concurrency auto, the default); target ≥ 0.95
//          of the ideal (the script, told 23, for reference).
// falbatch's phases come from FALBATCH_TIMING=1 (started, connected, enqueued, exported, exit) and
// the emulator's counters, read every 25 ms (first submit; last answer: every result read).
//
// BENCH_BEFORE=<another built checkout> adds its `falbatch run` as a third side in every round
// (see bench/startup.mjs), for a before/after under the same load.
//
//   npm run build && node bench/whole-command.mjs
//   BENCH_CASES=slots,overhead,auto BENCH_ROUNDS=3 BENCH_BEFORE=/tmp/before
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { falbatchEnv, markdownTable, ROOT, round, sleep, startEmulator } from './lib/processes.mjs';

const CASES = {
  slots: { rows: 800, runners: 16, latency: [300, 500], concurrency: 16, target: 'ofIdeal ≥ 0.97 and ≥ 0.99× the script' },
  overhead: { rows: 3000, runners: 256, latency: [0, 0], concurrency: 64, target: '≥ 0.9× the script (rows/s)' },
  auto: { rows: 1500, runners: 23, latency: [300, 500], concurrency: undefined, scriptConcurrency: 23, target: 'ofIdeal ≥ 0.95' },
};
const chosen = (process.env.BENCH_CASES ?? 'slots,overhead,auto').split(',');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BEFORE = process.env.BENCH_BEFORE;
const SIDES = ['script', 'falbatch', ...(BEFORE ? ['before'] : [])];
const say = (text) => process.stderr.write(`${text}\n`);
const now = () => performance.timeOrigin + performance.now();
const redis = await benchRedis();

/** Spawns a process, waits for its exit; ms from spawn to exit, and to each FALBATCH_TIMING mark. */
function timedProcess(args, env) {
  const spawned = now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return {
    spawned,
    done: new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => {
        const phases = { exit: now() - spawned };
        for (const [, phase, at] of stderr.matchAll(/^falbatch timing: (\w+) at ([\d.]+) ms/gm)) if (phase !== 'exit') phases[phase] = Number(at) - spawned;
        if (code !== 0) reject(new Error(`${args.slice(0, 2).join(' ')} exited ${code}:\n${stderr.slice(-2000)}`));
        else resolve(phases);
      });
    }),
  };
}

/** When the emulator first saw a submit, and when it had served every row's result (looked at every 25 ms). */
function watch(emulator, rows) {
  let stop = false;
  const seen = {};
  const done = (async () => {
    while (!stop) {
      const stats = await emulator.stats();
      const at = now();
      if (seen.firstSubmit === undefined && stats.submits > 0) seen.firstSubmit = at;
      if (seen.lastAnswer === undefined && stats.resultCalls >= rows) seen.lastAnswer = at;
      await sleep(25);
    }
  })();
  return async () => {
    stop = true;
    await done;
    return seen;
  };
}

async function measure(side, spec, manifest, round) {
  const emulator = await startEmulator(['--runners', String(spec.runners), '--latency', `${spec.latency[0]}..${spec.latency[1]}ms`, '--seed', '1']);
  const prefix = `bench-whole-${randomUUID().slice(0, 8)}`;
  const env = falbatchEnv(redis.url, emulator.url);
  try {
    const stopWatching = watch(emulator, spec.rows);
    const proc =
      side === 'script'
        ? timedProcess(
            [
              join(ROOT, 'bench/lib/whole-script.mjs'),
              manifest.path,
              join(manifest.dir, `script-${round}.jsonl`),
              String(spec.scriptConcurrency ?? spec.concurrency),
            ],
            env,
          )
        : timedProcess(
            [
              side === 'before' ? join(BEFORE, 'bin/falbatch.js') : join(ROOT, 'bin/falbatch.js'),
              'run',
              manifest.path,
              '--out',
              join(manifest.dir, `${side}-${round}.csv`),
              '--prefix',
              prefix,
              '--log-level',
              'error',
              ...(spec.concurrency === undefined ? [] : ['--concurrency', String(spec.concurrency)]),
            ],
            { ...env, FALBATCH_TIMING: '1' },
          );
    const phases = await proc.done;
    const seen = await stopWatching();
    const stats = await emulator.stats();
    if (stats.resultCalls < spec.rows) throw new Error(`${side}: the emulator served ${stats.resultCalls} results for ${spec.rows} rows`);
    phases.firstSubmit = seen.firstSubmit === undefined ? undefined : seen.firstSubmit - proc.spawned;
    phases.lastAnswer = seen.lastAnswer === undefined ? undefined : seen.lastAnswer - proc.spawned;
    return { seconds: phases.exit / 1000, phases, maxInProgress: stats.maxInProgress };
  } finally {
    await emulator.close();
    if (side !== 'script') await deletePrefix(redis.url, prefix);
  }
}

const median = (values) => {
  const sorted = values.filter((v) => v !== undefined).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const results = {};
try {
  for (const name of chosen) {
    const spec = CASES[name];
    if (!spec) throw new Error(`no case ${name}: one of ${Object.keys(CASES).join(', ')}`);
    const manifest = writeManifest(spec.rows, `whole-${name}`);
    const samples = Object.fromEntries(SIDES.map((side) => [side, []]));
    const loadBefore = loadavg()[0];
    try {
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which side goes first: a drift in the machine's load touches both alike.
        for (const side of r % 2 === 0 ? SIDES : [...SIDES].reverse()) {
          const sample = await measure(side, spec, manifest, r);
          samples[side].push(sample);
          say(`${name} round ${r + 1}/${ROUNDS} ${side}: ${sample.seconds.toFixed(2)} s (load ${loadavg()[0].toFixed(1)})`);
        }
      }
    } finally {
      rmSync(manifest.dir, { recursive: true, force: true });
    }
    const meanS = (spec.latency[0] + spec.latency[1]) / 2 / 1000;
    const idealSeconds = (spec.rows * meanS) / spec.runners;
    const script = median(samples.script.map((s) => s.seconds));
    const falbatch = median(samples.falbatch.map((s) => s.seconds));
    // Per round: the script over falbatch of the same round (a drift in load between rounds cancels).
    const perRound = samples.falbatch.map((s, i) => samples.script[i].seconds / s.seconds);
    const phases = Object.fromEntries(
      ['started', 'connected', 'firstSubmit', 'enqueued', 'lastAnswer', 'exported', 'exit'].map((key) => [
        key,
        median(samples.falbatch.map((s) => s.phases[key])),
      ]),
    );
    const tail = median(samples.falbatch.map((s) => s.phases.exit - (s.phases.lastAnswer ?? Number.NaN)).filter((v) => !Number.isNaN(v)));
    const scriptStart = median(samples.script.map((s) => s.phases.firstSubmit));
    const before = BEFORE ? median(samples.before.map((s) => s.seconds)) : undefined;
    results[name] = {
      rows: spec.rows,
      runners: spec.runners,
      latencyMs: spec.latency,
      concurrency: spec.concurrency ?? 'auto',
      load: `${loadBefore.toFixed(1)} → ${loadavg()[0].toFixed(1)}`,
      idealSeconds: idealSeconds > 0 ? round(idealSeconds) : undefined,
      scriptSeconds: round(script),
      falbatchSeconds: round(falbatch),
      scriptOfIdeal: idealSeconds > 0 ? round(idealSeconds / script, 3) : undefined,
      falbatchOfIdeal: idealSeconds > 0 ? round(idealSeconds / falbatch, 3) : undefined,
      scriptRowsPerSecond: round(spec.rows / script, 0),
      falbatchRowsPerSecond: round(spec.rows / falbatch, 0),
      falbatchVsScript: round(script / falbatch, 3),
      falbatchVsScriptPerRound: perRound.map((v) => round(v, 3)),
      ...(before === undefined
        ? {}
        : {
            beforeSeconds: round(before),
            beforeOfIdeal: idealSeconds > 0 ? round(idealSeconds / before, 3) : undefined,
            beforeVsScript: round(script / before, 3),
            beforePhasesMs: Object.fromEntries(
              ['started', 'connected', 'firstSubmit', 'enqueued', 'lastAnswer', 'exported', 'exit'].map((key) => [
                key,
                Math.round(median(samples.before.map((s) => s.phases[key])) ?? Number.NaN),
              ]),
            ),
          }),
      falbatchPhasesMs: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, v === undefined ? undefined : Math.round(v)])),
      falbatchExitAfterLastAnswerMs: tail === undefined ? undefined : Math.round(tail),
      scriptFirstSubmitMs: scriptStart === undefined ? undefined : Math.round(scriptStart),
      target: spec.target,
      samples: Object.fromEntries(SIDES.map((side) => [side, samples[side].map((s) => round(s.seconds))])),
    };
    say(JSON.stringify({ [name]: results[name] }));
  }
} finally {
  await redis.stop();
}

console.log(JSON.stringify({ bench: 'whole-command', rounds: ROUNDS, redis: redis.what, results }));
const fmt = (v, digits = 3) => (v === undefined ? '–' : v.toFixed(digits));
say(
  markdownTable(
    [
      'case',
      'load',
      'script s',
      'falbatch s',
      'script of ideal',
      'falbatch of ideal',
      'falbatch ÷ script (rows/s)',
      'per round',
      'first submit (script / falbatch)',
      'falbatch exit − last answer',
      'before: s, of ideal, ÷ script',
      'target',
    ],
    Object.entries(results).map(([name, r]) => [
      `${name}: ${r.rows} rows, ${r.runners} runners, ${r.latencyMs.join('–')} ms, ${r.concurrency} in flight`,
      r.load,
      fmt(r.scriptSeconds, 2),
      fmt(r.falbatchSeconds, 2),
      fmt(r.scriptOfIdeal),
      fmt(r.falbatchOfIdeal),
      fmt(r.falbatchVsScript),
      r.falbatchVsScriptPerRound.map((v) => v.toFixed(3)).join(', '),
      `${r.scriptFirstSubmitMs ?? '–'} / ${r.falbatchPhasesMs.firstSubmit ?? '–'} ms`,
      `${r.falbatchExitAfterLastAnswerMs ?? '–'} ms`,
      r.beforeSeconds === undefined ? '–' : `${fmt(r.beforeSeconds, 2)}, ${fmt(r.beforeOfIdeal)}, ${fmt(r.beforeVsScript)}`,
      r.target,
    ]),
  ),
);
