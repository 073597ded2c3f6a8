import { ConfigError } from '../errors.js';
import { SECOND, formatDuration, parseDuration } from '../time.js';

// A batch's retention as a duration: parsed from flags, printed, stored (queue/retention.ts keeps
// it in Redis). Apart from retention.ts so that declaring flags does not load the Redis client.

/** A batch kept until `falbatch prune` (`--retention forever`). */
export const FOREVER = Number.POSITIVE_INFINITY;

/**
 * Parses a retention: `30d`, `12h`, `90m`, `1.5d`, `500s`, or `forever` (Infinity). `0` is
 * refused: to drop a batch now there is `falbatch prune`.
 */
export function parseRetention(text: string, flag = '--retention'): number {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === 'forever') return FOREVER;
  // A bare number would be milliseconds (as elsewhere): for a retention that is surely a mistake;
  // but a bare 0 gets the message pointing at `falbatch prune`.
  const ms = trimmed === '0' ? 0 : parseDuration(trimmed, { days: true, bareMilliseconds: false });
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
  return Number.isFinite(ms) ? formatDuration(ms, 'exact') : 'forever';
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
