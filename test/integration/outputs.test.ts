import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { describe, expect, it } from 'vitest';
import { type OutputError, ResultsNotWrittenError } from '../../src/errors.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { PERCENTILE_ERROR } from '../../src/results/batch-figures.js';
import { captionOptions } from '../../src/results/caption-files.js';
import type { ExportReport } from '../../src/results/export-report.js';
import { exportResults, OUTPUT_COLUMNS } from '../../src/results/export.js';
import { AtomicFile } from '../../src/results/atomic-file.js';
import type { Price } from '../../src/fal/price.js';
import { parquetSink, ROW_GROUP_ROWS } from '../../src/results/row-sinks.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, readCsv, runCliProcess, until } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

const MANTIS = 'fal-ai/mantis-llava-7b-v11';
const PRICE: Price = { unit: 'second', amount: 0.002, currency: 'USD', source: 'flag' };

function readJsonl(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function readParquet(path: string): Promise<{ columns: string[]; rowGroups: number; rows: Array<Record<string, unknown>> }> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const columns = parquetSchema(metadata).children.map((child) => child.element.name);
  const rows = (await parquetReadObjects({ file })) as Array<Record<string, unknown>>;
  return { columns, rowGroups: metadata.row_groups.length, rows };
}

/** No temp or probe file left in a folder. */
function leftovers(folder: string): string[] {
  return readdirSync(folder).filter((name) => name.endsWith('.tmp') || name.endsWith('.probe'));
}

