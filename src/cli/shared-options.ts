import type { Command } from 'commander';
import { durationOption, integerOption, type ConfigOverrides, type WaitMode } from '../config.js';
import { ConfigError } from '../errors.js';
import { captionOptions, type CaptionOptions } from '../results/caption-files.js';
import type { LogFormat, LogLevel } from '../log.js';

/** Flags every command that touches Redis takes. */
export function withConnectionOptions(command: Command): Command {
  return command
    .option('--prefix <name>', 'Redis key namespace (env FALBATCH_PREFIX)', undefined)
    .option('--log-level <level>', 'debug, info, warn, error or silent', 'info')
    .option('--log-format <format>', 'text (for terminals) or json (for log pipelines)', 'text');
}

/** Flags of the commands that read a manifest (run, enqueue). */
export function withManifestOptions(command: Command): Command {
  return command
    .argument('<manifest>', 'CSV manifest (image_url, prompt, optional id, endpoint, max_tokens, temperature, top_p, other columns), or a folder of images (with --prompt)')
    .option('--prompt <text>', 'for a folder of images: what to ask of every image (each image, found recursively, is a row; its path is its id)')
    .option('--batch <name>', 'batch name (default: manifest name + hash of its content; the same manifest resumes)')
    .option('--endpoint <id>', 'endpoint for rows without an endpoint value (default fal-ai/llava-next)')
    .option('--attempts <n>', 'attempts per row for retryable failures (default 5)')
    .option('--files-root <dir>', 'folder local image paths must stay in (default: the manifest folder)')
    .option('--encoding <name>', 'text encoding of the manifest: utf-8, latin1, windows-1252, utf-16le, … (default utf-8; a byte order mark wins)')
    .option('--max-prompt-chars <n>', 'longest prompt; a longer one rejects its row (default 20000)')
    .option('--max-image-bytes <n>', 'largest image sent inline, local file or data URI; a larger one rejects its row (default 10485760, 10 MiB)')
    .option('--max-record-bytes <n>', 'longest CSV record (line, or lines of a quoted field); a longer one is skipped and rejected (default 16777216, 16 MiB)')
    .option('--strict', 'abort on the first bad row, before enqueueing anything');
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

/** Flags of the commands that call fal (run, work). */
export function withFalOptions(command: Command): Command {
  return command
    .option('--concurrency <n>', 'fal requests in flight in this process (default 8)')
    .option('--global-concurrency <n>', 'cap on fal requests in flight across all workers')
    .option('--wait <mode>', 'how to wait for fal: stream or poll (default stream)')
    .option('--start-timeout <duration>', "fal's start timeout: fal gives up on a request not started by then (default: none)")
    .option('--wait-budget <duration>', 'longest a row waits for its fal request before it is cancelled and retried (default 15m)')
    .option('--call-timeout <duration>', 'deadline of one HTTP call to fal (default 30s)')
    .option('--result-budget <duration>', 'how long to keep reading a completed, paid request whose result reads fail, before the row fails as result_unavailable (default 1h)');
}

export interface RawFlags {
  prefix?: string;
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
  encoding?: string;
  maxPromptChars?: string;
  maxImageBytes?: string;
  maxRecordBytes?: string;
}

/** Flags → config overrides, each validated with a message that names the flag. */
export function overridesFrom(flags: RawFlags): ConfigOverrides {
  const waitMode = flags.wait;
  if (waitMode !== undefined && waitMode !== 'stream' && waitMode !== 'poll') throw new ConfigError(`Expected --wait to be "stream" or "poll", got "${waitMode}"`);
  const startTimeout = durationOption('--start-timeout', flags.startTimeout);
  return {
    prefix: flags.prefix,
    endpoint: flags.endpoint,
    concurrency: integerOption('--concurrency', flags.concurrency),
    globalConcurrency: integerOption('--global-concurrency', flags.globalConcurrency),
    attempts: integerOption('--attempts', flags.attempts),
    waitMode: waitMode as WaitMode | undefined,
    graceMs: durationOption('--grace', flags.grace),
    filesRoot: flags.filesRoot,
    lockDurationMs: durationOption('--lock-duration', flags.lockDuration),
    pollIntervalMs: durationOption('--poll-interval', flags.pollInterval),
    waitBudgetMs: durationOption('--wait-budget', flags.waitBudget),
    callTimeoutMs: durationOption('--call-timeout', flags.callTimeout),
    resultBudgetMs: durationOption('--result-budget', flags.resultBudget),
    startTimeoutSeconds: startTimeout === undefined ? undefined : startTimeout / 1000,
    encoding: flags.encoding,
    maxPromptChars: integerOption('--max-prompt-chars', flags.maxPromptChars),
    maxInlineImageBytes: integerOption('--max-image-bytes', flags.maxImageBytes),
    maxRecordBytes: integerOption('--max-record-bytes', flags.maxRecordBytes),
  };
}

export function logSettings(flags: RawFlags): { level: LogLevel; format: LogFormat } {
  const level = flags.logLevel ?? 'info';
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level)) throw new ConfigError(`Expected --log-level to be debug, info, warn, error or silent, got "${level}"`);
  const format = flags.logFormat ?? 'text';
  if (format !== 'text' && format !== 'json') throw new ConfigError(`Expected --log-format to be text or json, got "${format}"`);
  return { level: level as LogLevel, format };
}
