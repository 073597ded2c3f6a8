import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { inject, onTestFinished } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { resolveConfig, type ConfigOverrides, type ResolvedConfig } from '../../src/config.js';
import { openContext, type FalbatchContext } from '../../src/context.js';
import { scanKeys } from '../../src/queue/connection.js';
import { freePort, spawnRedisServer } from '../../src/queue/redis-server.js';
import { createFalEmulator, type FalEmulator, type FalEmulatorOptions } from '../../src/emulator/create-fal-emulator.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { startWorker, type StartWorkerOptions, type WorkerHandle } from '../../src/worker/start-worker.js';

export const FAL_KEY = 'test-fal-key-7f3a9c1e';
export const ROOT = resolve(import.meta.dirname, '../..');

export function redisUrl(): string {
  return inject('redisUrl');
}

/**
 * Deletes every key under a prefix, `-emulated` twin included (tests own their prefix). A list of
 * Cluster nodes (`redis://a:1,b:2`) is cleaned node by node: a namespace's keys share one slot.
 */
export async function deletePrefix(url: string, prefix: string): Promise<void> {
  const [first = url, ...others] = url.split(',');
  const scheme = /^(\w+:\/\/)/.exec(first)?.[1] ?? 'redis://';
  const nodes = [first, ...others.map((item) => (item.includes('://') ? item : `${scheme}${item}`))];
  for (const node of nodes) {
    const redis = new Redis(node, { lazyConnect: true, maxRetriesPerRequest: 1, ...(nodes.length > 1 ? { retryStrategy: () => null } : {}) });
    // A Cluster node a test took down: the others are still cleaned.
    if (nodes.length > 1) redis.on('error', () => undefined);
    try {
      await redis.connect();
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (found.length > 0) await redis.unlink(...found);
      } while (cursor !== '0');
    } catch (error) {
      if (nodes.length === 1) throw error;
    } finally {
      redis.disconnect();
    }
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
  /** A Redis of the test's own (default: the suite's shared one). */
  redisUrl?: string;
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
  const redis = options.redisUrl ?? redisUrl();
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-test-'));
  const emulator = await createFalEmulator({ key: FAL_KEY, ...options.emulator });
  const config = resolveConfig(
    { REDIS_URL: redis, FAL_KEY, FAL_BASE_URL: emulator.url },
    { prefix, backoffBaseMs: 50, backoffMaxMs: 500, pollIntervalMs: 50, ...options.config },
  );
  const ctx = await openContext(config, { log: options.log ?? silentLogger });
  const workers = new Set<WorkerHandle>();
  onTestFinished(async () => {
    const leaked = workers.size;
    for (const worker of workers) await worker.close(0);
    await ctx.close();
    await emulator.close();
    await deletePrefix(redis, prefix).catch(() => undefined);
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
        counts: () => handle.counts(),
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
        REDIS_URL: redis,
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
  return collectOutput(spawn(process.execPath, [join(ROOT, 'bin/falbatch.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Waits for a child process to end, with its exit code and everything it printed. */
export function collectOutput(child: ChildProcessByStdio<null, Readable, Readable>): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Every key of the test's namespace, sorted (on a Cluster, from every master). */
export async function namespaceKeys(h: Pick<Harness, 'ctx' | 'prefix'>): Promise<string[]> {
  const found: string[] = [];
  for await (const keys of scanKeys(h.ctx.redis, `${h.prefix}:*`)) found.push(...keys);
  return found.sort();
}

/** Parses the CSV export into records keyed by column name. */
export async function readCsv(path: string): Promise<Array<Record<string, string>>> {
  const { parse } = await import('csv-parse/sync');
  const { readFileSync } = await import('node:fs');
  return parse(readFileSync(path, 'utf8'), { columns: true }) as Array<Record<string, string>>;
}

export interface SpawnedCli {
  readonly child: import('node:child_process').ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  readonly exited: Promise<number | null>;
}

/** Starts a long-running CLI command (work, emulator) in its own process. */
export function spawnCli(args: string[], env: Record<string, string>): SpawnedCli {
  const child = spawn(process.execPath, [join(ROOT, 'bin/falbatch.js'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolvePromise) => child.once('close', (code, signal) => resolvePromise(code ?? (signal ? -1 : null))));
  return { child, output: () => output, exited };
}

/** Waits until `check` holds, looking every 25 ms; fails with `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 25));
  }
}

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Stops the server the way an operator would (SHUTDOWN: AOF flushed). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data folder. */
  start(): Promise<void>;
}

/**
 * A redis-server of the test's own, in a temp folder, with the given arguments (AOF by default,
 * fsync on every write so a restart loses nothing). Stopped when the test ends.
 */
export async function startPrivateRedis(extraArgs: string[] = ['--appendonly', 'yes', '--appendfsync', 'always']): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-private-redis-'));
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = await spawnRedisServer({ port, dir, args: extraArgs });
  };
  const stop = async (): Promise<void> => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolvePromise) => running.once('exit', resolvePromise));
    running.kill('SIGTERM');
    await exited;
  };
  await start();
  onTestFinished(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { url: `redis://127.0.0.1:${port}`, port, dir, stop, start };
}

/** Runs the CLI in this process (argv and env passed in, no spawn): its exit code and what it printed. */
export async function runCliInProcess(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: (t: string) => void (stdout += t),
    stderr: (t: string) => void (stderr += t),
    env,
    signal: new AbortController().signal,
    interactive: false,
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}
