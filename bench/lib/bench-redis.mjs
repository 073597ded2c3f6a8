// The Redis a benchmark measures: REDIS_URL when set (Redis's own counters, INFO's used_memory and
// commands, then carry whatever else uses that server), otherwise a private `redis-server` on a free
// port without persistence, whose counters are the run's alone; 127.0.0.1:6379 if there is no
// redis-server to start.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

export async function benchRedis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, what: 'REDIS_URL (shared)', stop: async () => {} };
  if (spawnSync('redis-server', ['--version']).status !== 0) return { url: 'redis://127.0.0.1:6379', what: '127.0.0.1:6379 (shared)', stop: async () => {} };
  const port = await freePort();
  const server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
    { stdio: 'ignore' },
  );
  const exited = new Promise((resolve) => server.once('exit', resolve));
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  for (let tries = 0; ; tries++) {
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch {
      if (tries > 100) throw new Error(`redis-server on port ${port} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const version = /redis_version:(\S+)/.exec(await probe.info('server'))?.[1];
  probe.disconnect();
  return {
    url,
    what: `a private redis-server ${version} (no persistence)`,
    async stop() {
      server.kill('SIGTERM');
      await exited;
    },
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}
