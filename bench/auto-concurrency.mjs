// Figure (issues 13 and 19): `--concurrency auto` against the best fixed setting chosen in
// hindsight, for accounts of 2, 8 and 40 slots the worker is not told (the emulator's runners),
// with a jittered processing time. For each account: falbatch work with no flags started cold
// (nothing learned: 4, doubling) and warm (the slots the cold run learned, as the next run finds
// them in Redis), then --concurrency R, R+1, R+2 and 2R; wall time from the first submit to the
// batch finished, its fraction of the ideal rows × mean latency / R, each auto run's ratio to the
// best fixed run, the slots learned and the most requests the emulator held at once (outstanding:
// running + waiting in its queue). Then the acceptance run: 7 slots, 1,000 rows, auto (cold),
// which must reach 0.95 of the ideal.
//
//   npm run build && node bench/auto-concurrency.mjs
//   BENCH_ACCOUNTS=2,8,40 BENCH_ROUNDS_PER_SLOT=50 (rows = slots × this: 20 s batches) BENCH_LATENCY_MIN_MS=300 BENCH_LATENCY_MAX_MS=500 BENCH_ACCEPTANCE=0
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { benchRedis } from './lib/bench-redis.mjs';
import { measureFalbatch } from './lib/falbatch-run.mjs';
import { writeManifest } from './lib/manifest.mjs';
import { markdownTable, round } from './lib/processes.mjs';
import { headroomFor } from '../dist/worker/slot-learner.js';
import { LEARNED_KEPT_MS, slotsAccountOf } from '../dist/worker/concurrency-control.js';

const ACCOUNTS = (process.env.BENCH_ACCOUNTS ?? '2,8,40').split(',').map(Number);
const PER_SLOT = Number(process.env.BENCH_ROUNDS_PER_SLOT ?? 50);
const ACCEPTANCE = process.env.BENCH_ACCEPTANCE !== '0';
const MIN_MS = Number(process.env.BENCH_LATENCY_MIN_MS ?? 300);
const MAX_MS = Number(process.env.BENCH_LATENCY_MAX_MS ?? 500);
const MEAN_S = (MIN_MS + MAX_MS) / 2 / 1000;
const say = (text) => process.stderr.write(`${text}\n`);
const load = [loadavg()[0]];
const redisServer = await benchRedis();

async function run(slots, rows, workArgs, warmFrom) {
  const manifest = writeManifest(rows, `auto-${slots}`);
  try {
    const result = await measureFalbatch({
      emulatorArgs: ['--runners', String(slots), '--latency', `${MIN_MS}..${MAX_MS}ms`, '--seed', '1'],
      manifestPath: manifest.path,
      redisUrl: redisServer.url,
      workArgs,
      say,
      // What the run before left in the namespace: the slots it learned, under the account's digest.
      ...(warmFrom === undefined
        ? {}
        : {
            prepare: async (ctx, env) => {
              await ctx.redis.set(ctx.keys.learnedSlots(slotsAccountOf(env.FAL_KEY)), String(warmFrom), 'PX', LEARNED_KEPT_MS);
            },
          }),
    });
    const ideal = (rows * MEAN_S) / slots;
    say(
      `${slots} slots, ${workArgs.join(' ') || (warmFrom === undefined ? 'auto, cold' : `auto, warm from ${warmFrom}`)}: ${result.seconds.toFixed(2)} s (${(ideal / result.seconds).toFixed(3)} of ideal), max outstanding ${result.maxOutstanding}`,
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
    const cold = await run(slots, count, []);
    const warm = await run(slots, count, [], cold.learned?.slots ?? slots);
    const fixed = [];
    for (const n of [...new Set([slots, slots + 1, slots + 2, 2 * slots])]) fixed.push({ n, ...(await run(slots, count, ['--concurrency', String(n)])) });
    const best = fixed.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const bound = slots + headroomFor(slots);
    rows.push([
      `${slots} slots, ${count} rows`,
      `${cold.seconds.toFixed(2)} s (${cold.ofIdeal.toFixed(3)})`,
      `${warm.seconds.toFixed(2)} s (${warm.ofIdeal.toFixed(3)})`,
      `${cold.learned?.slots ?? '—'} → ${cold.learned?.target ?? '—'}; ${warm.learned?.slots ?? '—'} → ${warm.learned?.target ?? '—'}`,
      `${cold.maxOutstanding}; ${warm.maxOutstanding} (bound ${bound})`,
      fixed.map((f) => `${f.n}: ${f.seconds.toFixed(2)} s`).join(', '),
      `${best.n}`,
      `**${round(best.seconds / cold.seconds, 3)}**`,
      `**${round(best.seconds / warm.seconds, 3)}**`,
    ]);
    const auto = (r) => ({ seconds: round(r.seconds), ofIdeal: round(r.ofIdeal, 3), learned: r.learned, maxOutstanding: r.maxOutstanding });
    json.push({
      slots,
      rows: count,
      cold: auto(cold),
      warm: auto(warm),
      fixed: fixed.map((f) => ({ concurrency: f.n, seconds: round(f.seconds), ofIdeal: round(f.ofIdeal, 3), maxOutstanding: f.maxOutstanding })),
      bestFixed: best.n,
      coldVsBest: round(best.seconds / cold.seconds, 3),
      warmVsBest: round(best.seconds / warm.seconds, 3),
    });
    load.push(loadavg()[0]);
  }
  // The acceptance run: 7 slots, 1,000 rows, auto.
  const acceptance = ACCEPTANCE ? await run(7, 1000, []) : undefined;
  load.push(loadavg()[0]);
  console.log(
    `Auto concurrency: ${MIN_MS}–${MAX_MS} ms per request; ${redisServer.what}; load average ${load.map((l) => l.toFixed(1)).join(' → ')}\n\n` +
      markdownTable(
        [
          'account',
          'auto cold: seconds (of ideal)',
          'auto warm: seconds (of ideal)',
          'learned slots → target (cold; warm)',
          'max outstanding (cold; warm)',
          'fixed --concurrency: seconds',
          'best fixed',
          'cold vs best fixed',
          'warm vs best fixed',
        ],
        rows,
      ) +
      (acceptance
        ? `\n\n7 slots, 1,000 rows, auto: ${acceptance.seconds.toFixed(2)} s, **${acceptance.ofIdeal.toFixed(3)} of ideal** (${acceptance.ideal.toFixed(2)} s), learned ${acceptance.learned?.slots ?? '—'} → ${acceptance.learned?.target ?? '—'}, max outstanding ${acceptance.maxOutstanding} (bound ${7 + headroomFor(7)})`
        : ''),
  );
  console.log(
    JSON.stringify({
      figure: 'auto-concurrency',
      accounts: json,
      ...(acceptance
        ? {
            acceptance: {
              seconds: round(acceptance.seconds),
              ofIdeal: round(acceptance.ofIdeal, 3),
              learned: acceptance.learned,
              maxOutstanding: acceptance.maxOutstanding,
            },
          }
        : {}),
      load,
    }),
  );
} finally {
  await redisServer.stop();
}
