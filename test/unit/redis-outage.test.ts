import { describe, expect, it } from 'vitest';
import type { Logger } from '../../src/log.js';
import { createRedisOutage, isConnectionLost } from '../../src/queue/redis-outage.js';

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`);
  return { lines, log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

const refused = new Error('connect ECONNREFUSED 127.0.0.1:6390');

describe('a Redis outage is one event in the log', () => {
  it('says the start once, reminds every minute while it lasts, and says the end once with its length', () => {
    let now = 1_000_000;
    const { log, lines } = capture();
    const outage = createRedisOutage({ log, where: 'redis://127.0.0.1:6390', now: () => now });
    outage.answered(); // no outage: nothing to say
    expect(lines).toEqual([]);

    for (let i = 0; i < 50; i++) {
      outage.error(i % 2 ? 'worker' : 'queue', refused);
      now += 1000;
    }
    const warnings = lines.filter((line) => line.startsWith('warn'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('Redis at redis://127.0.0.1:6390 does not answer (connect ECONNREFUSED 127.0.0.1:6390): waiting for it');
    expect(outage.down).toBe(true);

    now += 11_000; // 61 s after it began
    outage.error('worker', refused);
    expect(lines.filter((line) => line.startsWith('warn'))).toHaveLength(2);
    expect(lines.at(-1)).toContain('still does not answer after 1m01s');

    now += 4000;
    outage.answered();
    expect(lines.at(-1)).toBe('info Redis at redis://127.0.0.1:6390 answers again, after 1m05s: work goes on');
    expect(outage.down).toBe(false);
    outage.answered();
    expect(lines.filter((line) => line.startsWith('info'))).toHaveLength(1);

    // A second outage is said again.
    outage.error('worker', new Error('read ECONNRESET'));
    expect(lines.at(-1)).toContain('does not answer (read ECONNRESET)');
  });

  it('passes errors that are not about the connection through, scrubbed', () => {
    const { log, lines } = capture();
    const outage = createRedisOutage({ log, where: 'redis://h:6379' });
    outage.error('worker', new Error('ERR unknown command sekrit'), (text) => text.replace('sekrit', '***'));
    expect(lines).toEqual(['warn worker error {"error":"ERR unknown command ***"}']);
    expect(outage.down).toBe(false);
  });

  it('knows a lost connection from a failed command', () => {
    for (const message of [
      'connect ECONNREFUSED 127.0.0.1:1',
      'read ECONNRESET',
      'Connection is closed.',
      "Stream isn't writeable and enableOfflineQueue options is false",
      'connect ETIMEDOUT',
    ])
      expect(isConnectionLost(new Error(message))).toBe(true);
    for (const message of ['OOM command not allowed when used memory > maxmemory', 'ERR wrong number of arguments', 'NOSCRIPT No matching script'])
      expect(isConnectionLost(new Error(message))).toBe(false);
  });
});
