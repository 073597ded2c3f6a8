import type { Command } from 'commander';
import { durationOption, integerOption, type ConfigOverrides, type WaitMode } from '../config.js';
import { ConfigError } from '../errors.js';
import { parsePrice } from '../fal/pricing.js';
import { captionOptions, type CaptionOptions } from '../results/caption-files.js';
import type { HfMetadataOptions } from '../results/hf-metadata.js';
import type { LogFormat, LogLevel } from '../log.js';
import type { BatchSettings } from '../queue/batch-settings.js';
import { parseFalPriority, parseMaxSpend, parsePriority } from '../queue/batch-control.js';
import type { Price } from '../fal/price.js';
import { parseRetention } from '../queue/retention-duration.js';
import { parseManifestFormat } from '../manifest/manifest-format.js';

/** Flags every command that touches Redis takes. */
export function withConnectionOptions(command: Command): Command {
  return command
    .option('--prefix <name>', 'Redis key namespace (env FALBATCH_PREFIX)', undefined)
    .option('--queue <name>', 'queue in the namespace, the hash tag of its keys: one Redis Cluster slot (default jobs; env FALBATCH_QUEUE)')
    .option('--redis-cluster', 'REDIS_URL names nodes of a Redis Cluster, comma-separated (env REDIS_CLUSTER=1)')
    .option('--s3-endpoint <url>', 'object store for s3:// locations: R2, MinIO, GCS (default AWS S3; env AWS_ENDPOINT_URL; credentials from the AWS chain)')
    .option('--log-level <level>', 'debug, info, warn, error or silent', 'info')
    .option('--log-format <format>', 'pretty (default on a terminal), text (default otherwise: short lines) or json (for log pipelines)');
}

/** Flags of the commands that read a manifest (run, enqueue). */
export function withManifestOptions(command: Command): Command {
  return withManifestReadOptions(
    command.argument(
      '<manifest>',
      'manifest file: CSV, JSON Lines or Parquet, the text ones optionally .gz (columns image_url, prompt, optional id, endpoint, max_tokens, temperature, top_p, other columns), or a folder of images (with --prompt)',
    ),
  )
    .option('--strict', 'abort on the first bad row, before enqueueing anything')
    .option(
      '--dry-run',
      'read the manifest or folder and print what would be called, uploaded and paid (rows, rejections, calls left, uploads needed, fal time and cost), changing nothing',
    )
    .option(...RETENTION_OPTION)
    .option(
      '--max-waiting <n>',
      "most jobs waiting in the queue (the queue's cap, kept by every worker): past it, rows wait in Redis as compact rows and become jobs as workers drain the queue; enqueue never waits for workers (default 10000)",
    );
}

/** --retention: flag and help, for the commands that create batches (run, enqueue; a schedule's ticks). */
export const RETENTION_OPTION = [
  '--retention <duration>',
  "how long the batch's results, rows and the answers it pays for are kept after its last write, e.g. 30d, 12h, or forever (default: the batch's own; 30d for a new batch)",
] as const;

/** The batch retention --retention asks for (ms, Infinity for forever), or undefined: the batch keeps its own. */
export function retentionFrom(flags: { retention?: string | undefined }): number | undefined {
  return flags.retention === undefined ? undefined : parseRetention(flags.retention);
}

