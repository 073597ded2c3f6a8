import type { Logger } from '../log.js';
import { formatDuration } from '../time.js';

/**
 * A Redis that stops answering is one event, not one line per client per reconnect. Every part of a
 * process that talks to Redis (the connection itself, the queue, each BullMQ worker and its blocking
 * connection, the scheduler) sees the same refused connection, each every few hundred
 * milliseconds; logged as they come, that was 4 lines a second for as long as Redis was down.
 *
 * An outage is said once when it starts (what is waited for, and that nothing is lost meanwhile),
 * again every `remindEveryMs` while it lasts, and once when Redis answers again with how long it
 * was gone. Errors that are not about the connection pass through as before.
 */
export interface RedisOutage {
  /** Reports an error from `source` ("worker", "queue", …): logged, or folded into the outage. */
  error(source: string, error: Error, scrub?: (text: string) => string): void;
  /** The connection is ready again: ends an outage (said once), or does nothing. */
  answered(): void;
  /** Whether an outage is going on. */
  readonly down: boolean;
}

export interface RedisOutageOptions {
  log: Logger;
  /** Where Redis is, for messages: already redacted (never a password). */
  where: string;
  now?: () => number;
  /** @default 60 s */
  remindEveryMs?: number;
}

// What a connection that is gone looks like, from ioredis, BullMQ and the kernel: socket errors and
// the "closed" errors of commands sent while it reconnects.
const CONNECTION_LOST =
  /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE)\b|Connection is closed|Stream isn't writeable|connect ETIMEDOUT|Socket closed unexpectedly|aborted due to connection close/i;

/** Whether an error says the connection to Redis is gone (rather than that a command failed). */
export function isConnectionLost(error: Error): boolean {
  return CONNECTION_LOST.test(error.message) || CONNECTION_LOST.test(String((error as NodeJS.ErrnoException).code ?? ''));
}

export function createRedisOutage(options: RedisOutageOptions): RedisOutage {
  const now = options.now ?? Date.now;
  const remindEveryMs = options.remindEveryMs ?? 60_000;
  let since: number | undefined;
  let saidAt = 0;
  return {
    get down() {
      return since !== undefined;
    },
    error(source, error, scrub = (text) => text) {
      const message = scrub(error.message);
      if (!isConnectionLost(error)) {
        options.log.warn(`${source} error`, { error: message });
        return;
      }
      const at = now();
      if (since === undefined) {
        since = at;
        saidAt = at;
        options.log.warn(
          `Redis at ${options.where} does not answer (${message}): waiting for it, reconnecting every few seconds. Rows in flight keep their place and nothing is lost; work goes on by itself when Redis is back. Said again every ${formatDuration(remindEveryMs)} while it lasts.`,
        );
        return;
      }
      if (at - saidAt >= remindEveryMs) {
        saidAt = at;
        options.log.warn(`Redis at ${options.where} still does not answer after ${formatDuration(at - since)} (${message}): still waiting for it`);
        return;
      }
      options.log.debug(`${source} error while Redis is down`, { error: message });
    },
    answered() {
      if (since === undefined) return;
      options.log.info(`Redis at ${options.where} answers again, after ${formatDuration(now() - since)}: work goes on`);
      since = undefined;
    },
  };
}

const outages = new WeakMap<object, RedisOutage>();

/** Makes `outage` the one that errors of `client` (and of what is built on it) are folded into. */
export function attachRedisOutage(client: object, outage: RedisOutage): void {
  outages.set(client, outage);
}

/**
 * Reports an error that `source` (a queue, worker or scheduler on `client`) emitted: folded into
 * the client's outage when it has one, else logged as a warning as it comes.
 */
export function reportRedisError(client: object, log: Logger, source: string, error: Error, scrub: (text: string) => string = (text) => text): void {
  const outage = outages.get(client);
  if (outage) outage.error(source, error, scrub);
  else log.warn(`${source} error`, { error: scrub(error.message) });
}