describe('dataset formats', () => {
  it('writes Parquet with every column and the same values as JSONL; CSV gains the new columns before the carried ones', async () => {
    // One runner and 300 ms a call: later calls wait at fal long enough for the worker to see them
    // start (IN_QUEUE, then IN_PROGRESS), however loaded the machine is.
    const h = await createHarness({ emulator: { runners: 1, latency: '300ms' } });
    const manifest = h.file(
      'm.csv',
      [
        'id,image_url,prompt,max_tokens,note',
        'short,https://example.com/a.jpg,Describe A,3,cut',
        'full,https://example.com/b.jpg,Describe B,,whole',
        'twin,https://example.com/b.jpg,Describe B,,same as full',
        'unreachable,https://images.invalid/x.png,Describe X,,fails',
        'bad,https://example.com/c.jpg,Describe C,zero,rejected',
      ].join('\n'),
    );
    const out = join(h.dir, 'out.parquet');
    const summary = await runBatch(h.ctx, { manifest, out });
    expect(summary.export).toMatchObject({ format: 'parquet', rows: 5, ok: 3, failed: 1, rejected: 1, skipped: 0, pending: 0 });

    const parquet = await readParquet(out);
    expect(parquet.columns).toEqual([...OUTPUT_COLUMNS, 'note']);
    expect(parquet.rows.map((r) => r['id'])).toEqual(['short', 'full', 'twin', 'unreachable', 'bad']);
    const [short, full, twin, unreachable, bad] = parquet.rows as [
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    // A string the row does not have is null, as the numbers and booleans it does not have.
    expect(short).toMatchObject({ status: 'ok', partial: true, cached: false, error_type: null, error: null, attempts: 1, note: 'cut' });
    expect(String(short['output']).split(' ')).toHaveLength(3);
    expect(full).toMatchObject({ status: 'ok', partial: false, note: 'whole' });
    // The identical row is answered once: one of the two pays, the other reuses its answer.
    expect([full['cached'], twin['cached']].sort()).toEqual([false, true]);
    expect(twin['output']).toBe(full['output']);
    for (const row of [short, full, twin].filter((r) => r['cached'] === false)) {
      expect(row['inference_s']).toBeCloseTo(0.3, 5);
      // (From the submit's answer to the stored result: a little under fal's 300 ms is possible.)
      expect(Number(row['latency_ms'])).toBeGreaterThanOrEqual(200);
    }
    // One runner: calls wait at fal, and the worker sees them start (IN_QUEUE, then IN_PROGRESS).
    const stored = (await h.ctx.store.getMany(summary.enqueue.batch, ['short', 'full', 'twin', 'unreachable'])).filter((r) => r?.started_at !== undefined);
    expect(stored.length).toBeGreaterThan(0);
    for (const result of stored) {
      expect(result?.started_at).toBeGreaterThanOrEqual(result?.submitted_at ?? Infinity);
      expect((result?.finished_at ?? 0) - (result?.started_at ?? Infinity)).toBeGreaterThanOrEqual(150);
    }
    expect(unreachable).toMatchObject({ status: 'failed', partial: null, cached: false, output: null });
    expect(unreachable['error_type']).toMatch(/^\w+$/);
    expect(unreachable['error']).toMatch(/could not download images\.invalid/);
    expect(bad).toMatchObject({ status: 'rejected', error_type: 'invalid_row', partial: null, cached: null, inference_s: null, latency_ms: null, attempts: 0 });

    // JSONL and Parquet carry the same values (latency_ms is an INT64 in Parquet).
    const jsonl = join(h.dir, 'out.jsonl');
    await exportResults(h.ctx, { batch: summary.enqueue.batch, out: jsonl });
    const objects = readJsonl(jsonl);
    expect(objects).toEqual(parquet.rows.map((row) => ({ ...row, latency_ms: row['latency_ms'] === null ? null : Number(row['latency_ms']) })));

    const csv = join(h.dir, 'out.csv');
    await exportResults(h.ctx, { batch: summary.enqueue.batch, out: csv });
    expect(readFileSync(csv, 'utf8').split('\n')[0]).toBe(
      'id,status,output,error,attempts,request_id,endpoint,image_url,prompt,latency_ms,partial,error_type,inference_s,cached,note',
    );
    const rows = await readCsv(csv);
    expect(rows[0]).toMatchObject({ id: 'short', partial: 'true', cached: 'false', error_type: '' });
    expect(rows[4]).toMatchObject({ id: 'bad', partial: '', cached: '', inference_s: '', error_type: 'invalid_row' });
    expect(leftovers(h.dir)).toEqual([]);
  });

  it('streams Parquet in row groups of 10,000 rows, whatever the number of rows', async () => {
    const h = await createHarness();
    const path = join(h.dir, 'big.parquet');
    const file = await AtomicFile.create(path);
    const sink = await parquetSink(file, [...OUTPUT_COLUMNS, 'extra']);
    const total = 2 * ROW_GROUP_ROWS + 500;
    for (let start = 0; start < total; start += 1000) {
      await sink.write(
        Array.from({ length: Math.min(1000, total - start) }, (_, i) => {
          const n = start + i;
          return {
            id: `r${n}`,
            status: 'ok',
            output: `answer ${n}`,
            attempts: 1,
            latency_ms: n,
            partial: n % 2 === 0,
            inference_s: n / 1000,
            cached: null,
            extra: `x${n}`,
          };
        }),
      );
    }
    await sink.end();
    await file.close();
    await file.commit();
    const parquet = await readParquet(path);
    expect(parquet.rowGroups).toBe(3);
    expect(parquet.rows).toHaveLength(total);
    expect(parquet.rows[total - 1]).toMatchObject({
      id: `r${total - 1}`,
      output: `answer ${total - 1}`,
      attempts: 1,
      partial: false,
      cached: null,
      extra: `x${total - 1}`,
      error: null,
    });
    expect(Number(parquet.rows[12_345]?.['latency_ms'])).toBe(12_345);
  });

  it('refuses an output whose extension names no format, listing the formats, before anything is called', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    await expect(runBatch(h.ctx, { manifest, out: join(h.dir, 'out.unknown') })).rejects.toThrow(
      /Cannot tell the format of --out .*out\.unknown: name the file \.csv, \.jsonl \(or \.ndjson\) or \.parquet/,
    );
    const cli = await runCliProcess(['run', manifest, '--out', join(h.dir, 'out.xlsx')], h.env());
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('name the file .csv, .jsonl (or .ndjson) or .parquet');
    expect(h.emulator.stats().submits).toBe(0);
  });
});

