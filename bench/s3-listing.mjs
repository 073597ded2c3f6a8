// Figure: `falbatch enqueue s3://bucket/prefix/ --prompt …` over a prefix of 100,000 images (the
// listing streamed page by page, each row's ETag and size taken from its page, no HEAD), against
// `falbatch enqueue` of a local CSV of the same 100,000 rows (same ids, URLs of the same length,
// same prompt), in the same run. Both in processes of their own, no worker: rows/s and peak RSS
// (VmHWM); the prefix also at 20,000 objects, to show RSS does not grow with the listing.
// The bucket is s3rver (a real S3 protocol server, path-style, signed requests) in a process of
// its own, so its CPU competes with falbatch's on the same cores: a real store answers a page of
// 1,000 keys in ~100 ms of its own, on other machines.
//
//   node bench/s3-listing.mjs           BENCH_ROWS=100000 BENCH_SMALL_ROWS=20000
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { benchRedis } from './lib/bench-redis.mjs';
import { deletePrefix } from './lib/delete-prefix.mjs';
import { markdownTable, ROOT, round, spawnNode } from './lib/processes.mjs';

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const SMALL = Number(process.env.BENCH_SMALL_ROWS ?? 20_000);
const PROMPT = 'Describe this image in one sentence.';
const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-s3-'));
const redis = await benchRedis();

