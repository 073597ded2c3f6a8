// Figure (issue 13): `--concurrency auto` against the best fixed setting chosen in hindsight, for
// accounts of 2, 8 and 40 slots the worker is not told (the emulator's runners), with a jittered
// processing time. For each account: falbatch work with no flags (auto), then --concurrency R,
// R+1, R+2 and 2R; wall time from the first submit to the batch finished, its fraction of the
// ideal rows × mean latency / R, auto's ratio to the best fixed run, the slots it learned and the
// most requests the emulator held at once (outstanding: running + waiting in its queue). Then the
// acceptance run: 7 slots, 1,000 rows, auto, which must reach 0.95 of the ideal.
//
//   npm run build && node bench/auto-concurrency.mjs
//   BENCH_ACCOUNTS=2,8,40 BENCH_ROUNDS_PER_SLOT=25 (rows = slots × this) BENCH_LATENCY_MIN_MS=300 BENCH_LATENCY_MAX_MS=500
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { benchRedis } from './lib/bench-redis.mjs';
import { measureFalbatch } from './lib/falbatch-run.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { markdownTable, round } from './lib/processes.mjs';
import { headroomFor } from '../dist/worker/slot-learner.js';

const ACCOUNTS = (process.env.BENCH_ACCOUNTS ?? '2,8,40').split(',').map(Number);
const PER_SLOT = Number(process.env.BENCH_ROUNDS_PER_SLOT ?? 25);
const MIN_MS = Number(process.env.BENCH_LATENCY_MIN_MS ?? 300);
const MAX_MS = Number(process.env.BENCH_LATENCY_MAX_MS ?? 500);
const MEAN_S = (MIN_MS + MAX_MS) / 2 / 1000;
const say = (text) => process.stderr.write(`${text}\n`);
const load = [loadavg()[0]];
const redisServer = await benchRedis();

async function run(slots, rows, workArgs) {
  const manifest = writeManifest(rows, `auto-${slots}`);
  try {
    const result = await measureFalbatch({
      emulatorArgs: ['--runners', String(slots), '--latency', `${MIN_MS}..${MAX_MS}ms`, '--seed', '1'],
      manifestPath: manifest.path,
      redisUrl: redisServer.url,
      workArgs,
      say,
    });
    const ideal = (rows * MEAN_S) / slots;
    say(
      `${slots} slots, ${workArgs.join(' ') || 'auto'}: ${result.seconds.toFixed(2)} s (${(ideal / result.seconds).toFixed(3)} of ideal), max outstanding ${result.maxOutstanding}`,
    );
    return { ...result, ideal, ofIdeal: ideal / result.seconds };
  } finally {
    rmSync(manifest.dir, { recursive: true, force: true });
  }
}

const rows = [];
const json = [];
try {
  for (const slots of ACCOUNTS) {
    const count = slots * PER_SLOT;
    const auto = await run(slots, count, []);
    const fixed = [];
    for (const n of [...new Set([slots, slots + 1, slots + 2, 2 * slots])]) fixed.push({ n, ...(await run(slots, count, ['--concurrency', String(n)])) });
    const best = fixed.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const bound = slots + headroomFor(slots);
    rows.push([
      `${slots} slots, ${count} rows`,
      `${auto.seconds.toFixed(2)} s (${auto.ofIdeal.toFixed(3)})`,
      `${auto.learned?.slots ?? '—'} → ${auto.learned?.target ?? '—'}`,
      `${auto.maxOutstanding} (bound ${bound})`,
      fixed.map((f) => `${f.n}: ${f.seconds.toFixed(2)} s`).join(', '),
      `${best.n}`,
      `**${round(best.seconds / auto.seconds, 3)}**`,
    ]);
    json.push({
      slots,
      rows: count,
      auto: { seconds: round(auto.seconds), ofIdeal: round(auto.ofIdeal, 3), learned: auto.learned, maxOutstanding: auto.maxOutstanding },
      fixed: fixed.map((f) => ({ concurrency: f.n, seconds: round(f.seconds), ofIdeal: round(f.ofIdeal, 3), maxOutstanding: f.maxOutstanding })),
      bestFixed: best.n,
      autoVsBest: round(best.seconds / auto.seconds, 3),
    });
  }
  // The acceptance run: 7 slots, 1,000 rows, auto.
  const acceptance = await run(7, 1000, []);
  load.push(loadavg()[0]);
  console.log(
    `Auto concurrency: ${MIN_MS}–${MAX_MS} ms per request; ${redisServer.what}; load average ${load.map((l) => l.toFixed(1)).join(' → ')}\n\n` +
      markdownTable(
        [
          'account',
          'auto: seconds (of ideal)',
          'learned slots → target',
          'max outstanding',
          'fixed --concurrency: seconds',
          'best fixed',
          'auto vs best fixed',
        ],
        rows,
      ) +
      `\n\n7 slots, 1,000 rows, auto: ${acceptance.seconds.toFixed(2)} s, **${acceptance.ofIdeal.toFixed(3)} of ideal** (${acceptance.ideal.toFixed(2)} s), learned ${acceptance.learned?.slots ?? '—'} → ${acceptance.learned?.target ?? '—'}, max outstanding ${acceptance.maxOutstanding} (bound ${7 + headroomFor(7)})`,
  );
  console.log(
    JSON.stringify({
      figure: 'auto-concurrency',
      accounts: json,
      acceptance: {
        seconds: round(acceptance.seconds),
        ofIdeal: round(acceptance.ofIdeal, 3),
        learned: acceptance.learned,
        maxOutstanding: acceptance.maxOutstanding,
      },
      load,
    }),
  );
} finally {
  await redisServer.stop();
}
