// Figure: the fixed cost of a falbatch command, what it pays before its first submit and after its
// last answer, against `node -e 0` measured in the same run (issue 19).
//
// Each case is a process of its own, spawned the way users run falbatch, the cases taking turns so
// a change in the machine's load touches them alike: `node -e 0`; `falbatch --help`; a flag error
// (`run m.csv --no-such-flag`); `status` against a Redis; `run` of a 1-row manifest against the fal
// emulator (a process of its own, 20 ms per request), each in a namespace of its own so every run
// submits. Phases come from FALBATCH_TIMING=1 (falbatch prints when it started its command's own
// code, connected, enqueued, exported, exited, and its peak RSS) and from the emulator, whose
// counters are read every 5 ms (first submit: its submit count moves; last answer: the result is
// read). Every time is from the spawn; medians of BENCH_RUNS runs. Then all again with two busy
// loops (processes of their own) beside them.
//
// With BENCH_BEFORE=<another built checkout> (e.g. `git archive <commit> | tar -x -C /tmp/before`,
// node_modules linked, `npx tsc -p tsconfig.json`), that checkout's falbatch takes its turn beside
// this one's in every round, so the two are compared under the same load.
//
//   npm run build && node bench/startup.mjs
//   BENCH_RUNS=15 (per case and load)  BENCH_BEFORE=/tmp/before  BENCH_LOADS=quiet,busy
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { falbatchEnv, markdownTable, ROOT, sleep, startEmulator } from './lib/processes.mjs';

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const BUILDS = [
  { name: 'after', bin: join(ROOT, 'bin/falbatch.js') },
  ...(process.env.BENCH_BEFORE ? [{ name: 'before', bin: join(process.env.BENCH_BEFORE, 'bin/falbatch.js') }] : []),
];
const LOADS = (process.env.BENCH_LOADS ?? 'quiet,busy').split(',');
const say = (text) => process.stderr.write(`${text}\n`);
const now = () => performance.timeOrigin + performance.now();

/** Runs one process to its end; returns ms from spawn to each phase it printed, to its exit, and its peak RSS. */
function timed(args, env) {
  const spawned = now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('close', (code) => {
      const exit = now() - spawned;
      const phases = { exit };
      for (const [, phase, at] of stderr.matchAll(/^falbatch timing: (\w+) at ([\d.]+) ms/gm)) if (phase !== 'exit') phases[phase] = Number(at) - spawned;
      const rss = /peak RSS (\d+) MB/.exec(stderr)?.[1];
      resolve({ code, spawned, phases, rssMb: rss === undefined ? undefined : Number(rss), stderr });
    });
    child.once('error', reject);
  });
}

/** Watches the emulator's counters every 5 ms until `stop()`: when the submit count and the result reads first moved. */
function watchEmulator(emulator) {
  let stopped = false;
  const seen = {};
  const done = (async () => {
    const base = await emulator.stats();
    while (!stopped) {
      const stats = await emulator.stats();
      const at = now();
      if (seen.firstSubmit === undefined && stats.submits > base.submits) seen.firstSubmit = at;
      if (seen.lastAnswer === undefined && stats.resultCalls > base.resultCalls) seen.lastAnswer = at;
      await sleep(5);
    }
  })();
  return {
    ready: emulator.stats(),
    async stop() {
      stopped = true;
      await done;
      return seen;
    },
  };
}

