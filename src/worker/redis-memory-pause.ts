import { REDIS_MEMORY_ADVICE, isRedisOutOfMemory } from '../errors.js';
import type { Logger } from '../log.js';
import { MINUTE, SECOND, formatDuration, type Clock } from '../time.js';

/**
 * A Redis out of memory (maxmemory reached, noeviction) is an infrastructure pause, not a row
 * failure: the worker stops taking rows, spends no attempt, keeps what it could not write (a paid
 * request id, an answer) in memory, and goes on by itself once Redis accepts writes again.
 */
export interface RedisMemoryPause {
  /** Whether Redis refuses writes, as far as this process last saw. */
  readonly paused: boolean;
  /** Told an error: an OOM one starts the pause (said once) and its probe. Returns whether it was one. */
  note(error: unknown): boolean;
  /** Resolves once Redis accepts writes (at once when it does); rejects when `signal` aborts first. */
  whenWritable(signal?: AbortSignal): Promise<void>;
  /**
   * Runs `write`, and again each time Redis accepts writes after refusing it for want of memory:
   * for a write that must land (what the caller holds exists nowhere else). Other errors go through.
   */
  keepTrying<T>(write: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  close(): void;
}

export interface RedisMemoryPauseOptions {
  /** A small write that needs room (a SET): succeeds once Redis accepts writes again. */
  probe(): Promise<unknown>;
  clock: Clock;
  log: Logger;
  /** Told when the pause starts and ends (the worker stops and starts taking rows). */
  onPause?(): void;
  onResume?(): void;
  /** Run at every probe while paused: what must go on meanwhile (keeping the rows' locks). */
  whilePaused?(): Promise<void>;
  /** First wait between probes; doubles up to `maxIntervalMs`. @default 250 ms */
  intervalMs?: number;
  /** @default 5 s: how late, at most, the worker notices Redis has room again. */
  maxIntervalMs?: number;
}

/** A pause starting this soon after the last one ended is the same episode (Redis at the brink): said at debug level. */
const SAME_EPISODE_MS = MINUTE;
/**
 * A pause said at debug level that lasts this long is no flicker at the brink: it is said then, and
 * its end too, so the last word of the log is not "accepts writes again" while the worker waits.
 */
const QUIET_PAUSE_MAX_MS = 10 * SECOND;
const OUT_OF_MEMORY_LINE =
  'Redis is out of memory (maxmemory reached): it refuses writes, so this worker takes no new rows until it accepts them again. ' +
  'No attempt is spent; rows in flight keep their fal requests and answers, and save them then. ' +
  REDIS_MEMORY_ADVICE;

export function createRedisMemoryPause(options: RedisMemoryPauseOptions): RedisMemoryPause {
  const { clock, log } = options;
  const baseMs = options.intervalMs ?? 250;
  const maxMs = options.maxIntervalMs ?? 5 * SECOND;
  let since: number | undefined;
  let lastEnd = Number.NEGATIVE_INFINITY;
  let loud = true;
  let waiters: Array<() => void> = [];
  const stop = new AbortController();

  const end = (): void => {
    const now = clock.now();
    const took = since === undefined ? 0 : now - since;
    since = undefined;
    lastEnd = now;
    (loud ? log.warn : log.debug)(`Redis accepts writes again after ${formatDuration(took)} out of memory: the worker takes rows again`);
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
    options.onResume?.();
  };

  const probeUntilWritable = async (): Promise<void> => {
    let wait = baseMs;
    while (!stop.signal.aborted) {
      try {
        await clock.sleep(wait, stop.signal);
      } catch {
        return;
      }
      await options.whilePaused?.().catch(() => undefined);
      try {
        await options.probe();
        end();
        return;
      } catch (error) {
        // Still full, or not answering at all: look again, less often.
        if (!isRedisOutOfMemory(error)) log.debug('memory probe failed', { error: (error as Error).message });
      }
      if (!loud && since !== undefined && clock.now() - since >= QUIET_PAUSE_MAX_MS) {
        loud = true;
        log.error(`${OUT_OF_MEMORY_LINE} (for ${formatDuration(clock.now() - since)} now)`);
      }
      wait = Math.min(maxMs, wait * 2);
    }
  };

  const pause: RedisMemoryPause = {
    get paused() {
      return since !== undefined;
    },
    note(error) {
      if (!isRedisOutOfMemory(error)) return false;
      if (since !== undefined || stop.signal.aborted) return true;
      since = clock.now();
      loud = since - lastEnd > SAME_EPISODE_MS;
      (loud ? log.error : log.debug)(OUT_OF_MEMORY_LINE);
      options.onPause?.();
      void probeUntilWritable();
      return true;
    },
    whenWritable(signal) {
      if (since === undefined || stop.signal.aborted) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          waiters = waiters.filter((w) => w !== wake);
          reject(signal?.reason ?? new Error('aborted'));
        };
        const wake = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        waiters.push(wake);
      });
    },
    async keepTrying(write, signal) {
      for (;;) {
        try {
          return await write();
        } catch (error) {
          if (!pause.note(error) || stop.signal.aborted) throw error;
          await pause.whenWritable(signal);
        }
      }
    },
    close() {
      // Whoever still waits goes on (and meets the error again, now given up on).
      stop.abort();
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
  };
  return pause;
}