describe('Hugging Face imagefolder metadata', () => {
  it('writes metadata.jsonl where every file_name is an image under its folder and text is the caption; other rows are counted, not written', async () => {
    const h = await createHarness({ emulator: { runners: 4 } });
    mkdirSync(join(h.dir, 'imgs', 'sub'), { recursive: true });
    h.file('imgs/cat.png', pngBytes('cat'));
    h.file('imgs/sub/dog.png', pngBytes('dog'));
    h.file('imgs/sub/owl.png', pngBytes('owl'));
    const manifest = h.file(
      'm.csv',
      [
        'id,image_url,prompt,endpoint',
        'cat,imgs/cat.png,Describe the cat,',
        'dog,imgs/sub/dog.png,Describe the dog,',
        'remote,https://example.com/r.jpg,Describe it,',
        `pair,imgs/cat.png|imgs/sub/dog.png,Compare them,${MANTIS}`,
        'gone,imgs/missing.png,Describe nothing,',
        'owl,imgs/sub/owl.png,Describe the owl,',
      ].join('\n'),
    );
    const out = join(h.dir, 'out.csv');
    const summary = await runBatch(h.ctx, { manifest, out, hfMetadata: {} });
    // The manifest's folder: local paths are relative to it.
    const metadataPath = join(h.dir, 'metadata.jsonl');
    expect(summary.export.hfMetadata).toEqual({
      path: metadataPath,
      written: 3,
      leftOut: { notAnswered: 1, skipped: 0, noCaptionFile: 0, notLocal: 1, severalImages: 1, outsideFolder: 0 },
    });
    const captions = new Map((await readCsv(out)).map((row) => [row['id'], row['output']]));
    const lines = readJsonl(metadataPath);
    expect(lines.map((line) => line['file_name'])).toEqual(['imgs/cat.png', 'imgs/sub/dog.png', 'imgs/sub/owl.png']);
    expectImagefolderLayout(metadataPath, lines);
    expect(lines.map((line) => line['text'])).toEqual([captions.get('cat'), captions.get('dog'), captions.get('owl')]);

    // Another folder: file_names relative to it, and images outside it left out.
    const sub = await exportResults(h.ctx, { batch: summary.enqueue.batch, out: join(h.dir, 'again.csv'), hfMetadata: { folder: join(h.dir, 'imgs', 'sub') } });
    expect(sub.hfMetadata).toMatchObject({ written: 2, leftOut: { outsideFolder: 1 } });
    const subLines = readJsonl(join(h.dir, 'imgs', 'sub', 'metadata.jsonl'));
    expect(subLines.map((line) => line['file_name'])).toEqual(['dog.png', 'owl.png']);
    expectImagefolderLayout(join(h.dir, 'imgs', 'sub', 'metadata.jsonl'), subLines);
    const report = JSON.parse(readFileSync(join(h.dir, 'again.report.json'), 'utf8')) as ExportReport;
    expect(report.files.hfMetadata).toMatchObject({ written: 2 });
  });

  it('run on a folder of images with --hf-metadata writes metadata.jsonl in that folder (the CLI)', async () => {
    const h = await createHarness({ emulator: { runners: 4 } });
    const folder = join(h.dir, 'photos');
    mkdirSync(join(folder, 'b'), { recursive: true });
    h.file('photos/a.png', pngBytes('a'));
    h.file('photos/b/c.png', pngBytes('c'));
    const out = join(h.dir, 'out.jsonl');
    const result = await runCliProcess(['run', folder, '--prompt', 'Describe this image', '--out', out, '--hf-metadata'], h.env());
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`hf metadata  ${join(folder, 'metadata.jsonl')}: 2 images captioned`);
    const lines = readJsonl(join(folder, 'metadata.jsonl'));
    expect(lines.map((line) => line['file_name']).sort()).toEqual(['a.png', 'b/c.png']);
    expectImagefolderLayout(join(folder, 'metadata.jsonl'), lines);
    const outputs = readJsonl(out);
    for (const line of lines)
      expect(outputs.some((row) => row['output'] === line['text'] && String(row['image_url']).endsWith(String(line['file_name'])))).toBe(true);
  });

  it('an images folder that takes no files stops run before anything is called', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    await expect(runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv'), hfMetadata: { folder: '/proc' } })).rejects.toThrow(
      /Cannot write \/proc\/metadata\.jsonl: the folder \/proc does not take new files/,
    );
    expect(h.emulator.stats().submits).toBe(0);
  });
});

