import { ioredis } from './cjs-packages.js';
import type { RedisTarget } from '../config.js';
import { unusableNodes } from './cluster-nodes.js';
import { withTimeout } from './with-timeout.js';

export interface SeedNode {
  readonly host: string;
  readonly port: number;
}

/** What the seed nodes of REDIS_URL said when asked, each on its own connection. */
export interface SeedsReport {
  /** The seeds that answered as Cluster nodes: what the Cluster client starts from. */
  readonly live: readonly SeedNode[];
  /** `host:port (why)` of each seed that did not answer, or refused the login, or is not a Cluster node. */
  readonly down: readonly string[];
  /** A seed's reason when it is not a Cluster node ("cluster support disabled"). */
  readonly notCluster: string | undefined;
  /** A seed's reason when it refused the credentials. */
  readonly refused: string | undefined;
  /** cluster_state of the first live seed: `fail` while a master is down and no replica took over. */
  readonly state: string | undefined;
  /** Masters that still hold slots but which the Cluster flags as failed (`host:port`). */
  readonly failedMasters: readonly string[];
  /** The Cluster's cluster-node-timeout (ms) where CONFIG is allowed. */
  readonly nodeTimeoutMs: number | undefined;
}

interface SeedAnswer {
  readonly seed: SeedNode;
  readonly error?: string;
  readonly info?: string;
  readonly nodes?: string;
  readonly nodeTimeoutMs?: number;
}

/**
 * Asks every seed node at once (CLUSTER INFO, CLUSTER NODES, CONFIG GET cluster-node-timeout), each
 * within `timeoutMs`. A seed that is down does not keep the others from being used: any live seed
 * is enough to find the whole Cluster.
 */
export async function probeSeeds(target: RedisTarget, timeoutMs: number, name: string): Promise<SeedsReport> {
  const answers = await Promise.all(target.nodes.map((seed) => askSeed(seed, target, timeoutMs, name)));
  const live = answers.filter((answer) => answer.error === undefined);
  const first = live[0];
  const clusterDisabled = answers.find((answer) => answer.error !== undefined && /cluster support disabled/i.test(answer.error));
  const badLogin = answers.find((answer) => answer.error !== undefined && /WRONGPASS|NOAUTH|invalid password|invalid username/i.test(answer.error));
  const failedMasters = first?.nodes === undefined ? [] : failedSlotHolders(first.nodes);
  return {
    live: live.map((answer) => answer.seed),
    down: answers.filter((answer) => answer.error !== undefined).map((answer) => `${answer.seed.host}:${answer.seed.port} (${answer.error})`),
    notCluster: clusterDisabled?.error,
    refused: badLogin?.error,
    state: first?.info === undefined ? undefined : /^cluster_state:(\w+)/m.exec(first.info)?.[1],
    failedMasters,
    nodeTimeoutMs: first?.nodeTimeoutMs,
  };
}

async function askSeed(seed: SeedNode, target: RedisTarget, timeoutMs: number, name: string): Promise<SeedAnswer> {
  const redis = new (ioredis().Redis)({
    host: seed.host,
    port: seed.port,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectionName: `${name}-seed`,
    disconnectTimeout: 300,
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
  });
  let lastError: Error | undefined;
  redis.on('error', (error: Error) => {
    lastError = error;
  });
  try {
    await withTimeout(redis.connect(), timeoutMs);
    const info = String(await withTimeout(redis.cluster('INFO'), timeoutMs));
    const nodes = await withTimeout(redis.cluster('NODES'), timeoutMs).then(String, () => undefined);
    const nodeTimeoutMs = await withTimeout(redis.config('GET', 'cluster-node-timeout') as Promise<unknown>, timeoutMs).then(
      (reply) => Number((reply as string[])[1]) || undefined,
      () => undefined,
    );
    return { seed, info, ...(nodes !== undefined ? { nodes } : {}), ...(nodeTimeoutMs !== undefined ? { nodeTimeoutMs } : {}) };
  } catch (error) {
    // ioredis reports a refused connection as a closed one; the socket's error says which.
    const reason = (error as Error).message;
    const said = lastError !== undefined && /^Connection is closed\.?$/.test(reason) ? lastError.message : reason;
    return { seed, error: said.replace(/\.$/, '') };
  } finally {
    redis.disconnect();
  }
}

/** Masters flagged failed in a CLUSTER NODES reply that still hold slots (their replica has not taken over yet). */
function failedSlotHolders(reply: string): string[] {
  const failed = unusableNodes(reply);
  const holders: string[] = [];
  for (const line of reply.split('\n')) {
    const fields = line.trim().split(' ');
    const address = fields[1]?.split('@')[0];
    if (address !== undefined && failed.has(address) && fields[2]?.split(',').includes('master') && fields.length > 8) holders.push(address);
  }
  return holders;
}