/** How a manifest is read and its rows sent (run, enqueue, and kept by `schedule add` for its ticks). */
export function withManifestReadOptions(command: Command): Command {
  return command
    .option('--prompt <text>', 'for a folder of images: what to ask of every image (each image, found recursively, is a row; its path is its id)')
    .option('--batch <name>', 'batch name (default: manifest name + hash of its content; the same manifest resumes)')
    .option('--endpoint <id>', 'endpoint for rows without an endpoint value (default fal-ai/llava-next)')
    .option('--attempts <n>', 'attempts per row for retryable failures (default 5)')
    .option('--files-root <dir>', 'folder local image paths must stay in (default: the manifest folder)')
    .option('--encoding <name>', 'text encoding of the manifest: utf-8, latin1, windows-1252, utf-16le, … (default utf-8; a byte order mark wins)')
    .option(
      '--manifest-format <format>',
      'format of the manifest file: csv, jsonl or parquet (default: told by its name, .csv, .jsonl/.ndjson or .parquet, .gz after a text one for gzip; otherwise csv)',
    )
    .option('--max-prompt-chars <n>', 'longest prompt; a longer one rejects its row (default 20000)')
    .option('--max-image-bytes <n>', 'largest image read, local file (before --max-side) or data URI; a larger one rejects its row (default 10485760, 10 MiB)')
    .option(
      '--max-record-bytes <n>',
      "longest manifest record (a CSV line or the lines of a quoted field, a JSONL line, a Parquet row's text); a longer one is skipped and rejected (default 16777216, 16 MiB)",
    )
    .option(
      '--inline-images',
      'send local images inside the jobs as data URIs instead of uploading them to fal storage (no FAL_KEY needed to enqueue; larger jobs)',
    )
    .option(
      '--upload-images',
      'put s3:// images into fal storage at enqueue (once per content, cached by ETag and size) instead of URLs the worker signs: for a store fal cannot reach',
    )
    .option('--upload-concurrency <n>', 'uploads of local images to fal storage in flight at once (default 8)')
    .option('--max-side <px>', 'downscale local images to fit inside PX×PX before they go to fal (aspect kept, never enlarged; the files are not modified)')
    .option(
      '--input <json>',
      'the endpoint\'s input as a JSON template: "{column}" placeholders filled from each row, e.g. \'{"image":"{img:image}","question":"{q}","seed":42}\' (any fal endpoint; default: the built-in mapping)',
    )
    .option('--output-field <path>', 'with --input: the output field that is the answer, e.g. description or choices.0.text (default output)')
    .option('--image-columns <names>', 'with --input: comma-separated columns whose {column} placeholders are images (local files, URLs, data URIs)')
    .option(
      '--prompt-template <text>',
      'fill the prompt of the built-in endpoints from columns, e.g. "Describe the {subject}" (then no prompt column is needed)',
    );
}

/** Flags of the commands that write caption files beside local images (run, enqueue, export). */
export function withCaptionOptions(command: Command): Command {
  return command
    .option('--captions', 'write each answer into a caption file beside its local image (cat.png -> cat.txt)')
    .option('--caption-ext <ext>', 'extension of caption files (default .txt)')
    .option('--caption-mode <mode>', 'where a caption file exists: skip (default: the image is not called at all), overwrite, append or prepend')
    .option('--caption-prefix <text>', 'written before each caption, e.g. a trigger word: "ohwx, "')
    .option('--caption-suffix <text>', 'written after each caption');
}

export interface CaptionFlags {
  captions?: boolean;
  captionExt?: string;
  captionMode?: string;
  captionPrefix?: string;
  captionSuffix?: string;
}

