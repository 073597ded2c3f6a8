import { describe, expect, it } from 'vitest';
import { RedisOutOfMemoryError, isRedisOutOfMemory } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { createRedisMemoryPause } from '../../src/worker/redis-memory-pause.js';
import { ManualClock } from '../helpers/manual-clock.js';

/** What ioredis hands over: a ReplyError of Redis's text; EXECABORT carries the refused commands. */
function replyError(message: string, previousErrors?: Error[]): Error {
  return Object.assign(new Error(message), { name: 'ReplyError' }, previousErrors ? { previousErrors } : {});
}
const OOM = "OOM command not allowed when used memory > 'maxmemory'.";

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('isRedisOutOfMemory', () => {
  it.each([
    [replyError(OOM), true],
    [replyError(`${OOM} script: e6ce1418cf46, on @user_script:65.`), true],
    [replyError('EXECABORT Transaction discarded because of previous errors.', [replyError(OOM)]), true],
    [replyError('EXECABORT Transaction discarded because of previous errors.', [replyError('ERR wrong number of arguments')]), false],
    [replyError("READONLY You can't write against a read only replica."), false],
    [new Error('Connection is closed.'), false],
    [new RedisOutOfMemoryError(replyError(OOM)), true],
    ['OOM command not allowed', false],
  ])('%s → %s', (error, expected) => {
    expect(isRedisOutOfMemory(error)).toBe(expected);
  });

  it("the CLI's message keeps Redis's words without a script's sha, and says what to do", () => {
    const message = new RedisOutOfMemoryError(replyError(`${OOM} script: e6ce1418cf46, on @user_script:65.`)).message;
    expect(message).toContain("(OOM command not allowed when used memory > 'maxmemory')");
    expect(message).not.toContain('e6ce1418cf46');
    expect(message).toContain('raise maxmemory');
    expect(message).toContain('falbatch prune');
    expect(message).toContain('--retention');
  });
});

describe('createRedisMemoryPause', () => {
  it('says once when Redis refuses writes and once when it takes them again, probing less and less often meanwhile', async () => {
    const clock = new ManualClock();
    const log = recordingLogger();
    let full = true;
    let probes = 0;
    const events: string[] = [];
    const pause = createRedisMemoryPause({
      probe: async () => {
        probes++;
        if (full) throw replyError(OOM);
      },
      clock,
      log,
      onPause: () => events.push('pause'),
      onResume: () => events.push('resume'),
      intervalMs: 100,
      maxIntervalMs: 1000,
    });
    expect(pause.note(new Error('ECONNRESET'))).toBe(false);
    expect(pause.paused).toBe(false);
    for (let i = 0; i < 50; i++) expect(pause.note(replyError(OOM))).toBe(true);
    expect(pause.paused).toBe(true);
    let woken = false;
    void pause.whenWritable().then(() => (woken = true));
    await clock.advance(10_000);
    expect(woken).toBe(false);
    // 100, 200, 400, 800, then every 1 s.
    expect(clock.sleeps.slice(0, 6)).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(probes).toBeLessThan(20);
    full = false;
    await clock.advance(1000);
    expect(woken).toBe(true);
    expect(pause.paused).toBe(false);
    expect(events).toEqual(['pause', 'resume']);
    expect(log.lines).toHaveLength(2);
    expect(log.lines[0]).toMatch(/^error Redis is out of memory \(maxmemory reached\): it refuses writes.*raise maxmemory/);
    expect(log.lines[1]).toMatch(/^warn Redis accepts writes again after 11s out of memory/);
    pause.close();
  });

  /** A pause over a Redis whose fullness the test sets, after a first 100 ms spell (said loud). */
  async function afterOneSpell() {
    const clock = new ManualClock();
    const log = recordingLogger();
    const redis = { full: false };
    const pause = createRedisMemoryPause({
      probe: async () =>
        void (
          redis.full &&
          (() => {
            throw replyError(OOM);
          })()
        ),
      clock,
      log,
      intervalMs: 100,
    });
    pause.note(replyError(OOM));
    await clock.advance(100);
    return { clock, log, pause, redis };
  }

  it('a spell starting again within a minute (Redis at the brink) is told at debug level only', async () => {
    const { clock, log, pause, redis } = await afterOneSpell();
    pause.note(replyError(OOM));
    await clock.advance(100);
    expect(log.lines.map((line) => line.split(' ')[0])).toEqual(['error', 'warn', 'debug', 'debug']);
    await clock.advance(2 * 60_000);
    redis.full = true;
    pause.note(replyError(OOM));
    expect(log.lines.at(-1)).toMatch(/^error Redis is out of memory/);
    pause.close();
  });

  it('a spell that starts quietly at the brink but lasts is told after all: the last word is not "accepts writes again" while the worker waits', async () => {
    const { clock, log, pause, redis } = await afterOneSpell();
    expect(log.lines.map((line) => line.split(' ')[0])).toEqual(['error', 'warn']);
    // Full again 10 s later, and this time for 95 s (seen from outside: a worker said "accepts
    // writes again after 313ms" and then nothing for 1m38s).
    await clock.advance(10_000);
    redis.full = true;
    pause.note(replyError(OOM));
    expect(log.lines.at(-1)).toMatch(/^debug /);
    await clock.advance(95_000);
    expect(pause.paused).toBe(true);
    expect(log.lines.filter((line) => !line.startsWith('debug')).at(-1)).toMatch(/^error Redis is out of memory/);
    redis.full = false;
    await clock.advance(5_000);
    expect(pause.paused).toBe(false);
    expect(log.lines.filter((line) => !line.startsWith('debug')).at(-1)).toMatch(/^warn Redis accepts writes again after 1m\d+s out of memory/);
    expect(log.lines.filter((line) => !line.startsWith('debug'))).toHaveLength(4);
    pause.close();
  });

  it('keepTrying writes again once Redis has room, and lets any other error through', async () => {
    const clock = new ManualClock();
    let full = true;
    const pause = createRedisMemoryPause({
      probe: async () =>
        void (
          full &&
          (() => {
            throw replyError(OOM);
          })()
        ),
      clock,
      log: recordingLogger(),
      intervalMs: 100,
    });
    let writes = 0;
    const saved = pause.keepTrying(async () => {
      writes++;
      if (full) throw replyError(OOM);
      return 'saved';
    });
    await clock.advance(1000);
    expect(writes).toBe(1);
    full = false;
    await clock.advance(1000);
    await expect(saved).resolves.toBe('saved');
    expect(writes).toBe(2);
    await expect(pause.keepTrying(() => Promise.reject(new Error('ECONNRESET')))).rejects.toThrow('ECONNRESET');
    pause.close();
  });

  it('a wait is given up when its signal aborts (shutdown), and close lets every waiter go', async () => {
    const clock = new ManualClock();
    const pause = createRedisMemoryPause({ probe: () => Promise.reject(replyError(OOM)), clock, log: recordingLogger() });
    pause.note(replyError(OOM));
    const shutdown = new AbortController();
    const aborted = pause.whenWritable(shutdown.signal);
    shutdown.abort(new Error('shutting down'));
    await expect(aborted).rejects.toThrow('shutting down');
    const left = pause.whenWritable();
    pause.close();
    await expect(left).resolves.toBeUndefined();
    await expect(pause.keepTrying(() => Promise.reject(replyError(OOM)))).rejects.toThrow('OOM');
  });
});
