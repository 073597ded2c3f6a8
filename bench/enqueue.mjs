// Figure: `falbatch enqueue` of a generated manifest (1,000,000 rows by default), with no worker
// running, against the minimal script that does the same with BullMQ directly: stream the CSV,
// `addBulk` the rows as jobs in chunks of 1,000. Both in processes of their own, measured in the
// same run: rows/s, peak RSS (VmHWM), and Redis bytes per row (used_memory before and after).
// falbatch also at 100,000 rows, to show its RSS does not grow with the row count.
//
//   node bench/enqueue.mjs              BENCH_ROWS=1000000 BENCH_SMALL_ROWS=100000 REDIS_URL=…
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { markdownTable, ROOT, round, spawnNode } from './lib/processes.mjs';
import { usedMemory } from './lib/redis-memory.mjs';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const SMALL = Number(process.env.BENCH_SMALL_ROWS ?? 100_000);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-enqueue-'));
const redis = new Redis(REDIS_URL);

/** Rows as users bring them: an image URL in a dataset folder and a captioning prompt. */
async function writeManifest(path, rows) {
  const out = createWriteStream(path);
  out.write('image_url,prompt\n');
  for (let i = 0; i < rows; i++) {
    if (!out.write(`https://images.example.com/dataset/${String(i).padStart(7, '0')}.jpg,Describe this image in one sentence. (${i})\n`))
      await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** Peak RSS of a live process so far (VmHWM, bytes); polled until it exits. */
function peakRss(pid) {
  try {
    return Number(/VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Runs a node process to its end: wall seconds, peak RSS, Redis bytes it left per row. */
/** @param {string[]} args @param {{ env?: Record<string, string>, script?: string }} options @param {number} rows */
async function measure(args, { env = {}, script = undefined } = {}, rows) {
  const before = await usedMemory(redis);
  const started = performance.now();
  const proc = spawnNode(args, { env: { REDIS_URL, ...env }, ...(script ? { script } : {}) });
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, peakRss(proc.pid) ?? 0)), 50);
  const code = await proc.exited;
  clearInterval(timer);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`${args.join(' ')} exited ${code}:\n${proc.stdout()}${proc.stderr()}`);
  const after = await usedMemory(redis);
  return { seconds, rowsPerSecond: rows / seconds, peakRssMb: peak / 2 ** 20, redisBytesPerRow: (after - before) / rows, output: proc.stdout() };
}

/** What one row costs in falbatch's keys, by kind (MEMORY USAGE of each key, per entry). */
async function breakdown(prefix) {
  const keys = [];
  for await (const batch of redis.scanStream({ match: `${prefix}:*:batch:*:meta`, count: 1000 })) keys.push(...batch);
  const base = keys[0].replace(/:meta$/, '');
  // The lists hold a packed chunk of rows per element: bytes per row, not per element.
  const [backlogLeft, rows] = await redis.hmget(`${base}:meta`, 'backlog_left', 'rows');
  const backlogRows = Number(backlogLeft ?? (await redis.llen(`${base}:backlog`)));
  const per = async (name, entries) => (entries === 0 ? 0 : Number(await redis.memory('USAGE', `${base}:${name}`, 'SAMPLES', '0')) / entries);
  return {
    backlog: await per('backlog', backlogRows),
    rows: await per('rows', Number(rows)),
    keys: await per('keys', await redis.hlen(`${base}:keys`)),
    backlogRows,
  };
}

const baselineScript = join(ROOT, 'bench', 'lib', 'bare-addbulk.mjs');

const big = join(dir, 'big.csv');
const small = join(dir, 'small.csv');
await writeManifest(big, ROWS);
await writeManifest(small, SMALL);

const prefixes = [];
const prefix = (name) => {
  const p = `bench-enqueue-${name}-${Date.now()}`;
  prefixes.push(p);
  return p;
};
try {
  const basePrefix = prefix('bare');
  const bare = await measure([big], { script: baselineScript, env: { PREFIX: basePrefix } }, ROWS);
  await deletePrefix(REDIS_URL, basePrefix);

  const smallPrefix = prefix('small');
  const fbSmall = await measure(['enqueue', small, '--prefix', smallPrefix], {}, SMALL);
  await deletePrefix(REDIS_URL, smallPrefix);

  const bigPrefix = prefix('big');
  const fb = await measure(['enqueue', big, '--prefix', bigPrefix], {}, ROWS);
  const cost = await breakdown(bigPrefix);
  await deletePrefix(REDIS_URL, bigPrefix);

  const table = markdownTable(
    ['', 'rows', 'seconds', 'rows/s', 'peak RSS', 'Redis bytes/row'],
    [
      [
        'baseline: bare `addBulk` (chunks of 1,000), every row a job',
        ROWS.toLocaleString('en'),
        round(bare.seconds, 1),
        Math.round(bare.rowsPerSecond).toLocaleString('en'),
        `${round(bare.peakRssMb, 0)} MB`,
        Math.round(bare.redisBytesPerRow),
      ],
      [
        'falbatch enqueue, no worker',
        SMALL.toLocaleString('en'),
        round(fbSmall.seconds, 1),
        Math.round(fbSmall.rowsPerSecond).toLocaleString('en'),
        `${round(fbSmall.peakRssMb, 0)} MB`,
        Math.round(fbSmall.redisBytesPerRow),
      ],
      [
        `falbatch enqueue, no worker (**${round(fb.rowsPerSecond / bare.rowsPerSecond)}×** the baseline's rows/s)`,
        ROWS.toLocaleString('en'),
        round(fb.seconds, 1),
        Math.round(fb.rowsPerSecond).toLocaleString('en'),
        `${round(fb.peakRssMb, 0)} MB`,
        Math.round(fb.redisBytesPerRow),
      ],
    ],
  );
  console.log(table);
  console.log(
    `\nfalbatch per row, by key (MEMORY USAGE / entries): backlog entry ${Math.round(cost.backlog)} B, rows list ${Math.round(cost.rows)} B, row keys ${Math.round(cost.keys)} B; ` +
      `${cost.backlogRows.toLocaleString('en')} rows in the backlog, the rest jobs (--max-waiting).`,
  );
  console.log(
    JSON.stringify({
      figure: 'enqueue',
      rows: ROWS,
      baseline: {
        seconds: round(bare.seconds),
        rowsPerSecond: Math.round(bare.rowsPerSecond),
        peakRssMb: round(bare.peakRssMb, 1),
        redisBytesPerRow: Math.round(bare.redisBytesPerRow),
      },
      falbatch: {
        seconds: round(fb.seconds),
        rowsPerSecond: Math.round(fb.rowsPerSecond),
        peakRssMb: round(fb.peakRssMb, 1),
        redisBytesPerRow: Math.round(fb.redisBytesPerRow),
        perKey: cost,
      },
      falbatchSmall: { rows: SMALL, seconds: round(fbSmall.seconds), peakRssMb: round(fbSmall.peakRssMb, 1) },
      ratio: round(fb.rowsPerSecond / bare.rowsPerSecond),
      rssGrowthMb: round(fb.peakRssMb - fbSmall.peakRssMb, 1),
    }),
  );
} finally {
  for (const p of prefixes) await deletePrefix(REDIS_URL, p).catch(() => undefined);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
}
