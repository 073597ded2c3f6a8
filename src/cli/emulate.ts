import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redactUrl, type ConfigOverrides, type ResolvedConfig } from '../config.js';
import { createFalEmulator, type FalEmulator } from '../emulator/create-fal-emulator.js';
import type { Logger } from '../log.js';
import { connectRedis } from '../queue/connection.js';
import { emulatedPrefix } from '../queue/keys.js';
import { freePort, spawnRedisServer } from '../queue/redis-server.js';

export interface Emulation {
  /** Config overrides that point falbatch at the emulator (and a private Redis, if one was started). */
  overrides: ConfigOverrides;
  emulator: FalEmulator;
  close(): Promise<void>;
}

async function redisAnswers(url: string, cluster = false): Promise<boolean> {
  try {
    const redis = await connectRedis(url, { connectTimeoutMs: 1500, cluster });
    await redis.quit();
    return true;
  } catch {
    return false;
  }
}

async function startPrivateRedis(log: Logger): Promise<{ url: string; stop: () => void } | undefined> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-redis-'));
  let child: ChildProcess | undefined;
  const stop = (): void => {
    if (child && child.exitCode === null) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  try {
    // Its own process group: a Ctrl-C meant for falbatch must not kill the Redis the run still needs
    // to finish gracefully. falbatch stops it itself, on close or on exit.
    child = await spawnRedisServer({ port, dir, args: ['--appendonly', 'no'], detached: true, readyTimeoutMs: 5000 });
  } catch {
    stop();
    process.off('exit', stop);
    return undefined;
  }
  log.info(`started a private redis-server on 127.0.0.1:${port} for this run (it goes away with the run; the results file stays)`);
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => {
      stop();
      process.off('exit', stop);
    },
  };
}

/**
 * `--emulate`: a fal emulator in this process (with a throwaway key), and, when nothing answers at
 * REDIS_URL but redis-server is installed, a private Redis for the run. Nothing reaches fal.ai.
 */
export async function startEmulation(config: ResolvedConfig, log: Logger): Promise<Emulation> {
  const key = randomBytes(12).toString('hex');
  const emulator = await createFalEmulator({ key, runners: 2, latency: '200..800ms' });
  // Emulated answers live in a namespace of their own: a later real run of the same manifest must
  // not find them and take them for paid answers.
  const overrides: ConfigOverrides = { falBaseUrl: emulator.url, falKey: key, prefix: emulatedPrefix(config.prefix) };
  let privateRedis: { url: string; stop: () => void } | undefined;
  if (!(await redisAnswers(config.redisUrl, config.redisCluster))) {
    privateRedis = await startPrivateRedis(log);
    if (privateRedis) {
      overrides.redisUrl = privateRedis.url;
      overrides.redisCluster = false;
    } else log.warn(`Redis at ${redactUrl(config.redisUrl)} does not answer and redis-server could not be started`);
  }
  log.info(`emulating fal.ai at ${emulator.url}: answers are made up locally, nothing is billed (namespace ${overrides.prefix})`);
  return {
    overrides,
    emulator,
    close: async () => {
      await emulator.close();
      privateRedis?.stop();
    },
  };
}
