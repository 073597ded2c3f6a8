import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, extname, resolve } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { DEFAULT_CONFIG, type ResolvedConfig } from '../config.js';
import type { FalbatchContext } from '../context.js';
import { OutputError, ResultsNotWrittenError } from '../errors.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { decodeRowEntry, type RowEntry } from '../queue/batch-rows.js';
import type { ExportStatus, RowResult } from './row-result.js';

/** Output columns, in order; the manifest's extra columns follow. */
export const OUTPUT_COLUMNS = ['id', 'status', 'output', 'error', 'attempts', 'request_id', 'endpoint', 'image_url', 'prompt', 'latency_ms'] as const;

export type OutputFormat = 'csv' | 'jsonl';

export interface ExportOptions {
  batch: string;
  /** File to write (`.csv` or `.jsonl`); written to a temp file and renamed, so it is never half-written. */
  out: string;
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
}

const PAGE = 1000;

export function outputFormat(out: string): OutputFormat {
  const extension = extname(out).toLowerCase();
  if (extension === '.csv') return 'csv';
  if (extension === '.jsonl' || extension === '.ndjson') return 'jsonl';
  throw new OutputError(`Cannot tell the format of --out ${out}: name the file .csv or .jsonl.`);
}

type OutputRow = Record<string, string | number | boolean | null>;

function outputRow(entry: RowEntry, result: RowResult | undefined, extras: readonly string[]): { row: OutputRow; status: ExportStatus } {
  const status: ExportStatus = entry.rejected !== undefined ? 'rejected' : entry.skipped !== undefined ? 'skipped' : (result?.status ?? 'pending');
  const row: OutputRow = {
    id: entry.key,
    status,
    output: result?.output ?? '',
    error: entry.rejected !== undefined ? `line ${entry.line}: ${entry.rejected}` : entry.skipped !== undefined ? entry.skipped : (result?.error ?? ''),
    attempts: result?.attempts ?? 0,
    request_id: result?.request_id ?? '',
    endpoint: entry.endpoint,
    image_url: entry.imageDisplay,
    prompt: entry.prompt,
    latency_ms: result?.latency_ms ?? null,
  };
  extras.forEach((name, i) => {
    row[name] = entry.extras[i] ?? '';
  });
  return { row, status };
}

/** Extra columns keep their names unless one collides with an output column; then it gets `manifest_`. */
function extraNames(extras: readonly string[]): string[] {
  return extras.map((name) => ((OUTPUT_COLUMNS as readonly string[]).includes(name.toLowerCase()) ? `manifest_${name}` : name));
}

async function write(stream: WriteStream, text: string): Promise<void> {
  // A write that failed earlier (ENOSPC) left the stream errored: no 'drain' or 'error' comes again.
  if (stream.errored) throw stream.errored;
  if (!stream.write(text)) await once(stream, 'drain');
}

/** Fails early, before a batch is paid for, when `out` cannot take the results. */
export async function checkOutput(out: string): Promise<void> {
  outputFormat(out);
  const file = resolve(out);
  const folder = dirname(file);
  try {
    if (!(await stat(folder)).isDirectory()) throw new Error('not a folder');
  } catch {
    throw new OutputError(`Cannot write ${file}: the folder ${folder} does not exist. Create it, or pick another --out.`);
  }
  // An existing folder may still take no files (read-only, not permitted, a file system that takes
  // none): find out with a file of our own, now rather than after the batch is paid for.
  const probe = resolve(folder, `.${basename(file)}.${randomBytes(4).toString('hex')}.probe`);
  try {
    await (await open(probe, 'wx')).close();
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new OutputError(
      `Cannot write ${file}: the folder ${folder} does not take new files (${reason}). Pick another --out, in a folder you can write to, or make this one writable.`,
      { cause: error },
    );
  }
  await unlink(probe).catch(() => undefined);
}

