import { Cluster, Redis } from 'ioredis';
import { redactUrl, redisTarget, type RedisTarget } from '../config.js';
import { ConfigError, RedisUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * What falbatch talks to: one Redis, or a Redis Cluster (REDIS_CLUSTER). Both run the same
 * commands, pipelines, MULTI and Lua on falbatch's keys, which share one hash tag and so one slot;
 * what is about a *server* (SCAN, CLIENT ID/LIST, CONFIG, INFO) goes through this module, which
 * sends it to the right node(s).
 */
export type RedisClient = Redis | Cluster;

export interface ConnectOptions {
  /** How long the first connection may take before falbatch gives up with a clear message. @default 5 s */
  connectTimeoutMs?: number;
  log?: Logger;
  /** Name shown in `CLIENT LIST`, for operators. */
  name?: string;
  /**
   * `url` names seed nodes of a Redis Cluster (ioredis `Cluster`) rather than one Redis.
   * @default false
   */
  cluster?: boolean;
  /**
   * A key of the namespace (any: they share one hash tag). On a Cluster, the master serving its
   * slot is the node that connection ids, liveness and persistence are asked of.
   */
  home?: string;
}

/**
 * The only place that creates Redis clients. The first connection must succeed quickly (or the
 * command fails naming the URL and how to start Redis); after that the client reconnects forever,
 * queueing commands meanwhile, so a Redis restart mid-run costs a pause, not the run.
 */
export async function connectRedis(url: string, options: ConnectOptions = {}): Promise<RedisClient> {
  if (options.cluster) return connectCluster(redisTarget(url, true), url, options);
  const timeout = options.connectTimeoutMs ?? 5000;
  let connected = false;
  const redis = new Redis(url, {
    // BullMQ workers require it; for everyone else it means "wait for the reconnect, don't fail".
    maxRetriesPerRequest: null,
    lazyConnect: true,
    connectionName: options.name ?? 'falbatch',
    // How long disconnect() waits before destroying the socket: ioredis' 2 s kept a failed CLI alive.
    disconnectTimeout: 300,
    // No retries before the first connection (fail fast, say why); forever after it.
    retryStrategy: (times: number) => (connected ? Math.min(200 * times, 5000) : null),
  });
  let lastError: Error | undefined;
  const onError = (error: Error): void => {
    lastError = error;
  };
  redis.on('error', onError);
  try {
    await withTimeout(redis.connect(), timeout);
    await withTimeout(redis.ping(), timeout);
  } catch (error) {
    redis.disconnect();
    throw unavailable(url, (lastError ?? (error as Error)).message);
  }
  connected = true;
  redis.off('error', onError);
  redis.on('error', (error: Error) => options.log?.warn('redis connection error; reconnecting', { error: error.message }));
  return redis;
}

/**
 * A Redis Cluster client. Commands on falbatch's keys go to the master of their slot (ioredis
 * follows MOVED/ASK after a failover or a reshard); commands without keys are pinned by the
 * helpers below, never left to ioredis' random node.
 */
async function connectCluster(target: RedisTarget, url: string, options: ConnectOptions): Promise<Cluster> {
  const timeout = options.connectTimeoutMs ?? 5000;
  let connected = false;
  const retry = (times: number): number | null => (connected ? Math.min(200 * times, 5000) : null);
  const cluster = new Cluster(
    target.nodes.map((node) => ({ host: node.host, port: node.port })),
    {
      lazyConnect: true,
      // No retries before the first connection (fail fast, say why); forever after it. A node
      // whose connection drops is not reconnected (ioredis' default): after a failover its slots
      // are served elsewhere, and the next command learns where (MOVED, then a slots refresh).
      clusterRetryStrategy: retry,
      // While a master is down and until its replica takes over (cluster-node-timeout, 15 s by
      // default, plus the election), commands for its slots are retried every 200 ms for up to
      // 30 s rather than failing after ioredis' 16 tries (1.6 s): a failover costs a pause, not
      // failed rows, like a restart of a single Redis.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 200,
      maxRedirections: 150,
      redisOptions: {
        maxRetriesPerRequest: null,
        connectionName: options.name ?? 'falbatch',
        disconnectTimeout: 300,
        ...(target.username !== undefined ? { username: target.username } : {}),
        ...(target.password !== undefined ? { password: target.password } : {}),
        ...(target.tls ? { tls: {} } : {}),
      },
    },
  );
  let lastError: Error | undefined;
  const onError = (error: Error & { lastNodeError?: Error }): void => {
    lastError = error.lastNodeError ?? error;
  };
  const onNodeError = (error: Error): void => {
    lastError = error;
  };
  cluster.on('error', onError);
  cluster.on('node error', onNodeError);
  try {
    await withTimeout(cluster.connect(), timeout);
    await withTimeout(cluster.ping(), timeout);
  } catch (error) {
    cluster.disconnect();
    let reason = (lastError ?? (error as Error)).message;
    if (/cluster support disabled/i.test(reason)) {
      throw new ConfigError(`REDIS_CLUSTER is set, but Redis at ${redactUrl(url)} is not a Cluster node (${reason}). Unset REDIS_CLUSTER (and --redis-cluster) to use it as one Redis.`);
    }
    // ioredis reports a refused or timed-out node only as a closed connection.
    if (/^(Connection is closed|None of startup nodes is available)\.?$/.test(reason)) reason = 'no node answered';
    throw unavailable(url, reason, true);
  }
  connected = true;
  if (options.home !== undefined) homes.set(cluster, options.home);
  cluster.off('error', onError);
  cluster.off('node error', onNodeError);
  cluster.on('error', (error: Error) => options.log?.warn('redis cluster error; reconnecting', { error: error.message }));
  // A node that went down fails every command and reconnect sent its way until the Cluster moves
  // its slots: once per node every 10 s says it.
  const said = new Map<string, number>();
  cluster.on('node error', (error: Error, node: string) => {
    const now = Date.now();
    if (now - (said.get(node) ?? 0) < 10_000) return;
    said.set(node, now);
    options.log?.warn('redis cluster node error (commands for its slots are retried for 30 s, while a replica takes them over)', { node, error: error.message });
  });
  return cluster;
}

function unavailable(url: string, reason: string, cluster = false): RedisUnavailableError {
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(reason)) {
    return new RedisUnavailableError(
      `${cluster ? 'The Redis Cluster' : 'Redis'} at ${redactUrl(url)} refused the credentials (${reason.replace(/\.$/, '')}). Check the user and password in REDIS_URL (redis://[user]:password@host:port[/db]).`,
    );
  }
  if (cluster) {
    return new RedisUnavailableError(
      `Cannot reach the Redis Cluster at ${redactUrl(url)} (${reason}). REDIS_URL names its seed nodes, comma-separated (redis://[:password@]host:port,host:port,…); ` +
        'every node must be reachable at the address it announces (cluster-announce-ip behind NAT or in containers).',
    );
  }
  return new RedisUnavailableError(
    `Cannot reach Redis at ${redactUrl(url)} (${reason}). Start one with \`docker compose up -d redis\` ` +
      '(from the falbatch folder) or `redis-server`, or point REDIS_URL at yours (redis://[:password@]host:port[/db], rediss:// for TLS).',
  );
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const homes = new WeakMap<Cluster, string>();

/** Whether the client is a Redis Cluster client. */
export function isCluster(redis: RedisClient): redis is Cluster {
  return redis instanceof Cluster;
}

/** The Redis servers behind a client: the one Redis, or every node of a Cluster (replicas too: one may become master). */
function serverNodes(redis: RedisClient): Redis[] {
  return isCluster(redis) ? redis.nodes('all') : [redis];
}

function nodeName(node: Redis): string {
  return `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;
}

/** How long a server-level command waits for a master of the namespace's slot (a failover in progress), like keyed commands do. */
const HOME_WAIT_MS = 30_000;

/**
 * The node that speaks for the namespace: the one Redis, or on a Cluster the master serving the
 * home key's slot. Server-level commands (CLIENT, CONFIG, INFO, TIME) go to it rather than to a
 * random node. When no live master is known for the slot (mid-failover), asks the Cluster for its
 * slots again every 200 ms for up to 30 s; undefined after that.
 */
export async function homeNode(redis: RedisClient): Promise<Redis | undefined> {
  if (!isCluster(redis)) return redis;
  const home = homes.get(redis);
  if (home === undefined) return undefined;
  const slot = keySlot(home);
  const find = (): Redis | undefined => {
    const key = redis.slots[slot]?.[0];
    return key === undefined ? undefined : redis.nodes('master').find((node) => nodeName(node) === key);
  };
  const deadline = Date.now() + HOME_WAIT_MS;
  for (;;) {
    const found = find();
    if (found) return found;
    await new Promise<void>((resolve) => redis.refreshSlotsCache(() => resolve()));
    const refreshed = find();
    if (refreshed) return refreshed;
    if (Date.now() >= deadline || redis.status === 'end') return undefined;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Runs a server-level command on the namespace's node. On a Cluster, a failure (the master went
 * down, its replica not yet promoted) is tried again on whichever master then serves the slot,
 * every 200 ms for up to 30 s, as ioredis does for keyed commands; one Redis reconnects by itself.
 */
export async function onHomeNode<T>(redis: RedisClient, command: (node: Redis) => Promise<T>): Promise<T> {
  if (!isCluster(redis)) return command(redis);
  const deadline = Date.now() + HOME_WAIT_MS;
  for (;;) {
    const node = await homeNode(redis);
    try {
      if (!node) throw new RedisUnavailableError("No master of the Redis Cluster serves falbatch's hash slot (a failover that did not complete in 30 s?).");
      return await command(node);
    } catch (error) {
      if (Date.now() >= deadline || redis.status === 'end') throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/**
 * The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, or of the whole key, mod
 * 16384), as in the Cluster specification.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key);
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b); // {
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= (bytes[i] ?? 0) << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/**
 * Every key matching `pattern`, a page at a time. SCAN is about one server: on a Cluster each
 * master is scanned in turn (a cursor belongs to the node that gave it).
 */
export async function* scanKeys(redis: RedisClient, pattern: string, count = 1000): AsyncGenerator<string[]> {
  for (const node of isCluster(redis) ? redis.nodes('master') : [redis]) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      cursor = next;
      if (found.length > 0) yield found;
    } while (cursor !== '0');
  }
}

/**
 * Refuses a single-Redis connection to a Cluster node (keys of other slots would answer MOVED);
 * says how to connect instead. Quiet where INFO is not allowed.
 */
export async function checkServerMode(redis: RedisClient, url: string): Promise<void> {
  if (isCluster(redis)) return;
  let info: string;
  try {
    info = await redis.info('cluster');
  } catch {
    return;
  }
  if (/^cluster_enabled:1\b/m.test(info)) {
    throw new ConfigError(`Redis at ${redactUrl(url)} is a Redis Cluster node: set REDIS_CLUSTER=1 (or pass --redis-cluster), with REDIS_URL naming one or more of its nodes.`);
  }
}

/**
 * BullMQ loses jobs when Redis evicts keys. Says so, loudly, when the server may evict (on a
 * Cluster, any node: a replica becomes the master on failover); stays quiet where CONFIG is not
 * allowed (managed Redis).
 */
export async function checkEvictionPolicy(redis: RedisClient, log: Logger): Promise<void> {
  const nodes = serverNodes(redis);
  const policies = await Promise.all(
    nodes.map(async (node) => {
      try {
        const reply = (await node.config('GET', 'maxmemory-policy')) as unknown as string[];
        return reply[1];
      } catch {
        // CONFIG disabled: nothing to check.
        return undefined;
      }
    }),
  );
  const evicting = nodes.map((node, i) => ({ node, policy: policies[i] })).filter(({ policy }) => policy && policy !== 'noeviction');
  const first = evicting[0];
  if (!first) return;
  const where = isCluster(redis) ? ` on ${evicting.map(({ node }) => nodeName(node)).join(', ')}` : '';
  log.warn(
    `Redis maxmemory-policy is "${first.policy}"${where}: under memory pressure Redis may delete queued jobs and results. Set it to noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf).`,
  );
}

const connectionIds = new WeakMap<Redis, Promise<string>>();
const nodeIds = new WeakMap<Redis, Promise<string>>();
const watched = new WeakSet<Redis>();

/** Forgets what was learnt of a connection when it reconnects (a new connection, maybe a new server). */
function watch(node: Redis): void {
  if (watched.has(node)) return;
  watched.add(node);
  node.on('ready', () => {
    connectionIds.delete(node);
    nodeIds.delete(node);
  });
}

function cached(map: WeakMap<Redis, Promise<string>>, node: Redis, ask: () => Promise<string>): Promise<string> {
  let value = map.get(node);
  if (!value) {
    watch(node);
    value = ask();
    value.catch(() => map.delete(node));
    map.set(node, value);
  }
  return value;
}

/** A Cluster node's id (CLUSTER MYID): stays with the server, changes with a failover. */
function clusterNodeId(node: Redis): Promise<string> {
  return cached(nodeIds, node, async () => String(await node.cluster('MYID')));
}

/**
 * This client's connection id (CLIENT ID), refreshed after every reconnect: it names this process
 * in Redis for as long as its connection lives, which is how other workers tell a slow worker
 * (connection open) from a dead one (the kernel closed it). On a Cluster, the id of the connection
 * to the namespace's master, with that master's node id: `<client id>@<node id>`.
 */
export async function connectionIdOf(redis: RedisClient): Promise<string> {
  if (!isCluster(redis)) return cached(connectionIds, redis, async () => String(await redis.client('ID')));
  return onHomeNode(redis, (node) =>
    cached(connectionIds, node, async () => {
      const [id, nodeId] = await Promise.all([node.client('ID'), clusterNodeId(node)]);
      return `${String(id)}@${nodeId}`;
    }),
  );
}

/**
 * Whether the Redis connection with this id is still open: false once its process died. Undefined
 * when the server does not say (CLIENT LIST disabled, as some managed Redis do; on a Cluster, an
 * id taken on another master, before a failover).
 */
export async function isConnectionAlive(redis: RedisClient, id: string): Promise<boolean | undefined> {
  let node: Redis | undefined = isCluster(redis) ? undefined : redis;
  let clientId = id;
  if (isCluster(redis)) {
    const parsed = /^(\d+)@([0-9a-f]{40})$/.exec(id);
    if (!parsed?.[1] || !parsed[2]) return false;
    clientId = parsed[1];
    try {
      node = await homeNode(redis);
      if (!node || (await clusterNodeId(node)) !== parsed[2]) return undefined;
    } catch {
      return undefined;
    }
  }
  if (!/^\d+$/.test(clientId) || !node) return false;
  try {
    const listed = (await node.client('LIST', 'ID', clientId)) as unknown as string;
    return listed.trim() !== '';
  } catch {
    return undefined;
  }
}

/** Whether one server keeps its data across a restart (AOF or RDB save points); undefined where CONFIG is disabled. */
async function nodePersists(node: Redis): Promise<boolean | undefined> {
  try {
    const aof = ((await node.config('GET', 'appendonly')) as unknown as string[])[1];
    const save = ((await node.config('GET', 'save')) as unknown as string[])[1];
    return aof === 'yes' || (save !== undefined && save.trim() !== '');
  } catch {
    return undefined;
  }
}

/**
 * Whether Redis keeps its data across a restart (AOF or RDB save points); undefined where CONFIG is
 * disabled. On a Cluster, the master holding the namespace.
 */
export async function redisPersists(redis: RedisClient): Promise<boolean | undefined> {
  const node = await homeNode(redis);
  return node ? nodePersists(node) : undefined;
}

/** How long the Redis server (on a Cluster, the namespace's master) has been up, in ms (INFO server), or undefined. */
export async function redisUptimeMs(redis: RedisClient): Promise<number | undefined> {
  try {
    const node = await homeNode(redis);
    if (!node) return undefined;
    const info = await node.info('server');
    const seconds = /uptime_in_seconds:(\d+)/.exec(info)?.[1];
    return seconds === undefined ? undefined : Number(seconds) * 1000;
  } catch {
    return undefined;
  }
}

/**
 * A Redis that keeps nothing on disk loses every batch, queued row and result when it restarts.
 * Says so at start, like the eviction check (on a Cluster, naming the nodes that keep nothing).
 */
export async function checkPersistence(redis: RedisClient, log: Logger): Promise<void> {
  const nodes = serverNodes(redis);
  const persists = await Promise.all(nodes.map(nodePersists));
  const volatile = nodes.filter((_, i) => persists[i] === false);
  if (volatile.length === 0) return;
  const where = isCluster(redis) ? ` on ${volatile.map(nodeName).join(', ')}` : '';
  log.warn(
    `Redis keeps nothing on disk${where} (appendonly no, no RDB save points): a restart loses every batch, queued row and result. ` +
      'Turn on AOF (CONFIG SET appendonly yes, or in redis.conf) for batches you cannot redo.',
  );
}