/** The caption settings the flags ask for, or undefined without --captions (other caption flags alone are a mistake). */
export function captionsFrom(flags: CaptionFlags): CaptionOptions | undefined {
  if (!flags.captions) {
    const stray = (['captionExt', 'captionMode', 'captionPrefix', 'captionSuffix'] as const).find((name) => flags[name] !== undefined);
    if (stray) throw new ConfigError(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} only applies with --captions`);
    return undefined;
  }
  return captionOptions({ ext: flags.captionExt, mode: flags.captionMode, prefix: flags.captionPrefix, suffix: flags.captionSuffix });
}

/** --price, on the commands that estimate or report cost (run, enqueue, export, status). */
export function withPriceOption(command: Command): Command {
  return command.option(
    '--price <price>',
    "what a call costs, for the cost estimate: 0.0005/s (per second of fal's inference) or 0.002/call (default: fal's pricing API, with a key)",
  );
}

/** Flags of the commands that set a batch's control settings (run, enqueue). */
export function withBatchControlOptions(command: Command): Command {
  return command
    .option(
      '--priority <n>',
      "the batch's priority, 1 (served last) to 10 (served first, the default): rows of a higher-priority batch are taken first, e.g. --priority 1 for a backfill",
    )
    .option(
      '--fal-priority <level>',
      "fal's own queue priority for the batch's requests: normal (default) or low (a backfill yields to the account's other traffic at fal)",
    )
    .option(
      '--max-spend <usd>',
      "stop calling fal for the batch once its spend reaches this (by --price, or fal's price), give or take the requests in flight; `falbatch resume --batch B --max-spend N` raises it",
    );
}

export interface BatchControlFlags {
  priority?: string;
  falPriority?: string;
  maxSpend?: string;
}

/** The batch settings the flags ask for (a spend cap is measured with `price`). */
export function batchSettingsFrom(flags: BatchControlFlags, price: Price | undefined): BatchSettings {
  const maxSpend = parseMaxSpend('--max-spend', flags.maxSpend);
  return {
    priority: parsePriority('--priority', flags.priority),
    falPriority: parseFalPriority('--fal-priority', flags.falPriority),
    ...(maxSpend !== undefined ? { maxSpend, price } : {}),
  };
}

/** Flags of the commands that write a results file (run, export). */
export function withDatasetOptions(command: Command): Command {
  return command
    .option('--hf-metadata', 'also write metadata.jsonl (file_name, text) for Hugging Face imagefolder, in the images folder')
    .option('--hf-metadata-dir <dir>', 'write that metadata.jsonl in this folder instead (images outside it are left out)');
}

export interface DatasetFlags {
  hfMetadata?: boolean;
  hfMetadataDir?: string;
}

/** The imagefolder metadata the flags ask for, or undefined. */
export function hfMetadataFrom(flags: DatasetFlags): HfMetadataOptions | undefined {
  if (flags.hfMetadataDir !== undefined) return { folder: flags.hfMetadataDir };
  return flags.hfMetadata ? {} : undefined;
}

/** `--concurrency N` (fixed), or `auto` / nothing: learned (worker/concurrency-control.ts). */
function concurrencyOption(text: string | undefined): { concurrency?: number | undefined; autoConcurrency: boolean } {
  if (text === undefined || text.trim().toLowerCase() === 'auto') return { autoConcurrency: true };
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) {
    throw new ConfigError(`Expected --concurrency to be auto (learn the account's fal concurrency, the default) or an integer ≥ 1, got "${text}"`);
  }
  return { concurrency: Number(text), autoConcurrency: false };
}

/** Flags of the commands that call fal (run, work). */
export function withFalOptions(command: Command): Command {
  return command
    .option(
      '--concurrency <n|auto>',
      "fal requests in flight in this process, or auto (the default): learn the account's fal concurrency and keep that many in flight (plus a small headroom) across every auto worker of the queue",
    )
    .option('--global-concurrency <n>', 'cap on fal requests in flight across all workers, while this worker runs (wins over auto)')
    .option('--wait <mode>', 'how to wait for fal: stream or poll (default stream)')
    .option('--start-timeout <duration>', "fal's start timeout: fal gives up on a request not started by then (default: none)")
    .option('--wait-budget <duration>', 'longest a row waits for its fal request before it is cancelled and retried (default 15m)')
    .option('--call-timeout <duration>', 'deadline of one HTTP call to fal (default 30s)')
    .option(
      '--presign-expiry <duration>',
      "how long the URL of an s3:// image, signed just before its row is submitted, stays valid: cover fal's queue wait (default 1h, at most 7d; an expired one is signed again)",
    )
    .option(
      '--result-budget <duration>',
      'how long to keep reading a completed, paid request whose result reads fail, before the row fails as result_unavailable (default 1h)',
    );
}

export interface RawFlags {
  prefix?: string;
  s3Endpoint?: string;
  presignExpiry?: string;
  queue?: string;
  redisCluster?: boolean;
  retention?: string;
  logLevel?: string;
  logFormat?: string;
  endpoint?: string;
  concurrency?: string;
  globalConcurrency?: string;
  attempts?: string;
  wait?: string;
  grace?: string;
  filesRoot?: string;
  lockDuration?: string;
  pollInterval?: string;
  waitBudget?: string;
  startTimeout?: string;
  callTimeout?: string;
  resultBudget?: string;
  maxWaiting?: string;
  price?: string;
  encoding?: string;
  manifestFormat?: string;
  maxPromptChars?: string;
  maxImageBytes?: string;
  maxRecordBytes?: string;
  input?: string;
  outputField?: string;
  imageColumns?: string;
  promptTemplate?: string;
  inlineImages?: boolean;
  uploadImages?: boolean;
  uploadConcurrency?: string;
  maxSide?: string;
}

/** Flags → config overrides, each validated with a message that names the flag. */
export function overridesFrom(flags: RawFlags): ConfigOverrides {
  const waitMode = flags.wait;
  if (waitMode !== undefined && waitMode !== 'stream' && waitMode !== 'poll')
    throw new ConfigError(`Expected --wait to be "stream" or "poll", got "${waitMode}"`);
  const startTimeout = durationOption('--start-timeout', flags.startTimeout);
  return {
    prefix: flags.prefix,
    queue: flags.queue,
    redisCluster: flags.redisCluster,
    endpoint: flags.endpoint,
    ...concurrencyOption(flags.concurrency),
    globalConcurrency: integerOption('--global-concurrency', flags.globalConcurrency),
    attempts: integerOption('--attempts', flags.attempts),
    waitMode: waitMode as WaitMode | undefined,
    graceMs: durationOption('--grace', flags.grace),
    filesRoot: flags.filesRoot,
    s3Endpoint: flags.s3Endpoint,
    presignExpiryMs: durationOption('--presign-expiry', flags.presignExpiry),
    lockDurationMs: durationOption('--lock-duration', flags.lockDuration),
    pollIntervalMs: durationOption('--poll-interval', flags.pollInterval),
    waitBudgetMs: durationOption('--wait-budget', flags.waitBudget),
    callTimeoutMs: durationOption('--call-timeout', flags.callTimeout),
    resultBudgetMs: durationOption('--result-budget', flags.resultBudget),
    maxWaiting: integerOption('--max-waiting', flags.maxWaiting),
    price: flags.price === undefined ? undefined : parsePrice(flags.price),
    startTimeoutSeconds: startTimeout === undefined ? undefined : startTimeout / 1000,
    encoding: flags.encoding,
    manifestFormat: parseManifestFormat('--manifest-format', flags.manifestFormat),
    maxPromptChars: integerOption('--max-prompt-chars', flags.maxPromptChars),
    maxInlineImageBytes: integerOption('--max-image-bytes', flags.maxImageBytes),
    maxRecordBytes: integerOption('--max-record-bytes', flags.maxRecordBytes),
    input: jsonOption('--input', flags.input),
    outputField: flags.outputField,
    imageColumns: flags.imageColumns
      ?.split(',')
      .map((name) => name.trim())
      .filter((name) => name !== ''),
    promptTemplate: flags.promptTemplate,
    inlineImages: flags.inlineImages,
    uploadS3Images: flags.uploadImages,
    uploadConcurrency: integerOption('--upload-concurrency', flags.uploadConcurrency),
    maxImageSide: integerOption('--max-side', flags.maxSide),
  };
}

/** Parses a flag value that is JSON, naming the flag and where the JSON breaks when it is not. */
function jsonOption(flag: string, text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      `Expected ${flag} to be JSON, e.g. '{"image_url":"{img:image}","prompt":"{q}"}' (quoted for the shell), got ${JSON.stringify(text)}: ${(error as Error).message}`,
    );
  }
  // Anything but an object is refused by the config's own check, with what it got.
  return value as Record<string, unknown>;
}

/** The log level and format the flags ask for; without --log-format, pretty on a terminal (`interactive`), text otherwise. */
export function logSettings(flags: RawFlags, interactive = false): { level: LogLevel; format: LogFormat } {
  const level = flags.logLevel ?? 'info';
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level))
    throw new ConfigError(`Expected --log-level to be debug, info, warn, error or silent, got "${level}"`);
  const format = flags.logFormat ?? (interactive ? 'pretty' : 'text');
  if (format !== 'text' && format !== 'json' && format !== 'pretty') throw new ConfigError(`Expected --log-format to be pretty, text or json, got "${format}"`);
  return { level: level as LogLevel, format };
}
