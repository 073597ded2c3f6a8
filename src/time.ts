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
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

const UNIT_MS: Record<string, number> = { ms: MILLISECOND, s: SECOND, m: MINUTE, h: HOUR };

/**
 * Parses "800ms", "1.5s", "2m", "1h" or a bare number of milliseconds. Returns undefined when the
 * text is not a duration, so callers can name the option in their own error message.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!match) return undefined;
  const value = Number(match[1]);
  const unit = UNIT_MS[match[2] ?? 'ms'] ?? MILLISECOND;
  return Math.round(value * unit);
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
  const unit = /(ms|s|m|h)\s*$/.exec(highText)?.[1] ?? 'ms';
  const low = parseDuration(/[a-z]\s*$/.test(lowText) ? lowText : `${lowText}${unit}`);
  const high = parseDuration(highText);
  if (low === undefined || high === undefined || low > high) return undefined;
  return { min: low, max: high };
}

/** "1.2s", "350ms", "4m05s": for messages meant for people. */
export function formatDuration(ms: number): string {
  if (ms < SECOND) return `${Math.round(ms)}ms`;
  if (ms < MINUTE) return `${(ms / SECOND).toFixed(ms < 10 * SECOND ? 1 : 0)}s`;
  const minutes = Math.floor(ms / MINUTE);
  const seconds = Math.round((ms % MINUTE) / SECOND);
  if (minutes < 60) return `${minutes}m${String(seconds).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}