const median = (values) => {
  const sorted = values.filter((value) => value !== undefined).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

function busyLoops(n) {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
}

const dir = mkdtempSync(join(tmpdir(), 'falbatch-startup-'));
const manifest = join(dir, 'one.csv');
writeFileSync(manifest, 'id,image_url,prompt\na,https://example.com/a.jpg,describe it\n');
const redis = await benchRedis();
const emulator = await startEmulator(['--latency', '20ms', '--runners', '8']);
const prefixes = [];
const results = {};
try {
  for (const load of LOADS) {
    const loops = load === 'busy' ? busyLoops(2) : [];
    await sleep(load === 'busy' ? 1000 : 0);
    const samples = { node: [] };
    for (const build of BUILDS)
      Object.assign(samples, { [`${build.name}:help`]: [], [`${build.name}:flagError`]: [], [`${build.name}:status`]: [], [`${build.name}:run`]: [] });
    const loadBefore = loadavg()[0];
    for (let i = 0; i < RUNS; i++) {
      samples.node.push(await timed(['-e', '0'], {}));
      // Alternate which build goes first.
      for (const build of i % 2 === 0 ? BUILDS : [...BUILDS].reverse()) {
        const prefix = `bench-startup-${randomUUID().slice(0, 8)}`;
        prefixes.push(prefix);
        const env = { ...falbatchEnv(redis.url, emulator.url), FALBATCH_TIMING: '1', FALBATCH_PREFIX: prefix };
        const expect = (name, sample, code) => {
          if (sample.code !== code) throw new Error(`${build.name} ${name} exited ${sample.code}:\n${sample.stderr}`);
          samples[`${build.name}:${name}`].push(sample);
        };
        expect('help', await timed([build.bin, '--help'], env), 0);
        expect('flagError', await timed([build.bin, 'run', manifest, '--no-such-flag'], env), 1);
        expect('status', await timed([build.bin, 'status', '--log-level', 'error'], env), 0);
        const watch = watchEmulator(emulator);
        await watch.ready;
        const run = await timed([build.bin, 'run', manifest, '--out', join(dir, `out-${build.name}-${i}.csv`), '--log-level', 'error'], env);
        const seen = await watch.stop();
        if (seen.firstSubmit === undefined || seen.lastAnswer === undefined) throw new Error(`the emulator saw no submit or no result read for run ${i}`);
        run.phases.firstSubmit = seen.firstSubmit - run.spawned;
        run.phases.lastAnswer = seen.lastAnswer - run.spawned;
        expect('run', run, 0);
      }
    }
    for (const loop of loops) loop.kill('SIGKILL');
    const phase = (list, key) => median(list.map((sample) => sample.phases[key]));
    const node = phase(samples.node, 'exit');
    for (const build of BUILDS) {
      const of = (name) => samples[`${build.name}:${name}`];
      const run = Object.fromEntries(
        ['started', 'connected', 'enqueued', 'firstSubmit', 'lastAnswer', 'exported', 'exit'].map((key) => [key, phase(of('run'), key)]),
      );
      const key = BUILDS.length > 1 ? `${load}:${build.name}` : load;
      results[key] = {
        build: build.name,
        load: `load average ${loadBefore.toFixed(2)} → ${loadavg()[0].toFixed(2)} on ${cpus().length} cores${loops.length ? ', with 2 busy loops' : ''}`,
        nodeMs: node,
        helpMs: phase(of('help'), 'exit'),
        flagErrorMs: phase(of('flagError'), 'exit'),
        status: { startedMs: phase(of('status'), 'started'), connectedMs: phase(of('status'), 'connected'), exitMs: phase(of('status'), 'exit') },
        run,
        runExitAfterLastAnswerMs: median(of('run').map((sample) => sample.phases.exit - sample.phases.lastAnswer)),
        rssMb: {
          help: median(of('help').map((s) => s.rssMb)),
          status: median(of('status').map((s) => s.rssMb)),
          run: median(of('run').map((s) => s.rssMb)),
        },
      };
      say(JSON.stringify({ [key]: results[key] }));
    }
  }
} finally {
  await emulator.close();
  for (const prefix of prefixes) await deletePrefix(redis.url, prefix);
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

const ms = (value) => (value === undefined ? '–' : `${Math.round(value)}`);
const over = (value, base) => (value === undefined ? '–' : `${Math.round(value)} (+${Math.round(value - base)})`);
console.log(JSON.stringify({ bench: 'startup', runs: RUNS, redis: redis.what, results }));
say(
  markdownTable(
    [
      'machine',
      'build',
      'node -e 0',
      '--help',
      'flag error',
      'status',
      'run: started',
      'connected',
      'enqueued',
      'first submit',
      'last answer',
      'exported',
      'exit',
      'exit − last answer',
      'peak RSS help / status / run',
    ],
    Object.values(results).map((r) => [
      r.load,
      r.build,
      ms(r.nodeMs),
      over(r.helpMs, r.nodeMs),
      over(r.flagErrorMs, r.nodeMs),
      over(r.status.exitMs, r.nodeMs),
      ms(r.run.started),
      ms(r.run.connected),
      ms(r.run.enqueued),
      over(r.run.firstSubmit, r.nodeMs),
      ms(r.run.lastAnswer),
      ms(r.run.exported),
      ms(r.run.exit),
      ms(r.runExitAfterLastAnswerMs),
      `${r.rssMb.help} / ${r.rssMb.status} / ${r.rssMb.run} MB`,
    ]),
  ),
);
