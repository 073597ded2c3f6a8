import { ConfigError } from '../errors.js';
import { HOUR, MINUTE, SECOND, parseDuration } from '../time.js';

/** A batch's retention as a duration: parsed from flags, printed, stored (queue/retention.ts keeps it in Redis). */

export const DAY = 24 * HOUR;

/** A batch kept until `falbatch prune` (`--retention forever`). */
export const FOREVER = Number.POSITIVE_INFINITY;

/**
 * Parses a retention: `30d`, `12h`, `90m`, `1.5d`, `500s`, or `forever` (Infinity). `0` is
 * refused: to drop a batch now there is `falbatch prune`.
 */
export function parseRetention(text: string, flag = '--retention'): number {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === 'forever') return FOREVER;
  const days = /^(\d+(?:\.\d+)?)\s*d$/.exec(trimmed);
  // A bare number would be milliseconds (as elsewhere): for a retention that is surely a mistake.
  const ms = days ? Math.round(Number(days[1]) * DAY) : /^\d+(\.\d+)?$/.test(trimmed) && trimmed !== '0' ? undefined : parseDuration(trimmed);
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new ConfigError(`Expected ${flag} to be a duration like 30d, 12h or 90m, or forever, got "${text}"`);
  }
  if (ms < SECOND) {
    throw new ConfigError(
      `Expected ${flag} to be at least 1s (or forever), got "${text}"${ms === 0 ? ': to drop a batch now, use `falbatch prune --batch NAME`' : ''}`,
    );
  }
  return ms;
}

/** `30d`, `12h`, `90m`, `1s`, `forever`: what parseRetention reads back. */
export function formatRetention(ms: number): string {
  if (!Number.isFinite(ms)) return 'forever';
  for (const [unit, size] of [
    ['d', DAY],
    ['h', HOUR],
    ['m', MINUTE],
    ['s', SECOND],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Time left, for people: `29d23h`, `5h12m`, `4m05s`, `40s`. */
export function formatTimeLeft(ms: number): string {
  if (ms >= DAY) return `${Math.floor(ms / DAY)}d${String(Math.floor((ms % DAY) / HOUR)).padStart(2, '0')}h`;
  if (ms >= HOUR) return `${Math.floor(ms / HOUR)}h${String(Math.floor((ms % HOUR) / MINUTE)).padStart(2, '0')}m`;
  if (ms >= MINUTE) return `${Math.floor(ms / MINUTE)}m${String(Math.floor((ms % MINUTE) / SECOND)).padStart(2, '0')}s`;
  return `${Math.max(0, Math.ceil(ms / SECOND))}s`;
}

/** A retention as scripts and the batch meta take it: milliseconds, or `forever`. */
export function retentionArg(ms: number): string {
  return Number.isFinite(ms) ? String(Math.round(ms)) : 'forever';
}

/** The retention a batch meta holds (`retention_ms`), or undefined for a batch from before retention. */
export function retentionFromMeta(stored: string | undefined): number | undefined {
  if (stored === undefined || stored === '') return undefined;
  if (stored === 'forever') return FOREVER;
  const ms = Number(stored);
  return Number.isFinite(ms) ? ms : undefined;
}
