/** Durations in milliseconds, so config reads `30 * SECOND` instead of a bare 30000. */
export const MILLISECOND = 1;
export const SECOND = 1000 * MILLISECOND;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

/**
 * The one source of time for everything that waits or measures: backoff, deadlines, polling,
 * the emulator's runners. Tests pass a fake one instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        Math.max(0, ms),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export const DAY = 24 * HOUR;

/**
 * The one unit table: every duration falbatch reads (config, --retention, --every, --latency) or
 * prints uses these suffixes, largest first.
 */
const UNITS = [
  ['d', DAY],
  ['h', HOUR],
  ['m', MINUTE],
  ['s', SECOND],
  ['ms', MILLISECOND],
] as const;

type DurationUnit = (typeof UNITS)[number][0];

/** The one grammar: a number, then optionally a unit; spaces around either. */
const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;

function unitSize(unit: DurationUnit): number {
  return UNITS.find(([name]) => name === unit)?.[1] ?? MILLISECOND;
}

/** What the readers of durations differ in (the grammar and units are the same for all). */
export interface DurationGrammar {
  /**
   * Whether `d` (24 h) is a unit. Default false: timeouts and latencies stop at hours, and `1d` is
   * refused there; retentions and schedule intervals take days.
   */
  days?: boolean;
  /**
   * Whether a number without a unit reads as milliseconds. Default true (config timeouts); false
   * where a bare number is surely a mistake (`--retention 30`, `--every 10`).
   */
  bareMilliseconds?: boolean;
}

function readDuration(text: string, grammar: DurationGrammar): { value: number; unit: DurationUnit | undefined } | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  const unit = match[2] as DurationUnit | undefined;
  if (unit === 'd' && grammar.days !== true) return undefined;
  if (unit === undefined && grammar.bareMilliseconds === false) return undefined;
  return { value: Number(match[1]), unit };
}

/**
 * Parses "800ms", "1.5s", "2m", "1h" or a bare number of milliseconds (and "1d", or no bare
 * number, as `grammar` says). Returns undefined when the text is not a duration, so callers can
 * name the option in their own error message.
 */
export function parseDuration(text: string, grammar: DurationGrammar = {}): number | undefined {
  const read = readDuration(text, grammar);
  return read === undefined ? undefined : Math.round(read.value * unitSize(read.unit ?? 'ms'));
}

/** A fixed duration or an inclusive range, as in `--latency 800ms` or `--latency 500..1500ms`. */
export interface DurationRange {
  min: number;
  max: number;
}

/** Parses "800ms" or "500..1500ms" (the unit of the upper bound applies to a bare lower bound). */
export function parseDurationRange(text: string): DurationRange | undefined {
  const parts = text.split('..');
  if (parts.length === 1) {
    const fixed = parseDuration(text);
    return fixed === undefined ? undefined : { min: fixed, max: fixed };
  }
  if (parts.length !== 2) return undefined;
  const [lowText = '', highText = ''] = parts;
  const high = readDuration(highText, {});
  const low = readDuration(lowText, {});
  if (low === undefined || high === undefined) return undefined;
  const min = Math.round(low.value * unitSize(low.unit ?? high.unit ?? 'ms'));
  const max = Math.round(high.value * unitSize(high.unit ?? 'ms'));
  return min > max ? undefined : { min, max };
}

/**
 * How a duration is printed:
 * - `elapsed` (default), for messages and progress: "350ms", "1.2s", "45s", "4m05s", "96h00m";
 * - `left`, a time left, never overstated in its larger unit: "40s", "4m05s", "5h12m", "29d23h";
 * - `exact`, what parseDuration reads back: the largest unit that divides it, "30d", "36h", "1500ms".
 */
export type DurationStyle = 'elapsed' | 'left' | 'exact';

/** "4m05s": a whole number of one unit and two digits of the next one down. */
function twoUnits(ms: number, index: number, roundSmall: (n: number) => number): string {
  const [bigName, big] = UNITS[index] ?? UNITS[0];
  const [smallName, small] = UNITS[index + 1] ?? UNITS[0];
  return `${Math.floor(ms / big)}${bigName}${String(roundSmall((ms % big) / small)).padStart(2, '0')}${smallName}`;
}

/** Prints a duration for people (`elapsed`, `left`) or for a flag to read back (`exact`). */
export function formatDuration(ms: number, style: DurationStyle = 'elapsed'): string {
  if (style === 'exact') {
    const [unit, size] = UNITS.find(([, size]) => ms >= size && ms % size === 0) ?? ['ms', MILLISECOND];
    return `${ms / size}${unit}`;
  }
  if (style === 'left') {
    const index = UNITS.findIndex(([, size]) => size >= MINUTE && ms >= size);
    return index >= 0 ? twoUnits(ms, index, Math.floor) : `${Math.max(0, Math.ceil(ms / SECOND))}s`;
  }
  if (ms < SECOND) return `${Math.round(ms)}ms`;
  if (ms < MINUTE) return `${(ms / SECOND).toFixed(ms < 10 * SECOND ? 1 : 0)}s`;
  return ms < HOUR ? twoUnits(ms, 2, Math.round) : twoUnits(ms, 1, Math.floor);
}