/** s3rver on a free port, storing in `directory` (its DES continuation tokens need the legacy OpenSSL provider). */
async function startS3rver(directory) {
  const child = spawn(process.execPath, ['--openssl-legacy-provider', join(ROOT, 'test/fixtures/s3rver.mjs'), directory], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const line = /^(\{.*\})\n/.exec(out)?.[1];
      if (line) resolve(JSON.parse(line).port);
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited (${code})`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => (child.stdin.end(), once(child, 'exit')) };
}

const key = (prefix, i) => `${prefix}/d${String(Math.floor(i / 1000)).padStart(3, '0')}/${String(i).padStart(7, '0')}.png`;

/**
 * `rows` objects under `prefix`, written straight into s3rver's folder in its own layout (object,
 * metadata, md5), as PUTs would leave them: 100,000 PUTs through the API would take minutes.
 */
function fillBucket(root, bucket, prefix, rows) {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108020000009077', 'hex');
  for (let i = 0; i < rows; i++) {
    const path = join(root, bucket, key(prefix, i));
    if (i % 1000 === 0) mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(`${path}._S3rver_object`, png);
    writeFileSync(`${path}._S3rver_metadata.json`, '{"content-type":"image/png"}');
    writeFileSync(`${path}._S3rver_object.md5`, 'd41d8cd98f00b204e9800998ecf8427e');
  }
}

/** The same rows as a local CSV: id (the relative key), an https URL as long as the s3:// one, the prompt. */
async function writeCsv(path, prefix, rows) {
  const out = createWriteStream(path);
  out.write('id,image_url,prompt\n');
  for (let i = 0; i < rows; i++) {
    const k = key(prefix, i);
    if (!out.write(`${k.slice(prefix.length + 1)},https://bench.example/${k},${PROMPT}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

function peakRss(pid) {
  try {
    return Number(/VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
  } catch {
    return undefined;
  }
}

async function measure(args, env, rows, script = undefined) {
  const started = performance.now();
  const proc = spawnNode(args, { env: { REDIS_URL: redis.url, ...env }, ...(script ? { script } : {}) });
  let peak = 0;
  // A process that is exiting has no VmHWM any more: such a poll counts for nothing.
  const timer = setInterval(() => {
    const rss = peakRss(proc.pid);
    if (Number.isFinite(rss)) peak = Math.max(peak, rss);
  }, 50);
  const code = await proc.exited;
  clearInterval(timer);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`${args.join(' ')} exited ${code}:\n${proc.stdout()}${proc.stderr()}`);
  if (
    !proc.stdout().includes(`${rows.toLocaleString('en')} rows read`) &&
    !proc.stdout().includes(`${rows} rows read`) &&
    !proc.stdout().includes(`listed ${rows}`)
  )
    throw new Error(`expected ${rows} rows read:\n${proc.stdout()}`);
  return { seconds, rowsPerSecond: rows / seconds, peakRssMb: peak / 2 ** 20 };
}

const store = join(dir, 's3rver');
mkdirSync(store);
const s3 = await startS3rver(store);
const client = new S3Client({
  endpoint: s3.endpoint,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
});
const prefixes = [];
try {
  await client.send(new CreateBucketCommand({ Bucket: 'bench' }));
  fillBucket(store, 'bench', 'big', ROWS);
  fillBucket(store, 'bench', 'small', SMALL);
  const csv = join(dir, 'big.csv');
  await writeCsv(csv, 'big', ROWS);
  const s3env = {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: s3.endpoint,
    AWS_CONFIG_FILE: join(dir, 'none'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const prefix = (name) => {
    const p = `bench-s3-${name}-${Date.now()}`;
    prefixes.push(p);
    return p;
  };
  // Warm-up: s3rver computes each object's md5 file on first sight; both listings see warm files.
  const baseline = await measure(['enqueue', csv, '--prefix', prefix('csv')], {}, ROWS);
  const small = await measure(['enqueue', 's3://bench/small/', '--prompt', PROMPT, '--prefix', prefix('small')], s3env, SMALL);
  const rawList = await measure(['s3://bench/big/'], s3env, ROWS, join(ROOT, 'bench', 'lib', 'list-prefix.mjs'));
  const listed = await measure(['enqueue', 's3://bench/big/', '--prompt', PROMPT, '--prefix', prefix('big')], s3env, ROWS);
  const ratio = baseline.rowsPerSecond / listed.rowsPerSecond;
  const overList = rawList.rowsPerSecond / listed.rowsPerSecond;
  const row = (what, rows, m, rss = true) => [
    what,
    rows.toLocaleString('en'),
    round(m.seconds, 1),
    Math.round(m.rowsPerSecond).toLocaleString('en'),
    rss ? `${round(m.peakRssMb, 0)} MB` : '–',
  ];
  console.log(
    markdownTable(
      ['', 'rows', 'seconds', 'rows/s', 'peak RSS'],
      [
        row('baseline: `falbatch enqueue` of a local CSV of the same rows', ROWS, baseline),
        row('the store alone: listing the prefix, nothing else (s3rver, page by page)', ROWS, rawList, false),
        row('`falbatch enqueue s3://bench/small/ --prompt …` (listing)', SMALL, small),
        row(
          `\`falbatch enqueue s3://bench/big/ --prompt …\` (the CSV is **${round(ratio)}×** as fast; the bare listing **${round(overList)}×**)`,
          ROWS,
          listed,
        ),
      ],
    ),
  );
  console.log(
    JSON.stringify({
      figure: 's3-listing',
      rows: ROWS,
      redis: redis.what,
      baseline: { seconds: round(baseline.seconds), rowsPerSecond: Math.round(baseline.rowsPerSecond), peakRssMb: round(baseline.peakRssMb, 1) },
      storeAlone: { seconds: round(rawList.seconds), rowsPerSecond: Math.round(rawList.rowsPerSecond) },
      listing: { seconds: round(listed.seconds), rowsPerSecond: Math.round(listed.rowsPerSecond), peakRssMb: round(listed.peakRssMb, 1) },
      listingSmall: { rows: SMALL, seconds: round(small.seconds), peakRssMb: round(small.peakRssMb, 1) },
      slowdown: round(ratio),
      overBareListing: round(overList),
      rssGrowthMb: round(listed.peakRssMb - small.peakRssMb, 1),
    }),
  );
} finally {
  for (const p of prefixes) await deletePrefix(redis.url, p).catch(() => undefined);
  client.destroy();
  await s3.stop();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
