import { requireDependency } from './load-dependency.js';

type PinoModule = typeof import('pino');
type PinoPrettyModule = typeof import('pino-pretty');

export type LogFields = Record<string, unknown>;

/** What the library logs through; the CLI picks the format. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
/** `text`: short lines; `json`: pino's JSON lines; `pretty`: pino's lines made readable by pino-pretty (for a terminal). */
export type LogFormat = 'text' | 'json' | 'pretty';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/**
 * Replaces every occurrence of a secret (FAL_KEY, a Redis password) with `***`. Applied to all
 * log output and to error texts stored in Redis or written to files.
 */
export function createScrubber(secrets: ReadonlyArray<string | undefined>): (text: string) => string {
  const list = [...new Set(secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4))].sort((a, b) => b.length - a.length);
  if (list.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const secret of list) if (out.includes(secret)) out = out.split(secret).join('***');
    return out;
  };
}

function scrubValue(value: unknown, scrub: (text: string) => string, depth = 0): unknown {
  if (typeof value === 'string') return scrub(value);
  if (value instanceof Error) return scrub(value.message);
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, scrub, depth + 1));
  return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, scrubValue(v, scrub, depth + 1)]));
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Values that must never be written. */
  secrets?: ReadonlyArray<string | undefined>;
  /** Where lines go. Default: stderr. */
  write?: (line: string) => void;
  /** `pretty` in colour (for a terminal that shows it). @default false */
  color?: boolean;
}

/**
 * JSON lines through pino (for services and log pipelines), the same made readable by pino-pretty,
 * or short text lines. Every format passes the same scrubber: fields and message before they are
 * formatted, and the written line again.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const scrub = createScrubber(options.secrets ?? []);
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  if (options.format === 'json' || options.format === 'pretty') {
    // Required here, synchronously (createLogger is): the default text format loads neither.
    const { pino } = requireDependency<PinoModule>('pino', `Logging in ${options.format} format (--log-format)`);
    const pretty =
      options.format === 'pretty'
        ? requireDependency<PinoPrettyModule>('pino-pretty', 'Logging in pretty format (--log-format)').prettyFactory({
            colorize: options.color ?? false,
            singleLine: true,
            errorLikeObjectKeys: [],
            translateTime: 'SYS:HH:MM:ss',
            ignore: 'pid,hostname',
          })
        : undefined;
    const logger = pino(
      { level, base: null, timestamp: pino.stdTimeFunctions.isoTime },
      { write: (line: string) => write(scrub(pretty ? pretty(scrub(line)) : line)) },
    );
    const emit = (method: 'debug' | 'info' | 'warn' | 'error') => (message: string, fields?: LogFields) =>
      fields ? logger[method](scrubValue(fields, scrub) as object, scrub(message)) : logger[method](scrub(message));
    return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
  }
  const threshold = LEVELS[level];
  const emit = (name: Exclude<LogLevel, 'silent'>) => (message: string, fields?: LogFields) => {
    if (LEVELS[name] < threshold) return;
    const extra = fields
      ? Object.entries(scrubValue(fields, scrub) as LogFields)
          // A field with no value is left out, as the JSON formats do (not `slots=undefined`).
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
          .join(' ')
      : '';
    const time = new Date().toISOString().slice(11, 19);
    write(`${time} ${name.padEnd(5)} ${scrub(message)}${extra ? ` ${extra}` : ''}\n`);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

export const silentLogger: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