/** Quotes a word for a POSIX shell, only when it needs it. */
function shellWord(word: string): string {
  return /^[\w./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The `falbatch export` command that writes a batch's results to `out` (with --prefix when not the default). */
export function exportCommandLine(config: Pick<ResolvedConfig, 'prefix' | 'redisUrl'>, batch: string, out: string): string {
  const words = ['falbatch', 'export', '--batch', batch];
  if (config.prefix !== DEFAULT_CONFIG.prefix) words.push('--prefix', config.prefix);
  words.push('--out', resolve(out));
  // A shell comment: the line still pastes as it is.
  return words.map(shellWord).join(' ') + (config.redisUrl !== DEFAULT_CONFIG.redisUrl ? '   # with the same REDIS_URL' : '');
}

/**
 * Writes one line per manifest row, in manifest order, from what Redis holds (so it works on any
 * machine, without the manifest): finished rows with their output or error, rejected rows with
 * their reason, rows still running as pending.
 */
export async function exportResults(ctx: FalbatchContext, options: ExportOptions): Promise<ExportSummary> {
  const format = outputFormat(options.out);
  const out = resolve(options.out);
  const meta = await readBatchMeta(ctx.redis, ctx.keys, options.batch);
  if (!meta) throw await batchNotFound(ctx.redis, options.batch);
  try {
    return await writeResults(ctx, options.batch, out, format, meta.extras);
  } catch (error) {
    // The results are all in Redis: say so, and how to write them elsewhere.
    if (error instanceof OutputError) {
      throw new ResultsNotWrittenError(error.message, { batch: options.batch, out, exportCommand: exportCommandLine(ctx.config, options.batch, out) }, { cause: error });
    }
    throw error;
  }
}

async function writeResults(ctx: FalbatchContext, batch: string, out: string, format: OutputFormat, manifestExtras: readonly string[]): Promise<ExportSummary> {
  await checkOutput(out);
  const keys = ctx.keys.batch(batch);
  const extras = extraNames(manifestExtras);
  const columns = [...OUTPUT_COLUMNS, ...extras];
  const temp = resolve(dirname(out), `.${basename(out)}.${randomBytes(4).toString('hex')}.tmp`);
  const summary: ExportSummary = { batch, out, format, rows: 0, ok: 0, failed: 0, rejected: 0, skipped: 0, pending: 0 };
  const stream = createWriteStream(temp, { flags: 'wx' });
  const opened = new Promise<void>((resolveOpen, reject) => {
    stream.once('open', () => resolveOpen());
    stream.once('error', reject);
  });
  try {
    await opened.catch((error: Error) => {
      throw new OutputError(`Cannot write ${out}: ${error.message}`, { cause: error });
    });
    if (format === 'csv') await write(stream, stringify([columns]));
    for (let start = 0; ; start += PAGE) {
      const page = (await ctx.redis.lrange(keys.rows, start, start + PAGE - 1)).map(decodeRowEntry);
      if (page.length === 0) break;
      const called = page.filter((entry) => entry.rejected === undefined && entry.skipped === undefined);
      const results = await ctx.store.getMany(batch, called.map((entry) => entry.key));
      const byKey = new Map<string, RowResult | undefined>(called.map((entry, i) => [entry.key, results[i]]));
      const lines: OutputRow[] = [];
      for (const entry of page) {
        const called = entry.rejected === undefined && entry.skipped === undefined;
        const { row, status } = outputRow(entry, called ? byKey.get(entry.key) : undefined, extras);
        summary.rows++;
        summary[status]++;
        lines.push(row);
      }
      const text =
        format === 'csv'
          ? stringify(lines, { columns })
          : lines.map((row) => `${JSON.stringify(row)}\n`).join('');
      await write(stream, text);
      if (page.length < PAGE) break;
    }
    await new Promise<void>((resolveEnd, reject) => {
      if (stream.errored) {
        reject(stream.errored);
        return;
      }
      stream.once('error', reject);
      // end() calls back with the error of a failed write too: never rename a short file into place.
      stream.end((error?: Error | null) => (error ? reject(error) : resolveEnd()));
    });
    await rename(temp, out);
  } catch (error) {
    stream.destroy();
    await unlink(temp).catch(() => undefined);
    // File system trouble is an output error; anything else (Redis) goes up as it is.
    if ((error as NodeJS.ErrnoException).syscall !== undefined) throw new OutputError(`Cannot write ${out}: ${(error as Error).message}`, { cause: error });
    throw error;
  }
  return summary;
}
