// Processes for benchmarks that run falbatch as users do: the fal emulator and each `falbatch`
// command in a process of its own (spawned `node bin/falbatch.js …`), watched from the outside.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = `${ROOT}bin/falbatch.js`;

/**
 * Starts a node process (a falbatch command, or a script when `script` is given) and keeps what it
 * prints. `waitFor(regex)` resolves once the output matches; `exited` resolves with the exit code.
 */
/** @param {string[]} args @param {{ env?: Record<string, string>, script?: string }} [options] */
export function spawnNode(args, { env = {}, script = BIN } = {}) {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set();
  const check = () => {
    for (const watcher of watchers) {
      const match = watcher.regex.exec(stdout + stderr);
      if (match) {
        watchers.delete(watcher);
        watcher.resolve(match);
      }
    }
  };
  child.stdout.on('data', (chunk) => ((stdout += chunk), check()));
  child.stderr.on('data', (chunk) => ((stderr += chunk), check()));
  const exited = new Promise((resolve) => child.once('close', (code, signal) => resolve(code ?? (signal ? `signal ${signal}` : null))));
  void exited.then(() => {
    for (const watcher of watchers) watcher.reject(new Error(`${args[0]} exited before printing ${watcher.regex}:\n${tail(stdout + stderr)}`));
    watchers.clear();
  });
  return {
    child,
    pid: child.pid,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    waitFor(regex, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(watcher);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${regex} from ${args[0]}:\n${tail(stdout + stderr)}`));
        }, timeoutMs);
        const watcher = {
          regex,
          resolve: (match) => (clearTimeout(timer), resolve(match)),
          reject: (error) => (clearTimeout(timer), reject(error)),
        };
        watchers.add(watcher);
        check();
        if (child.exitCode !== null) void exited.then(() => watcher.reject(new Error(`${args[0]} had exited:\n${tail(stdout + stderr)}`)));
      });
    },
    /** Throws, with what it printed last, if the process has ended (a benchmark waiting on it would wait for ever). */
    assertRunning() {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${args[0]} ended (${child.exitCode ?? child.signalCode}) in the middle of the run:\n${tail(stdout + stderr)}`);
      }
    },
    /** SIGTERM (falbatch stops gracefully), then the exit code. @returns {Promise<number | string | null>} */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs a falbatch command to its end; fails unless it exits with one of `okCodes`. */
export async function runFalbatch(args, env, okCodes = [0]) {
  const proc = spawnNode(args, { env });
  const code = await proc.exited;
  if (!okCodes.includes(code)) throw new Error(`falbatch ${args.join(' ')} exited ${code}:\n${tail(proc.stdout() + proc.stderr())}`);
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

/**
 * `falbatch emulator` in a process of its own (its CPU is not the measured process's), with
 * `stats()` and `reset()` over its admin routes.
 */
export async function startEmulator(args) {
  const proc = spawnNode(['emulator', ...args]);
  const [url] = await proc.waitFor(/^http:\/\/\S+/m);
  const admin = async (method, route) => {
    const response = await fetch(`${url}/_emulator/${route}`, { method });
    if (!response.ok) throw new Error(`emulator ${method} ${route}: ${response.status}`);
    return response.json();
  };
  return {
    url,
    pid: proc.pid,
    /** Throws if the emulator process has ended (then every row would fail to reach fal). */
    assertRunning: () => proc.assertRunning(),
    /** @returns {Promise<Record<string, any>>} */
    stats: () => admin('GET', 'stats'),
    reset: () => admin('POST', 'reset'),
    close: () => proc.stop(),
  };
}

/** The environment a falbatch command needs to reach this Redis and this emulator. */
export function falbatchEnv(redisUrl, emulatorUrl) {
  return { REDIS_URL: redisUrl, FAL_KEY: 'bench-key', FAL_BASE_URL: emulatorUrl };
}

/** Resident set size of a process, bytes (Linux /proc), or undefined once it has gone. */
export function rssOf(pid) {
  try {
    const kib = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    return undefined;
  }
}

/** CPU time a process has used so far (user + system), seconds (Linux /proc; 100 ticks a second), or undefined once it has gone. */
export function cpuSecondsOf(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Redis's own counters: commands processed (in all, and calls by command) and CPU seconds used (the whole server: whatever else uses it counts too). */
export async function redisCounters(redis) {
  const info = await redis.info('all');
  const field = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  const byCommand = {};
  for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) byCommand[name] = Number(calls);
  return { commands: field('total_commands_processed'), cpuSeconds: field('used_cpu_user') + field('used_cpu_sys'), byCommand };
}

/**
 * Resolves with performance.now() at the first submit the emulator sees (looking every 10 ms);
 * `alive()` is called at each look and throws when what should submit has died.
 */
export async function firstSubmit(emulator, alive = () => {}) {
  for (;;) {
    if ((await emulator.stats()).submits > 0) return performance.now();
    alive();
    emulator.assertRunning();
    await sleep(10);
  }
}

/** Resolves with performance.now() once `check()` holds (looking every `everyMs`); fails past `timeoutMs`. */
export async function until(what, check, { everyMs = 25, timeoutMs = 600_000 } = {}) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return performance.now();
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A markdown table from a header row and rows of cells. */
export function markdownTable(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export const round = (value, digits = 2) => Number(value.toFixed(digits));

function tail(text, lines = 20) {
  return text.trim().split('\n').slice(-lines).join('\n');
}
