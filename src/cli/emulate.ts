import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redactUrl, type ConfigOverrides, type ResolvedConfig } from '../config.js';
import { createFalEmulator, type FalEmulator } from '../emulator/create-fal-emulator.js';
import type { Logger } from '../log.js';
import { connectRedis } from '../queue/connection.js';
import { emulatedPrefix } from '../queue/keys.js';

export interface Emulation {
  /** Config overrides that point falbatch at the emulator (and a private Redis, if one was started). */
  overrides: ConfigOverrides;
  emulator: FalEmulator;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
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
  let child: ChildProcess;
  try {
    // Its own process group: a Ctrl-C meant for falbatch must not kill the Redis the run still needs
    // to finish gracefully. falbatch stops it itself, on close or on exit.
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
      detached: true,
    });
  } catch {
    return undefined;
  }
  const stop = (): void => {
    if (child.exitCode === null) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  const started = await new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(false));
    const url = `redis://127.0.0.1:${port}`;
    const deadline = Date.now() + 5000;
    const probe = async (): Promise<void> => {
      if (await redisAnswers(url)) return resolve(true);
      if (Date.now() > deadline || child.exitCode !== null) return resolve(false);
      setTimeout(() => void probe(), 100);
    };
    void probe();
  });
  if (!started) {
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
    }
    else log.warn(`Redis at ${redactUrl(config.redisUrl)} does not answer and redis-server could not be started`);
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
