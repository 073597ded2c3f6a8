import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort, spawnRedisServer } from '../../src/queue/redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisSource: string;
  }
}

/**
 * One real Redis for the whole run: REDIS_URL when set; a testcontainers Redis when a Docker engine
 * answers; otherwise a redis-server spawned on a free port (this machine and CI have no Docker).
 * Tests isolate themselves by key prefix, so sharing one server is safe.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env['REDIS_URL']) {
    project.provide('redisUrl', process.env['REDIS_URL']);
    project.provide('redisSource', 'REDIS_URL');
    return async () => undefined;
  }
  if (dockerAvailable()) {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('redis:7-alpine')
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
      .start();
    project.provide('redisUrl', `redis://${container.getHost()}:${container.getMappedPort(6379)}`);
    project.provide('redisSource', 'testcontainers');
    return async () => {
      await container.stop();
    };
  }
  const { child, url, dir } = await spawnRedis();
  project.provide('redisUrl', url);
  project.provide('redisSource', 'redis-server');
  return async () => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
}

function dockerAvailable(): boolean {
  if (process.env['DOCKER_HOST']) return true;
  return existsSync('/var/run/docker.sock');
}

export { freePort } from '../../src/queue/redis-server.js';

async function spawnRedis(): Promise<{ child: ChildProcess; url: string; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-test-redis-'));
  const child = await spawnRedisServer({ port, dir, args: ['--appendonly', 'no'] }).catch((error: Error) => {
    throw new Error(`Could not start redis-server for the tests (install it, or set REDIS_URL): ${error.message}`);
  });
  return { child, url: `redis://127.0.0.1:${port}`, dir };
}
