import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort, spawnRedisServer } from '../../src/queue/redis-server.js';

/** The one redis-server spawner, shared by `--emulate` and the tests' helpers. */
describe('spawnRedisServer', () => {
  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'falbatch-redis-server-test-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  it('resolves once the server takes commands, with its extra arguments applied, and keeps serving after its output is let go', async () => {
    const port = await freePort();
    const child = await spawnRedisServer({ port, dir: tempDir(), args: ['--requirepass', 'pw-3f1c'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    onTestFinished(async () => {
      child.kill('SIGTERM');
      await exited;
    });
    const redis = new Redis({ port, host: '127.0.0.1', password: 'pw-3f1c', lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await redis.connect();
      // Enough writes that redis-server logs again (nobody reads its output any more).
      for (let i = 0; i < 50; i++) await redis.set(`k${i}`, 'v'.repeat(1000));
      await redis.bgrewriteaof().catch(() => undefined);
      expect(await redis.dbsize()).toBe(50);
      expect(await redis.config('GET', 'save')).toEqual(['save', '']);
    } finally {
      redis.disconnect();
    }
    expect(child.exitCode).toBeNull();
  });

  it('rejects with what redis-server said when it exits instead of starting', async () => {
    const port = await freePort();
    await expect(spawnRedisServer({ port, dir: tempDir(), args: ['--no-such-option', 'x'] })).rejects.toThrow(
      /redis-server exited with 1: [\s\S]*no-such-option/,
    );
  });

  it('rejects when it is not ready in time, and stops it', async () => {
    const port = await freePort();
    // No server is ready within 0 ms: the spawner gives up and stops the process itself.
    await expect(spawnRedisServer({ port, dir: tempDir(), readyTimeoutMs: 0 })).rejects.toThrow(/not ready within 0 ms/);
  });
});
