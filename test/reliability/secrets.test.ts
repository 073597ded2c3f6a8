import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createHarness, FAL_KEY, runCliProcess, startPrivateRedis } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';
import { unpackEntries } from '../../src/queue/packed-entries.js';

/** A list element as text: a packed chunk of entries unpacked, anything else as it is. */
function readable(element: Buffer): string[] {
  try {
    return unpackEntries(element);
  } catch {
    return [element.toString('utf8')];
  }
}

async function dumpEverything(url: string): Promise<string> {
  const redis = new Redis(url);
  const parts: string[] = [];
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        parts.push(key);
        const type = await redis.type(key);
        if (type === 'string') parts.push((await redis.get(key)) ?? '');
        else if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
        // Packed elements (the rows list, a backlog) are read unpacked: a secret in them would show.
        else if (type === 'list') parts.push(JSON.stringify((await redis.lrangeBuffer(key, 0, -1)).flatMap(readable)));
        else if (type === 'set') parts.push(JSON.stringify(await redis.smembers(key)));
        else if (type === 'zset') parts.push(JSON.stringify(await redis.zrange(key, '0', '-1')));
        else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
      }
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return parts.join('\n');
}

describe('secrets', () => {
  it('FAL_KEY and the Redis password reach neither Redis, nor logs, nor outputs, nor error messages', async () => {
    const redisPassword = 'redis-pw-5e1f0a77c3';
    const redis = await startPrivateRedis(['--requirepass', redisPassword]);
    const url = `redis://:${redisPassword}@127.0.0.1:${redis.port}`;
    const h = await createHarness({ redisUrl: url, emulator: { faults: ['503@submit=0.1', 'model-error=0.2', 'drop@submit=0.05'], seed: 4 } });
    h.file('local.png', pngBytes('local'));
    const rows = Array.from({ length: 20 }, (_, i) => `r${i},${i % 2 ? 'local.png' : `https://example.com/${i}.jpg`},prompt ${i},`);
    const manifest = h.file('m.csv', ['id,image_url,prompt,max_tokens', ...rows, 'bad,local.png,p,zero', 'unreach,https://x.invalid/a.png,p,'].join('\n'));
    const logs: string[] = [];
    // A namespace per log format, so each sees fal's faults (a later one would otherwise resume the first).
    for (const [format, out, prefix] of [
      ['text', 'out.csv', h.prefix],
      ['json', 'out.jsonl', `${h.prefix}-json`],
      ['pretty', 'pretty.csv', `${h.prefix}-pretty`],
    ] as const) {
      const result = await runCliProcess(
        ['run', manifest, '--out', join(h.dir, out), '--log-level', 'debug', '--log-format', format, '--prefix', prefix],
        h.env(),
      );
      expect(result.code).toBe(2);
      // Each format really was used (the pretty one by pino-pretty: "[HH:MM:SS] LEVEL: message").
      if (format === 'pretty') expect(result.stderr).toMatch(/^\[\d\d:\d\d:\d\d\] (DEBUG|INFO|WARN): /m);
      if (format === 'json') expect(result.stderr).toMatch(/^\{"level":\d+,"time":"/m);
      const stem = join(h.dir, out.replace(/\.\w+$/, ''));
      logs.push(
        result.stdout,
        result.stderr,
        readFileSync(join(h.dir, out), 'utf8'),
        readFileSync(`${stem}.errors.csv`, 'utf8'),
        readFileSync(`${stem}.report.json`, 'utf8'),
      );
    }
    const wrongRedis = await runCliProcess(['status'], h.env({ REDIS_URL: `redis://:${redisPassword}@127.0.0.1:1` }));
    expect(wrongRedis.code).toBe(1);
    logs.push(wrongRedis.stdout, wrongRedis.stderr);
    const wrongPassword = await runCliProcess(['status'], h.env({ REDIS_URL: `redis://:not-${redisPassword}@127.0.0.1:${redis.port}` }));
    expect(wrongPassword.code).toBe(1);
    expect(wrongPassword.stderr).toContain('refused the credentials (WRONGPASS');
    logs.push(wrongPassword.stdout, wrongPassword.stderr);

    const everything = [await dumpEverything(url), ...logs].join('\n');
    expect(everything.length).toBeGreaterThan(10_000); // the run really wrote things to search
    expect(everything).toContain('r19'); // and they are searchable as text
    expect(everything).not.toContain(FAL_KEY);
    expect(everything).not.toContain(redisPassword);
  }, 60_000);
});
