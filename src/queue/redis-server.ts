import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/**
 * A redis-server of falbatch's own on 127.0.0.1: the one `--emulate` starts when nothing answers
 * at REDIS_URL, and the ones the tests start. Spawning it and knowing when it is ready live here,
 * once.
 */

/** A TCP port free on 127.0.0.1 right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  port: number;
  /** Its working folder (AOF and RDB files). */
  dir: string;
  /** More `redis-server` arguments, e.g. `['--appendonly', 'yes']` or `['--requirepass', pw]`. */
  args?: readonly string[];
  /**
   * In a process group of its own, so a Ctrl-C meant for the parent does not stop the Redis the
   * parent still needs to finish gracefully (the parent stops it). Default false.
   */
  detached?: boolean;
  /** Give up when it is not ready within this long. Default: wait as long as it keeps running. */
  readyTimeoutMs?: number;
}

/**
 * Spawns `redis-server` (no RDB snapshots) and resolves once it logs that it accepts connections,
 * after loading its data. Rejects, with its output, when it cannot be started, exits first or is
 * not ready in time (the process is then stopped).
 */
export async function spawnRedisServer(options: RedisServerOptions): Promise<ChildProcess> {
  const args = ['--port', String(options.port), '--bind', '127.0.0.1', '--save', '', '--dir', options.dir, ...(options.args ?? [])];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached ?? false });
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer =
        options.readyTimeoutMs === undefined
          ? undefined
          : setTimeout(() => reject(new Error(`redis-server was not ready within ${options.readyTimeoutMs} ms: ${output}`)), options.readyTimeoutMs);
      const settle = (): void => clearTimeout(timer);
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          settle();
          resolve();
        }
      });
      child.once('error', (error) => {
        settle();
        reject(new Error(`could not start redis-server: ${error.message}`));
      });
      child.once('exit', (code) => {
        settle();
        reject(new Error(`redis-server exited with ${code}: ${output}`));
      });
    });
  } catch (error) {
    if (child.exitCode === null) child.kill('SIGTERM');
    throw error;
  }
  if (options.detached === true) {
    // Nothing reads its log, and open pipes would keep the parent's event loop alive: let them go
    // (redis-server ignores SIGPIPE; the parent stops it).
    child.stdout.destroy();
    child.stderr.destroy();
  } else {
    // Its later log lines are drained and dropped, so it never blocks on a full pipe.
    child.stdout.removeAllListeners('data').resume();
    child.stderr.removeAllListeners('data').resume();
  }
  return child;
}
