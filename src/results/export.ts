import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { DEFAULT_CONFIG, type ResolvedConfig } from '../config.js';
import type { FalbatchContext } from '../context.js';
import { OutputError, ResultsNotWrittenError, StorageError } from '../errors.js';
import type { ObjectStore } from '../storage/object-store.js';
import { formatS3Url, isS3Url, parseS3Url } from '../storage/s3-url.js';
import { batchNotFound, readBatchMeta, type BatchMeta } from '../queue/batch-meta.js';
import { rowEntryPages, type RowEntry } from '../queue/batch-rows.js';
import { AtomicFile, asOutputError } from './atomic-file.js';
import { readRowCaptions } from './caption-files.js';
import { buildReport, ERRORS_COLUMNS, errorsRow, sideFiles, type ExportReport } from './export-report.js';
import { recordLabelOf } from '../manifest/manifest-format.js';
import { HF_METADATA_FILE, hfMetadataFolder, hfMetadataPath, HfMetadataWriter, type HfMetadataOptions, type HfMetadataSummary } from './hf-metadata.js';
import { extraNames, OUTPUT_COLUMNS, outputRow, type OutputRow } from './output-row.js';
import type { Price } from '../fal/price.js';
import { csvSink, jsonlSink, loadParquetWriter, parquetSink, type RowSink } from './row-sinks.js';
import type { RowResult } from './row-result.js';

export { OUTPUT_COLUMNS } from './output-row.js';

import type { OutputFormat } from './row-sinks.js';

export type { OutputFormat } from './row-sinks.js';

/** Output formats by file extension. */
export const OUTPUT_FORMATS: Readonly<Record<string, OutputFormat>> = { '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.parquet': 'parquet' };

export interface ExportOptions {
  batch: string;
  /**
   * File to write; its extension picks the format: `.csv`, `.jsonl` (or `.ndjson`), `.parquet`.
   * Written to a temp file and renamed, so it is never half-written. `X.errors.csv` (the failed
   * and rejected rows) and `X.report.json` (counts, timings, cost) are written beside it.
   */
  out: string;
  /** Also write Hugging Face imagefolder metadata (`metadata.jsonl`) for the rows with one local image. */
  hfMetadata?: HfMetadataOptions;
  /** What the endpoint costs: the report then estimates the batch's cost. Default: no estimate. */
  price?: Price;
  /**
   * Extension of the caption files beside the images (`--caption-ext`): a skipped row's caption
   * (when the batch holds no answer for it) and metadata.jsonl's `text` are read from them.
   * Default: the extension of the batch's last enqueue with `--captions`; a batch without caption
   * files reads none (metadata.jsonl then holds the answers).
   */
  captionExt?: string;
}

export interface ExportSummary {
  batch: string;
  out: string;
  format: OutputFormat;
  rows: number;
  ok: number;
  failed: number;
  rejected: number;
  /** Rows that needed no call (their image already had a caption). */
  skipped: number;
  pending: number;
  /** `X.errors.csv`: one line per failed or rejected row. */
  errorsFile: string;
  /** `X.report.json`: see ExportReport. */
  reportFile: string;
  report: ExportReport;
  /** What went into metadata.jsonl, when asked for. */
  hfMetadata: HfMetadataSummary | undefined;
}

export function outputFormat(out: string): OutputFormat {
  const format = OUTPUT_FORMATS[extname(out).toLowerCase()];
  if (format === undefined) {
    throw new OutputError(`Cannot tell the format of --out ${out}: name the file .csv, .jsonl (or .ndjson) or .parquet.`);
  }
  return format;
}

/** Fails early, before a batch is paid for, when `file`'s folder cannot take it. */
export async function checkWritable(file: string): Promise<void> {
  const target = resolve(file);
  const folder = dirname(target);
  try {
    if (!(await stat(folder)).isDirectory()) throw new Error('not a folder');
  } catch {
    throw new OutputError(`Cannot write ${target}: the folder ${folder} does not exist. Create it, or pick another --out.`);
  }
  // An existing folder may still take no files (read-only, not permitted, a file system that takes
  // none): find out with a file of our own, now rather than after the batch is paid for.
  const probe = resolve(folder, `.${basename(target)}.${randomBytes(4).toString('hex')}.probe`);
  try {
    await (await open(probe, 'wx')).close();
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new OutputError(
      `Cannot write ${target}: the folder ${folder} does not take new files (${reason}). Pick another --out, in a folder you can write to, or make this one writable.`,
      { cause: error },
    );
  }
  await unlink(probe).catch(() => undefined);
}

