import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './global-redis.js';
import { until } from './harness.js';

export interface LocalRedisCluster {
  /** Client ports of the nodes, in the order they were created (masters first, then replicas). */
  readonly ports: readonly number[];
  /** REDIS_URL naming them all as seed nodes (`redis://127.0.0.1:P1,127.0.0.1:P2,…`). */
  readonly url: string;
  /** A plain (non-Cluster) client per node, for looking at one node's keys. */
  readonly nodes: readonly Redis[];
  /** Kills one node's server at once (SIGKILL), as a crash would. */
  kill(port: number): Promise<void>;
  /** The port of the master serving a slot, as the first node that answers (not in `skip`) sees it. */
  masterOf(slot: number, skip?: readonly number[]): Promise<number | undefined>;
  /** The port of a replica of the master on `port`, as the first other node that answers sees it. */
  replicaOf(port: number): Promise<number | undefined>;
  /** A plain client of the node on `port`. */
  node(port: number): Redis;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** Replicas per master. @default 0 */
  replicas?: number;
  /** cluster-node-timeout: how long a master may be unreachable before its replica takes over. @default 15 s (Redis') */
  nodeTimeoutMs?: number;
  /** How long the Cluster may take to say cluster_state:ok. @default 20 s */
  deadlineMs?: number;
}

/** Why a local Cluster cannot be started here (the binaries are missing), or undefined. */
export function clusterUnsupported(): string | undefined {
  for (const binary of ['redis-server', 'redis-cli']) {
    const probe = spawnSync(binary, ['--version'], { stdio: 'ignore' });
    if (probe.error || probe.status !== 0) return `${binary} is not installed`;
  }
  return undefined;
}

/**
 * A throwaway Redis Cluster, nothing on disk: `redis-server --cluster-enabled yes` on free ports
 * (client and bus ports both picked, so none is out of range), joined with `redis-cli --cluster
 * create`, waited for until every node says `cluster_state:ok`.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<LocalRedisCluster> {
  const { masters = 3, replicas = 0, deadlineMs = 20_000 } = options;
  const size = masters * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'falbatch-cluster-'));
  const children: ChildProcess[] = [];
  const byPort = new Map<number, ChildProcess>();
  const nodes: Redis[] = [];
  const stop = async (): Promise<void> => {
    for (const node of nodes) node.disconnect();
    await Promise.all(
      children.map((child) => {
        if (child.exitCode !== null || child.signalCode !== null) return undefined;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        return exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < size; i++) {
      const port = await freePort();
      const busPort = await freePort();
      ports.push(port);
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-port',
          String(busPort),
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--daemonize',
          'no',
          '--repl-diskless-sync-delay',
          '0',
          ...(options.nodeTimeoutMs !== undefined ? ['--cluster-node-timeout', String(options.nodeTimeoutMs)] : []),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      children.push(child);
      byPort.set(port, child);
      await new Promise<void>((resolve, reject) => {
        let log = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          log += chunk.toString();
          if (log.includes('Ready to accept connections')) resolve();
        });
        child.once('error', reject);
        child.once('exit', (code) => reject(new Error(`redis-server on port ${port} exited with ${code}: ${log.slice(-500)}`)));
      });
    }
    const create = spawn(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const created = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      let output = '';
      create.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      create.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      create.once('error', reject);
      create.once('close', (code) => resolve({ code, output }));
    });
    if (created.code !== 0) throw new Error(`redis-cli --cluster create exited with ${created.code}: ${created.output.slice(-500)}`);
    for (const port of ports) {
      const node = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
      // A node killed on purpose makes its client fail until it is closed: expected, not a test error.
      node.on('error', () => undefined);
      nodes.push(node);
    }
    await until(
      'every node of the Cluster to say cluster_state:ok',
      async () => (await Promise.all(nodes.map(async (node) => String(await node.cluster('INFO'))))).every((info) => /^cluster_state:ok\b/m.test(info)),
      deadlineMs,
    );
    // A replica that never synced cannot take over: wait for every replica's link to its master.
    await until(
      'every replica to be in sync with its master',
      async () =>
        (await Promise.all(nodes.map(async (node) => String(await node.info('replication'))))).every(
          (info) => !/^role:slave\b/m.test(info) || /^master_link_status:up\b/m.test(info),
        ),
      deadlineMs,
    );
    const kill = async (port: number): Promise<void> => {
      const child = byPort.get(port);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    };
    const node = (port: number): Redis => {
      const found = nodes[ports.indexOf(port)];
      if (!found) throw new Error(`no node of the Cluster on port ${port}`);
      return found;
    };
    /** Asks each node in turn (but those in `skip`) until one answers. */
    const ask = async <T>(skip: readonly number[], question: (node: Redis) => Promise<T>): Promise<T | undefined> => {
      for (const port of ports) {
        if (skip.includes(port)) continue;
        try {
          return await question(node(port));
        } catch {
          // That node is down: ask the next.
        }
      }
      return undefined;
    };
    const masterOf = (slot: number, skip: readonly number[] = []): Promise<number | undefined> =>
      ask(skip, async (each) => {
        const ranges = await each.cluster('SLOTS');
        return ranges.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1];
      });
    const replicaOf = (port: number): Promise<number | undefined> =>
      ask([port], async (each) => {
        const lines = String(await each.cluster('NODES'))
          .split('\n')
          .map((line) => line.split(' '));
        const id = lines.find((fields) => fields[1]?.startsWith(`127.0.0.1:${port}@`))?.[0];
        const replica = lines.find((fields) => fields[2]?.split(',').includes('slave') && fields[3] === id);
        return replica ? Number(/:(\d+)@/.exec(replica[1] ?? '')?.[1]) : undefined;
      });
    return { ports, url: `redis://${ports.map((port) => `127.0.0.1:${port}`).join(',')}`, nodes, kill, masterOf, replicaOf, node, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A Cluster shared by the tests of a describe block, or why it could not be started (to skip with). */
export interface ClusterSuite {
  readonly cluster: LocalRedisCluster | undefined;
  readonly failure: string | undefined;
}

/** Starts a local Cluster before the block's tests (see startRedisCluster) and stops it after them. */
export function useRedisCluster(options: RedisClusterOptions = {}): ClusterSuite {
  const suite: { cluster: LocalRedisCluster | undefined; failure: string | undefined } = { cluster: undefined, failure: undefined };
  beforeAll(async () => {
    try {
      suite.cluster = await startRedisCluster(options);
    } catch (error) {
      suite.failure = `a local Redis Cluster could not be started: ${(error as Error).message}`;
    }
  });
  afterAll(async () => {
    await suite.cluster?.stop();
  });
  return suite;
}