/**
 * What `load_dataset("imagefolder", data_dir=folder)` needs of a metadata.jsonl: at the folder's
 * top, the same keys on every line, `file_name` a relative `/` path to an image file under the
 * folder, `text` a string.
 */
function expectImagefolderLayout(metadataPath: string, lines: Array<Record<string, unknown>>): void {
  const folder = resolve(metadataPath, '..');
  expect(metadataPath.endsWith('/metadata.jsonl')).toBe(true);
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    expect(Object.keys(line).sort()).toEqual(['file_name', 'text']);
    const name = line['file_name'];
    expect(typeof name).toBe('string');
    expect(isAbsolute(name as string)).toBe(false);
    expect(name).not.toContain('\\');
    const file = resolve(folder, name as string);
    expect(relative(folder, file).startsWith('..')).toBe(false);
    expect(existsSync(file) && statSync(file).isFile()).toBe(true);
    expect(/\.(png|jpe?g|webp|gif|bmp)$/i.test(file)).toBe(true);
    expect(typeof line['text']).toBe('string');
    expect(line['text']).not.toBe('');
  }
}

describe('errors file and report', () => {
  it('reconcile on a run with failures, rejections and skips; errors.csv lists exactly the failed and rejected rows', async () => {
    const h = await createHarness({ emulator: { runners: 3, latency: '200ms', faults: ['model-error=0.3'], seed: 7 } });
    mkdirSync(join(h.dir, 'imgs'));
    const rows: string[] = [];
    for (let i = 0; i < 12; i++) rows.push(`r${i},https://example.com/${i}.jpg,Describe ${i},`);
    h.file('imgs/done.png', pngBytes('done'));
    h.file('imgs/done.txt', 'a caption written earlier');
    h.file('imgs/fresh.png', pngBytes('fresh'));
    rows.push('done,imgs/done.png,Describe it,'); // its caption file exists: skipped
    rows.push('fresh,imgs/fresh.png,Describe it,');
    rows.push('twin,https://example.com/0.jpg,Describe 0,'); // r0's input: reused, free
    rows.push('zero,https://example.com/z.jpg,Describe z,0'); // rejected
    rows.push('r1,https://example.com/dup.jpg,Describe dup,'); // a repeated id: rejected
    const manifest = h.file('m.csv', ['id,image_url,prompt,max_tokens', ...rows].join('\n'));
    const out = join(h.dir, 'results.jsonl');
    const summary = await runBatch(h.ctx, { manifest, out, captions: captionOptions({}), price: PRICE });

    const report = JSON.parse(readFileSync(join(h.dir, 'results.report.json'), 'utf8')) as ExportReport;
    const outputs = readJsonl(out);
    const count = (status: string): number => outputs.filter((row) => row['status'] === status).length;
    expect(report.counts).toEqual({ rows: 17, ok: count('ok'), failed: count('failed'), rejected: 2, skipped: 1 });
    expect(report.counts.failed).toBeGreaterThan(0);
    expect(report.counts.ok + report.counts.failed + report.counts.rejected + report.counts.skipped).toBe(report.counts.rows);
    expect(report.finished).toBe(true);
    expect(summary.export).toMatchObject(report.counts);

    const errors = await readCsv(join(h.dir, 'results.errors.csv'));
    const expected = outputs.filter((row) => row['status'] === 'failed' || row['status'] === 'rejected');
    expect(errors.map((row) => [row['id'], row['status']])).toEqual(expected.map((row) => [row['id'], row['status']]));
    expect(Object.keys(errors[0] ?? {})).toEqual(['id', 'line', 'status', 'error_type', 'error', 'attempts', 'request_id']);
    for (const row of errors.filter((r) => r['status'] === 'failed')) {
      const output = outputs.find((o) => o['id'] === row['id'] && o['status'] === 'failed');
      expect(row).toMatchObject({ error_type: output?.['error_type'], error: output?.['error'], attempts: '1', request_id: output?.['request_id'] });
      expect(row['error_type']).toMatch(/^\w+$/);
      expect(row['error']).toContain('emulated model error');
    }
    expect(errors.find((row) => row['id'] === 'zero')).toMatchObject({
      line: '17',
      error_type: 'invalid_row',
      error: 'max_tokens must be a whole number greater than 0, got "0"',
    });

    // Billed: every answer fal gave and every model error (billed, with its inference time), 0.2 s each.
    const billed = outputs.filter((row) => row['cached'] === false && row['inference_s'] !== null);
    expect(billed.filter((row) => row['status'] === 'failed')).toHaveLength(report.counts.failed);
    expect(report.billedCalls).toBe(billed.length);
    expect(report.inferenceSeconds).toBeCloseTo(billed.length * 0.2, 3);
    expect(report.cost).toEqual({ amount: expect.closeTo(billed.length * 0.2 * 0.002, 6), currency: 'USD', unit: 'second', perUnit: 0.002, source: 'flag' });
    expect(report.reused).toBe(1);
    const answered = outputs.filter((row) => row['status'] === 'ok' && row['cached'] === false).length;
    expect(report.latencyMs.total?.count).toBe(answered);
    expect(report.latencyMs.inference?.count).toBe(answered);
    expect(report.latencyMs.queueWait?.count).toBe(answered);
    // Inference is exactly 200 ms per call: its percentiles are that, within the histogram's error.
    expect(Math.abs((report.latencyMs.inference?.p50Ms ?? 0) / 200 - 1)).toBeLessThanOrEqual(PERCENTILE_ERROR + 0.005);
    const total = report.latencyMs.total;
    expect(total && total.p50Ms <= total.p95Ms).toBe(true);
    expect(total?.p50Ms).toBeGreaterThanOrEqual(180);
    expect(report.time.rowsEnded).toBe(report.counts.ok + report.counts.failed); // every row has its own key (ids)
    expect(report.time.wallMs).toBeGreaterThan(0);
    expect(report.time.rowsPerMinute).toBeGreaterThan(0);
    expect(report.files).toMatchObject({
      output: out,
      errors: join(h.dir, 'results.errors.csv'),
      report: join(h.dir, 'results.report.json'),
      hfMetadata: null,
    });
  });

  it('an unfinished export says what is pending, and the counts still add up', async () => {
    const h = await createHarness({ emulator: { runners: 1, latency: '150ms' } });
    const manifest = h.file(
      'm.csv',
      `id,image_url,prompt\n${Array.from({ length: 6 }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n')}\nbad,,p\n`,
    );
    const { batch } = await enqueueManifest(h.ctx, { manifest });
    const summary = await exportResults(h.ctx, { batch, out: join(h.dir, 'early.csv') });
    expect(summary.report.counts).toEqual({ rows: 7, ok: 0, failed: 0, rejected: 1, skipped: 0, pending: 6 });
    expect(summary.report.finished).toBe(false);
    expect(summary.report.time).toMatchObject({ lastFinishedAt: null, wallMs: null, rowsEnded: 0 });
    expect(summary.report.latencyMs).toEqual({ total: null, queueWait: null, inference: null });
  });

  it('a side file that cannot be written fails the export like the main output (exit 3), leaving no temp file', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    const { enqueue } = await runBatch(h.ctx, { manifest, out: join(h.dir, 'first.csv') });
    mkdirSync(join(h.dir, 'taken.report.json')); // renaming a file over a folder fails
    const error = await exportResults(h.ctx, { batch: enqueue.batch, out: join(h.dir, 'taken.csv') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ResultsNotWrittenError);
    expect((error as OutputError).message).toContain(`Cannot write ${join(h.dir, 'taken.report.json')}`);
    expect((error as ResultsNotWrittenError).exportCommand).toContain('falbatch export --batch');
    expect(leftovers(h.dir)).toEqual([]);
  });
});

