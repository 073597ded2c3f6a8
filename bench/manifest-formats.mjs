// Figure: how fast each manifest format is read, and what memory reading it takes (issue 20), as
// ratios against CSV read in the same run.
//
// The same rows (image URL, prompt, an id, a number) written as CSV, CSV gzip, JSON Lines, JSON
// Lines gzip and Parquet (snappy, row groups of 10,000), then each read through falbatch's own
// readers (dist/manifest/manifest-records.js: framing, decoding, the header-then-records stream;
// no validation, no Redis), each read in a process of its own (peak RSS is the process's), the
// formats taking turns so a change in the machine's load touches them alike. Medians of BENCH_RUNS.
//
//   npm run build && node bench/manifest-formats.mjs
//   BENCH_ROWS=200000 BENCH_RUNS=5
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { markdownTable, ROOT } from './lib/processes.mjs';

const ROWS = Number(process.env.BENCH_ROWS ?? 200_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const say = (text) => process.stderr.write(`${text}\n`);

const dir = mkdtempSync(join(tmpdir(), 'falbatch-bench-formats-'));
const rows = Array.from({ length: ROWS }, (_, i) => ({
  id: `r${i}`,
  image_url: `https://example.com/images/${i}.jpg`,
  prompt: `Describe image ${i} in one sentence, naming its main subject`,
  width: 256 + (i % 1024),
}));
const csv = `id,image_url,prompt,width\n${rows.map((r) => `${r.id},${r.image_url},${r.prompt},${r.width}`).join('\n')}\n`;
const jsonl = `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
const files = {
  csv: join(dir, 'rows.csv'),
  'csv.gz': join(dir, 'rows.csv.gz'),
  jsonl: join(dir, 'rows.jsonl'),
  'jsonl.gz': join(dir, 'rows.jsonl.gz'),
  parquet: join(dir, 'rows.parquet'),
};
writeFileSync(files.csv, csv);
writeFileSync(files['csv.gz'], gzipSync(csv));
writeFileSync(files.jsonl, jsonl);
writeFileSync(files['jsonl.gz'], gzipSync(jsonl));
writeFileSync(
  files.parquet,
  new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'id', data: rows.map((r) => r.id), type: 'STRING' },
        { name: 'image_url', data: rows.map((r) => r.image_url), type: 'STRING' },
        { name: 'prompt', data: rows.map((r) => r.prompt), type: 'STRING' },
        { name: 'width', data: Int32Array.from(rows, (r) => r.width), type: 'INT32' },
      ],
      rowGroupSize: 10_000,
    }),
  ),
);

// One read, in a process of its own: prints {ms, records, rssMb}.
const reader = `
  const { localManifestBytes } = await import(${JSON.stringify(join(ROOT, 'dist/manifest/manifest-bytes.js'))});
  const { manifestEncodingOf } = await import(${JSON.stringify(join(ROOT, 'dist/manifest/manifest-format.js'))});
  const { manifestRecords } = await import(${JSON.stringify(join(ROOT, 'dist/manifest/manifest-records.js'))});
  const file = process.argv[1];
  const started = performance.now();
  let records = 0;
  for await (const record of manifestRecords(localManifestBytes(file), manifestEncodingOf(file), {})) if ('fields' in record) records++;
  const ms = performance.now() - started;
  console.log(JSON.stringify({ ms, records, rssMb: process.resourceUsage().maxRSS / 1024 }));
`;

const samples = Object.fromEntries(Object.keys(files).map((name) => [name, []]));
for (let run = 0; run < RUNS; run++) {
  for (const [name, file] of Object.entries(files)) {
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', reader, file], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${name}: ${result.stderr}`);
    const sample = JSON.parse(result.stdout);
    if (sample.records !== ROWS + 1) throw new Error(`${name}: read ${sample.records} records, expected ${ROWS + 1} (header included)`);
    samples[name].push(sample);
  }
  say(`run ${run + 1}/${RUNS} done (load ${loadavg()[0].toFixed(2)})`);
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const figures = Object.entries(samples).map(([name, list]) => ({
  format: name,
  bytes: statSync(files[name]).size,
  ms: median(list.map((s) => s.ms)),
  rssMb: median(list.map((s) => s.rssMb)),
}));
const base = figures[0];
const table = figures.map((f) => [
  f.format,
  `${(f.bytes / 1024 / 1024).toFixed(1)} MB`,
  `${Math.round(f.ms)} ms`,
  `${Math.round((ROWS / f.ms) * 1000).toLocaleString('en-US')} rows/s`,
  `${(f.ms / base.ms).toFixed(2)}×`,
  `${Math.round(f.rssMb)} MB`,
  `${(f.rssMb / base.rssMb).toFixed(2)}×`,
]);
say(markdownTable(['format', 'file', 'read (median)', 'rate', 'time vs CSV', 'peak RSS', 'RSS vs CSV'], table));
say(
  `${ROWS.toLocaleString('en-US')} rows, ${RUNS} runs, ${cpus().length} cores, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(JSON.stringify({ bench: 'manifest-formats', rows: ROWS, runs: RUNS, load: loadavg(), figures }));
rmSync(dir, { recursive: true, force: true });
