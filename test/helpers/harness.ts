import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { inject, onTestFinished } from 'vitest';
import { resolveConfig, type ConfigOverrides, type ResolvedConfig } from '../../src/config.js';
import { openContext, type FalbatchContext } from '../../src/context.js';
import { createFalEmulator, type FalEmulator, type FalEmulatorOptions } from '../../src/emulator/create-fal-emulator.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { startWorker, type StartWorkerOptions, type WorkerHandle } from '../../src/worker/start-worker.js';

export const FAL_KEY = 'test-fal-key-7f3a9c1e';
export const ROOT = resolve(import.meta.dirname, '../..');

export function redisUrl(): string {
  return inject('redisUrl');
}

/** Deletes every key under a prefix, `-emulated` twin included (tests own their prefix). */
export async function deletePrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (found.length > 0) await redis.unlink(...found);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export interface Harness {
  readonly prefix: string;
  readonly dir: string;
  readonly emulator: FalEmulator;
  readonly config: ResolvedConfig;
  readonly ctx: FalbatchContext;
  /** Writes a file in the test's folder and returns its path. */
  file(name: string, content: string | Buffer): string;
  /** Starts a worker that the harness checks was closed by the end of the test. */
  startWorker(options?: StartWorkerOptions): Promise<WorkerHandle>;
  /** Environment for a spawned CLI pointed at this harness. */
  env(extra?: Record<string, string>): Record<string, string>;
}

export interface HarnessOptions {
  emulator?: FalEmulatorOptions;
  config?: ConfigOverrides;
  log?: Logger;
}

/**
 * A falbatch namespace of its own (unique prefix) on the shared test Redis, a fal emulator on a
 * free port, and a temp folder. Everything is torn down when the test ends, and a test that left a
 * worker open fails.
 */
export async function createHarness(options: HarnessOptions = {}): Promise<Harness> {
  const prefix = `t-${randomUUID().slice(0, 12)}`;
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-test-'));
  const emulator = await createFalEmulator({ key: FAL_KEY, ...options.emulator });
  const config = resolveConfig(
    { REDIS_URL: redisUrl(), FAL_KEY, FAL_BASE_URL: emulator.url },
    { prefix, backoffBaseMs: 50, backoffMaxMs: 500, pollIntervalMs: 50, ...options.config },
  );
  const ctx = await openContext(config, { log: options.log ?? silentLogger });
  const workers = new Set<WorkerHandle>();
  onTestFinished(async () => {
    const leaked = workers.size;
    for (const worker of workers) await worker.close(0);
    await ctx.close();
    await emulator.close();
    await deletePrefix(redisUrl(), prefix);
    rmSync(dir, { recursive: true, force: true });
    if (leaked > 0) throw new Error(`the test left ${leaked} worker(s) open`);
  });
  return {
    prefix,
    dir,
    emulator,
    config,
    ctx,
    file(name, content) {
      const path = join(dir, name);
      writeFileSync(path, content);
      return path;
    },
    async startWorker(workerOptions) {
      const handle = await startWorker(ctx, workerOptions);
      const tracked: WorkerHandle = {
        closed: handle.closed,
        close: async (graceMs) => {
          await handle.close(graceMs);
          workers.delete(tracked);
        },
      };
      workers.add(tracked);
      return tracked;
    },
    env(extra = {}) {
      return {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '',
        REDIS_URL: redisUrl(),
        FAL_KEY,
        FAL_BASE_URL: emulator.url,
        FALBATCH_PREFIX: prefix,
        ...extra,
      };
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (bin/falbatch.js over dist/) as a child process. */
export function runCliProcess(args: string[], env: Record<string, string>, cwd = ROOT): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/falbatch.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Parses the CSV export into records keyed by column name. */
export async function readCsv(path: string): Promise<Array<Record<string, string>>> {
  const { parse } = await import('csv-parse/sync');
  const { readFileSync } = await import('node:fs');
  return parse(readFileSync(path, 'utf8'), { columns: true }) as Array<Record<string, string>>;
}