describe('status figures', () => {
  it('status --json shows rate, ETA, latency split, billed seconds and spend mid-run and after, from aggregates of bounded size', async () => {
    const h = await createHarness({ emulator: { runners: 2, latency: '500ms' } });
    const rows = 24;
    const manifest = h.file('m.csv', `id,image_url,prompt\n${Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n')}\n`);
    const { batch } = await enqueueManifest(h.ctx, { manifest });
    const worker = await h.startWorker({ concurrency: 4 });
    try {
      await until('a few rows ended', async () => (await getStatus(h.ctx, batch)).ok >= 4);
      // fal takes no new request until the mid-run looks are done: on a busy machine the CLI's own
      // start-up could otherwise outlast the batch, and "mid-run" would be after it.
      h.emulator.setRunners(0);
      const mid = await runCliProcess(['status', '--batch', batch, '--json'], h.env());
      expect(mid.code, mid.stderr).toBe(0);
      const during = JSON.parse(mid.stdout) as Record<string, unknown> & { latencyMs: Record<string, { count: number; p50Ms: number; p95Ms: number } | null> };
      expect(during['finished']).toBe(false);
      expect(during['pending']).toBeGreaterThan(0);
      expect(during['rowsPerMinute']).toBeGreaterThan(0);
      expect(during['etaMs']).toBeGreaterThan(0);
      expect(during.latencyMs['total']?.count).toBeGreaterThanOrEqual(4);
      // Two runners, four in flight: rows wait at fal about as long as they run.
      expect(during.latencyMs['inference']?.p50Ms).toBeGreaterThan(450);
      expect(during.latencyMs['queueWait']).not.toBeNull();
      expect(during['inferenceSeconds']).toBeGreaterThanOrEqual(2);
      expect(during['billedCalls']).toBeGreaterThanOrEqual(4);
      const text = await runCliProcess(['status', '--batch', batch], h.env());
      expect(text.stdout).toMatch(/rate {6}[\d.]+ rows\/min over the last minute, ~\S+ left/);
      expect(text.stdout).toMatch(/latency {3}p50 \S+ \(queue \S+, inference \S+\), p95 /);
      h.emulator.setRunners(2);
      await waitForBatch(h.ctx, batch, { intervalMs: 50 });
    } finally {
      await worker.close();
    }
    const after = await getStatus(h.ctx, batch, { price: PRICE });
    expect(after).toMatchObject({ finished: true, pending: 0, etaMs: null, billedCalls: rows, reused: 0 });
    expect(after.inferenceSeconds).toBeCloseTo(rows * 0.5, 3);
    expect(after.cost).toEqual({ amount: expect.closeTo(rows * 0.5 * 0.002, 9), currency: 'USD', unit: 'second', perUnit: 0.002, source: 'flag' });
    expect(after.latencyMs.total?.count).toBe(rows);
    // The same figures as the report, which reads every result.
    const exported = await exportResults(h.ctx, { batch, out: join(h.dir, 'out.csv'), price: PRICE });
    expect(exported.report.latencyMs).toEqual(after.latencyMs);
    expect(exported.report.inferenceSeconds).toBe(after.inferenceSeconds);
    expect(exported.report.cost?.amount).toBeCloseTo(after.cost?.amount ?? 0, 6);
    // O(1): the aggregates are a bounded hash, whatever the batch size.
    expect(await h.ctx.redis.hlen(h.ctx.keys.batch(batch).stats)).toBeLessThan(60);
    const cli = await runCliProcess(['status', '--batch', batch, '--json'], h.env());
    expect(JSON.parse(cli.stdout)).toMatchObject({ finished: true, etaMs: null, billedCalls: rows, inferenceSeconds: after.inferenceSeconds });
  });
});