/**
 * Fails early, before a batch is paid for, when `out` cannot take the results (format, folder; for
 * an s3:// `out`, the bucket and the credentials, through `objects`).
 */
export async function checkOutput(out: string, objects?: () => ObjectStore): Promise<void> {
  const s3 = isS3Url(out) ? parseS3Url(out) : undefined;
  const format = outputFormat(s3 ? s3.key : out);
  if (s3) {
    if (!objects) throw new OutputError(`--out ${out}: writing to s3:// needs an object store.`);
    if (s3.key === '' || s3.key.endsWith('/'))
      throw new OutputError(`--out ${out} names a prefix: name the results object, e.g. ${formatS3Url({ ...s3, key: `${s3.key}results.csv` })}.`);
    await objects().checkBucket(s3.bucket, 'write to');
  } else await checkWritable(out);
  // Its writer too, loaded only for Parquet: a missing package is said now, not after the batch ran.
  if (format === 'parquet') await loadParquetWriter();
}

/** Quotes a word for a POSIX shell, only when it needs it. */
function shellWord(word: string): string {
  return /^[\w./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The `falbatch export` command that writes a batch's results to `out` (with --prefix when not the default). */
export function exportCommandLine(
  config: Pick<ResolvedConfig, 'prefix' | 'queue' | 'redisUrl' | 'redisCluster'>,
  batch: string,
  out: string,
  hfMetadata?: HfMetadataOptions,
): string {
  const words = ['falbatch', 'export', '--batch', batch];
  if (config.prefix !== DEFAULT_CONFIG.prefix) words.push('--prefix', config.prefix);
  if (config.queue !== DEFAULT_CONFIG.queue) words.push('--queue', config.queue);
  if (config.redisCluster) words.push('--redis-cluster');
  words.push('--out', isS3Url(out) ? out : resolve(out));
  if (hfMetadata) words.push(...(hfMetadata.folder !== undefined ? ['--hf-metadata-dir', resolve(hfMetadata.folder)] : ['--hf-metadata']));
  // A shell comment: the line still pastes as it is.
  return words.map(shellWord).join(' ') + (config.redisUrl !== DEFAULT_CONFIG.redisUrl ? '   # with the same REDIS_URL' : '');
}

/**
 * Writes one line per manifest row, in manifest order, from what Redis holds (so it works on any
 * machine, without the manifest): finished rows with their output or error, rejected rows with
 * their reason, rows still running as pending. Beside it, `X.errors.csv` and `X.report.json`;
 * with `hfMetadata`, a `metadata.jsonl` for Hugging Face imagefolder. Every file is written to a
 * temp file first; all are renamed into place once all are complete.
 */
export async function exportResults(ctx: FalbatchContext, options: ExportOptions): Promise<ExportSummary> {
  if (isS3Url(options.out)) return exportToBucket(ctx, options);
  const format = outputFormat(options.out);
  const out = resolve(options.out);
  const meta = await readBatchMeta(ctx.redis, ctx.keys, options.batch);
  if (!meta) throw await batchNotFound(ctx.redis, options.batch, ctx.keys);
  try {
    return await writeResults(ctx, meta, out, format, options);
  } catch (error) {
    // The results are all in Redis: say so, and how to write them elsewhere.
    if (error instanceof OutputError) {
      throw new ResultsNotWrittenError(
        error.message,
        { batch: options.batch, out, exportCommand: exportCommandLine(ctx.config, options.batch, out, options.hfMetadata) },
        { cause: error },
      );
    }
    throw error;
  }
}

async function writeResults(
  ctx: FalbatchContext,
  meta: BatchMeta,
  out: string,
  format: OutputFormat,
  options: ExportOptions,
  /** Where the files end up, for the report, when not where they are written (an s3:// --out). */
  shownAs?: { out: string; errors: string; report: string },
): Promise<ExportSummary> {
  const batch = meta.name;
  await checkWritable(out);
  const side = sideFiles(out);
  const metadataFolder = options.hfMetadata
    ? await hfMetadataFolder({ manifest: meta.manifest, filesRoot: meta.filesRoot }, options.hfMetadata.folder)
    : undefined;
  if (metadataFolder !== undefined) {
    const metadataPath = hfMetadataPath(metadataFolder);
    if ([out, side.errors, side.report, shownAs?.out, shownAs?.errors, shownAs?.report].includes(metadataPath))
      throw new OutputError(`--out ${shownAs?.out ?? out} is where the imagefolder metadata goes (${metadataPath}): pick another --out.`);
    if (isS3Url(metadataPath)) await ctx.objects().checkBucket(parseS3Url(metadataPath).bucket, 'write to');
    else await checkWritable(metadataPath);
  }
  // metadata.jsonl for a bucket: written whole in a temp folder, uploaded once everything is committed.
  const metadataUpload = metadataFolder !== undefined && isS3Url(metadataFolder) ? await mkdtemp(join(tmpdir(), 'falbatch-meta-')) : undefined;
  const metadataLocal = metadataUpload === undefined || metadataFolder === undefined ? undefined : join(metadataUpload, HF_METADATA_FILE);
  const keys = ctx.keys.batch(batch);
  const extras = extraNames(meta.extras);
  const recordLabel = meta.records ?? recordLabelOf(meta.manifest);
  const columns = [...OUTPUT_COLUMNS, ...extras];
  const counts = { rows: 0, ok: 0, failed: 0, rejected: 0, skipped: 0, pending: 0 };
  // '' : the batch has no caption files.
  const captionExt = options.captionExt ?? meta.captionExt;
  const files: AtomicFile[] = [];
  const create = async (path: string): Promise<AtomicFile> => {
    const file = await AtomicFile.create(path);
    files.push(file);
    return file;
  };
  let current = out;
  try {
    const main = await create(out);
    const sink: RowSink = format === 'csv' ? await csvSink(main, columns) : format === 'jsonl' ? jsonlSink(main) : await parquetSink(main, columns);
    current = side.errors;
    const errors = await create(side.errors);
    await errors.write(stringify([[...ERRORS_COLUMNS]]));
    current = metadataFolder === undefined ? out : hfMetadataPath(metadataFolder);
    const metadata =
      metadataFolder === undefined
        ? undefined
        : new HfMetadataWriter(await create(metadataLocal ?? hfMetadataPath(metadataFolder)), metadataFolder, meta.filesRoot, captionExt !== '');
    if (metadata && metadataLocal !== undefined && metadataFolder !== undefined) metadata.summary.path = hfMetadataPath(metadataFolder);
    current = out;

    for await (const page of rowEntryPages(ctx.redis, keys.rows)) {
      // A skipped row's key may hold the answer an earlier run of this batch wrote its caption from.
      const keyed = page.filter((entry) => entry.rejected === undefined && entry.key !== '');
      const results = await ctx.store.getMany(
        batch,
        keyed.map((entry) => entry.key),
      );
      const byKey = new Map<string, RowResult | undefined>(keyed.map((entry, i) => [entry.key, results[i]]));
      const earlierAnswer = (entry: RowEntry): string | undefined => {
        const result = entry.skipped === undefined ? undefined : byKey.get(entry.key);
        return result?.status === 'ok' ? result.output : undefined;
      };
      const captions = await readRowCaptions(page, {
        filesRoot: meta.filesRoot,
        ext: captionExt,
        objects: ctx.objects,
        wanted: (entry) => metadata !== undefined || (entry.skipped !== undefined && earlierAnswer(entry) === undefined),
      });
      const lines: OutputRow[] = [];
      const errorLines: OutputRow[] = [];
      let metadataLines = '';
      for (const [i, entry] of page.entries()) {
        const result = entry.rejected === undefined && entry.skipped === undefined ? byKey.get(entry.key) : undefined;
        const { row, status } = outputRow(entry, result, extras, earlierAnswer(entry) ?? captions[i], recordLabel);
        counts.rows++;
        counts[status]++;
        lines.push(row);
        const error = errorsRow(entry, result, status);
        if (error) errorLines.push(error);
        if (metadata) metadataLines += metadata.line(entry, result, captions[i]) ?? '';
      }
      current = out;
      await sink.write(lines);
      current = side.errors;
      if (errorLines.length > 0) await errors.write(stringify(errorLines, { columns: [...ERRORS_COLUMNS] }));
      if (metadata) {
        current = metadata.summary.path;
        await metadata.write(metadataLines);
      }
    }
    current = out;
    await sink.end();
    for (const file of files) {
      current = file.path;
      await file.close();
    }

    const report = await buildReport(
      ctx,
      meta,
      { out: shownAs?.out ?? out, format, errors: shownAs?.errors ?? side.errors, report: shownAs?.report ?? side.report, hfMetadata: metadata?.summary },
      counts,
      options.price,
    );
    // The report last: it is small, and written whole before anything is renamed into place.
    current = side.report;
    const reportFile = await create(side.report);
    await reportFile.write(`${JSON.stringify(report, null, 2)}\n`);
    await reportFile.close();
    for (const file of files) {
      current = file.path;
      await file.commit();
    }
    if (metadataLocal !== undefined && metadataFolder !== undefined) {
      const target = parseS3Url(hfMetadataPath(metadataFolder));
      current = hfMetadataPath(metadataFolder);
      await ctx.objects().upload(target.bucket, target.key, createReadStream(metadataLocal), 'application/x-ndjson');
    }
    return {
      batch,
      out,
      format,
      ...counts,
      errorsFile: side.errors,
      reportFile: side.report,
      report,
      hfMetadata: metadata?.summary,
    };
  } catch (error) {
    await Promise.all(files.map((file) => file.discard()));
    if (error instanceof StorageError) throw new OutputError(error.message, { cause: error });
    throw asOutputError(error, current);
  } finally {
    if (metadataUpload !== undefined) await rm(metadataUpload, { recursive: true, force: true });
  }
}

const CONTENT_TYPES: Readonly<Record<OutputFormat, string>> = { csv: 'text/csv', jsonl: 'application/x-ndjson', parquet: 'application/vnd.apache.parquet' };

/**
 * `--out s3://bucket/results/run1.parquet`: the export is written whole to a private temp folder
 * (as for a local --out), then each file goes to the bucket with a multipart upload, which the
 * store makes visible only once complete; a failed upload is aborted (no parts left to pay for)
 * and the object keeps its previous version, if any. The report, last, names the s3:// objects.
 * The temp folder is removed whatever happens; the results stay in Redis.
 */
async function exportToBucket(ctx: FalbatchContext, options: ExportOptions): Promise<ExportSummary> {
  const target = parseS3Url(options.out);
  const format = outputFormat(target.key);
  const store = ctx.objects();
  const meta = await readBatchMeta(ctx.redis, ctx.keys, options.batch);
  if (!meta) throw await batchNotFound(ctx.redis, options.batch, ctx.keys);
  const sideKeys = sideFiles(`/${target.key}`);
  const shownAs = {
    out: formatS3Url(target),
    errors: formatS3Url({ bucket: target.bucket, key: sideKeys.errors.slice(1) }),
    report: formatS3Url({ bucket: target.bucket, key: sideKeys.report.slice(1) }),
  };
  const folder = await mkdtemp(join(tmpdir(), 'falbatch-out-'));
  const local = join(folder, basename(target.key));
  try {
    const written = await writeResults(ctx, meta, local, format, options, shownAs);
    const uploads: Array<[string, string, string]> = [
      [written.out, target.key, CONTENT_TYPES[format]],
      [written.errorsFile, sideKeys.errors.slice(1), 'text/csv'],
      [written.reportFile, sideKeys.report.slice(1), 'application/json'],
    ];
    for (const [file, key, type] of uploads) await store.upload(target.bucket, key, createReadStream(file), type);
    return { ...written, out: shownAs.out, errorsFile: shownAs.errors, reportFile: shownAs.report };
  } catch (error) {
    if (error instanceof OutputError || error instanceof StorageError) {
      throw new ResultsNotWrittenError(
        error.message,
        { batch: options.batch, out: shownAs.out, exportCommand: exportCommandLine(ctx.config, options.batch, shownAs.out, options.hfMetadata) },
        { cause: error },
      );
    }
    throw error;
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}
