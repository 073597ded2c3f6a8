import type { Cluster, Redis } from 'ioredis';
import { redactUrl, redisTarget, type RedisTarget } from '../config.js';
import { ConfigError, RedisUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatDuration } from '../time.js';
import { isReplyError, leaveOut, nodeName, onEachUsableNode, usableNodes } from './cluster-nodes.js';
import { probeSeeds } from './cluster-seeds.js';
import { withTimeout } from './with-timeout.js';
import { ioredis } from './cjs-packages.js';
import { notServed } from './cluster-errors.js';
import { attachRedisOutage, createRedisOutage } from './redis-outage.js';

export { clusterFailure } from './cluster-errors.js';

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
  /**
   * On a Cluster, how long commands wait for a replica to take over the slots of a master that
   * went down before they fail. @default a minute, or three times the Cluster's
   * cluster-node-timeout when that is longer. Shorter fails sooner on a Cluster that cannot fail
   * over (a master without a replica).
   */
  failoverWaitMs?: number;
}

/**
 * Where Redis clients are made (with cluster-seeds.ts, which asks a Cluster's seed nodes first).
 * The first connection must succeed quickly (or the
 * command fails naming the URL and how to start Redis); after that the client reconnects forever,
 * queueing commands meanwhile, so a Redis restart mid-run costs a pause, not the run.
 */
export async function connectRedis(url: string, options: ConnectOptions = {}): Promise<RedisClient> {
  if (options.cluster) return connectCluster(redisTarget(url, true), url, options);
  const timeout = options.connectTimeoutMs ?? 5000;
  let connected = false;
  const redis = new (ioredis().Redis)(url, {
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
  watchOutages(redis, url, options.log);
  return redis;
}

/** A lost connection is said once (and every minute while it lasts), its end once: see redis-outage.ts. */
function watchOutages(client: RedisClient, url: string, log: Logger | undefined): void {
  if (log === undefined) {
    // Nobody to tell: still keep the error from being an unhandled 'error' event.
    client.on('error', () => {});
    return;
  }
  const outage = createRedisOutage({ log, where: redactUrl(url) });
  attachRedisOutage(client, outage);
  client.on('error', (error: Error) => outage.error(isCluster(client) ? 'redis cluster' : 'redis connection', error));
  client.on('ready', () => outage.answered());
}

/**
 * A Redis Cluster client. Commands on falbatch's keys go to the master of their slot (ioredis
 * follows MOVED/ASK after a failover or a reshard); commands without keys are pinned by the
 * helpers below, never left to ioredis' random node.
 *
 * The seed nodes are asked first, each on its own: any one that answers is enough (a seed that is
 * down is said once and left out, and only when none answers does the command fail, naming each
 * with its reason). The Cluster client starts from the live seeds only.
 */
async function connectCluster(target: RedisTarget, url: string, options: ConnectOptions): Promise<Cluster> {
  const timeout = options.connectTimeoutMs ?? 5000;
  const name = options.name ?? 'falbatch';
  const seeds = await probeSeeds(target, timeout, name);
  if (seeds.notCluster !== undefined) {
    throw new ConfigError(
      `REDIS_CLUSTER is set, but Redis at ${redactUrl(url)} is not a Cluster node (${seeds.notCluster}). Unset REDIS_CLUSTER (and --redis-cluster) to use it as one Redis.`,
    );
  }
  if (seeds.live.length === 0) {
    throw unavailable(
      url,
      seeds.refused ?? (seeds.down.length === 1 ? (seeds.down[0] ?? 'no node answered') : `no seed node answered: ${seeds.down.join('; ')}`),
      true,
    );
  }
  if (seeds.down.length > 0) {
    options.log?.warn(
      `Redis Cluster seed node${seeds.down.length === 1 ? '' : 's'} ${seeds.down.join(', ')} did not answer: connecting through ${seeds.live.map((seed) => `${seed.host}:${seed.port}`).join(', ')}.`,
    );
  }
  const waitMs = options.failoverWaitMs ?? failoverWaitMs(seeds.nodeTimeoutMs);
  if (seeds.state === 'fail' || seeds.failedMasters.length > 0) {
    const masters = seeds.failedMasters.length > 0 ? `master ${seeds.failedMasters.join(', ')} is down` : 'a master is down';
    options.log?.warn(
      `The Redis Cluster is failing over (${masters}${seeds.state === 'fail' ? ', cluster_state:fail' : ''}): commands wait up to ${formatDuration(waitMs)} for a replica to take over.`,
    );
  }
  // Before the first connection, tries again every 200 ms for up to connectTimeoutMs (fail fast,
  // say why), or while the Cluster is down for up to the failover wait; forever after it.
  const firstDeadline = Date.now() + (seeds.state === 'fail' ? waitMs : timeout);
  let connected = false;
  const retry = (times: number): number | null => (connected ? Math.min(200 * times, 5000) : Date.now() < firstDeadline ? RETRY_MS : null);
  const cluster = new (ioredis().Cluster)(
    seeds.live.map((seed) => ({ host: seed.host, port: seed.port })),
    {
      lazyConnect: true,
      // A node whose connection drops is not reconnected (ioredis' default): after a failover its
      // slots are served elsewhere, and the next command learns where (MOVED, then a slots refresh).
      clusterRetryStrategy: retry,
      // ioredis' ready check (CLUSTER INFO says cluster_state:ok) holds commands back while the
      // Cluster is down, from a master's failure until its replica is promoted; the retries above
      // make a new command wait that out rather than fail.
      enableReadyCheck: true,
      // While a master is down and until its replica takes over (cluster-node-timeout, 15 s by
      // default, plus the election), commands for its slots are retried rather than failed after
      // ioredis' 16 tries: a failover costs a pause, not failed rows, like a restart of a single
      // Redis. A try on the dead master's closed connection is followed by one on another master
      // (which redirects back, MOVED): 2 redirections every 400 ms, as CLUSTERDOWN and TRYAGAIN
      // make 1 every 200 ms, so that maxRedirections bounds the wait in time.
      retryDelayOnFailover: 2 * RETRY_MS,
      retryDelayOnClusterDown: RETRY_MS,
      retryDelayOnTryAgain: RETRY_MS,
      maxRedirections: Math.ceil(waitMs / RETRY_MS),
      redisOptions: {
        maxRetriesPerRequest: null,
        connectionName: name,
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
  cluster.on('error', onError);
  cluster.on('node error', onError);
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        cluster.once('ready', resolve);
        cluster.once('end', () => reject(lastError ?? new Error('no node answered')));
        // Rejects at the first failed try, while the retries above go on: 'ready' or 'end' tell.
        cluster.connect().catch(() => undefined);
      }),
      Math.max(0, firstDeadline - Date.now()) + timeout,
    );
  } catch (error) {
    cluster.disconnect();
    if (seeds.state === 'fail') throw notServed(`for ${formatDuration(waitMs)} (cluster_state:fail)`, error);
    throw unavailable(url, (lastError ?? (error as Error)).message, true);
  }
  connected = true;
  waits.set(cluster, waitMs);
  if (options.home !== undefined) homes.set(cluster, options.home);
  cluster.off('error', onError);
  cluster.off('node error', onError);
  watchOutages(cluster, url, options.log);
  // A node that went down fails every command and reconnect sent its way until the Cluster moves
  // its slots: once per node every 10 s says it.
  const said = new Map<string, number>();
  cluster.on('node error', (error: Error, node: string) => {
    const now = Date.now();
    if (now - (said.get(node) ?? 0) < 10_000) return;
    said.set(node, now);
    options.log?.warn(`redis cluster node error (commands for its slots are retried for up to ${formatDuration(waitMs)}, while a replica takes them over)`, {
      node,
      error: error.message,
    });
  });
  return cluster;
}

/** How often a command for a slot without a live master is tried again. */
const RETRY_MS = 200;

/**
 * How long commands wait for a replica to take a dead master's slots over: a minute, or three
 * times the Cluster's cluster-node-timeout when that is longer (Redis flags a master failed after
 * that timeout, then its replicas hold an election).
 */
function failoverWaitMs(nodeTimeoutMs: number | undefined): number {
  return Math.max(60_000, 3 * (nodeTimeoutMs ?? 15_000));
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

const homes = new WeakMap<Cluster, string>();
const waits = new WeakMap<Cluster, number>();

/** Whether the client is a Redis Cluster client. */
export function isCluster(redis: RedisClient): redis is Cluster {
  return redis instanceof ioredis().Cluster;
}

/** How long a server-level command waits for a master of the namespace's slot (a failover in progress), like keyed commands do. */
function homeWaitMs(redis: Cluster): number {
  return waits.get(redis) ?? failoverWaitMs(undefined);
}

/**
 * The node that speaks for the namespace: the one Redis, or on a Cluster the master serving the
 * home key's slot. Server-level commands (CLIENT, CONFIG, INFO, TIME) go to it rather than to a
 * random node. When no live master is known for the slot (mid-failover), asks the Cluster for its
 * slots again every 200 ms for as long as keyed commands wait; undefined after that.
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
  const deadline = Date.now() + homeWaitMs(redis);
  for (;;) {
    const found = find();
    if (found) return found;
    await new Promise<void>((resolve) => redis.refreshSlotsCache(() => resolve()));
    const refreshed = find();
    if (refreshed) return refreshed;
    if (Date.now() >= deadline || redis.status === 'end') return undefined;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/**
 * Runs a server-level command on the namespace's node. On a Cluster, a failure (the master went
 * down, its replica not yet promoted) is tried again on whichever master then serves the slot,
 * every 200 ms for as long as keyed commands wait, as ioredis does for them; one Redis reconnects
 * by itself.
 */
export async function onHomeNode<T>(redis: RedisClient, command: (node: Redis) => Promise<T>): Promise<T> {
  if (!isCluster(redis)) return command(redis);
  const waitMs = homeWaitMs(redis);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const node = await homeNode(redis);
    try {
      if (!node) throw new Error('no master serves its hash slot');
      return await command(node);
    } catch (error) {
      if (redis.status === 'end') throw error;
      if (Date.now() >= deadline) {
        const where = node ? `its master ${nodeName(node)}: ${(error as Error).message}` : (error as Error).message;
        throw notServed(`(hash slot ${keySlot(homes.get(redis) ?? '')}) for ${formatDuration(waitMs)} (${where.replace(/\.$/, '')})`, error);
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
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
 * master is scanned in turn (a cursor belongs to the node that gave it), once the namespace's slot
 * has a live master (mid-failover, as long as keyed commands wait); a master the Cluster flags as
 * failed, or that does not answer, is said once (to `log`) and left out.
 */
export async function* scanKeys(redis: RedisClient, pattern: string, count = 1000, log?: Logger): AsyncGenerator<string[]> {
  if (isCluster(redis)) await homeNode(redis);
  for (const node of isCluster(redis) ? await usableNodes(redis, 'master', log) : [redis]) {
    let cursor = '0';
    do {
      let reply: [string, string[]];
      try {
        reply = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      } catch (error) {
        if (!isCluster(redis) || isReplyError(error)) throw error;
        leaveOut(log, nodeName(node), `it did not answer: ${(error as Error).message}`);
        break;
      }
      cursor = reply[0];
      if (reply[1].length > 0) yield reply[1];
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
    throw new ConfigError(
      `Redis at ${redactUrl(url)} is a Redis Cluster node: set REDIS_CLUSTER=1 (or pass --redis-cluster), with REDIS_URL naming one or more of its nodes.`,
    );
  }
}

/**
 * BullMQ loses jobs when Redis evicts keys. Says so, loudly, when the server may evict (on a
 * Cluster, any node: a replica becomes the master on failover); stays quiet where CONFIG is not
 * allowed (managed Redis).
 */
export async function checkEvictionPolicy(redis: RedisClient, log: Logger): Promise<void> {
  const answers = await onEachServer(redis, (node) => configValue(node, 'maxmemory-policy'), log);
  const evicting = answers.filter(({ value }) => value && value !== 'noeviction');
  const first = evicting[0];
  if (!first) return;
  const where = isCluster(redis) ? ` on ${evicting.map(({ node }) => nodeName(node)).join(', ')}` : '';
  log.warn(
    `Redis maxmemory-policy is "${first.value}"${where}: under memory pressure Redis may delete queued jobs and results. Set it to noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf).`,
  );
}

/**
 * Runs a server-level command on the one Redis, or on every node of a Cluster (replicas too: one
 * may become master) but those the Cluster flags as failed or that do not answer, which are said
 * once and left out.
 */
async function onEachServer<T>(redis: RedisClient, command: (node: Redis) => Promise<T>, log: Logger): Promise<Array<{ node: Redis; value: T | undefined }>> {
  if (!isCluster(redis)) return [{ node: redis, value: await command(redis).catch(() => undefined) }];
  return onEachUsableNode(redis, 'all', command, log);
}

/** A CONFIG GET value; undefined where the server refuses CONFIG (managed Redis). Rejects when the node does not answer. */
async function configValue(node: Redis, name: string): Promise<string | undefined> {
  try {
    return ((await node.config('GET', name)) as unknown as string[])[1];
  } catch (error) {
    if (isReplyError(error)) return undefined;
    throw error;
  }
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
  const [aof, save] = await Promise.all([configValue(node, 'appendonly'), configValue(node, 'save')]);
  if (aof === undefined && save === undefined) return undefined;
  return aof === 'yes' || (save !== undefined && save.trim() !== '');
}

/**
 * Whether Redis keeps its data across a restart (AOF or RDB save points); undefined where CONFIG is
 * disabled. On a Cluster, the master holding the namespace.
 */
export async function redisPersists(redis: RedisClient): Promise<boolean | undefined> {
  const node = await homeNode(redis);
  return node ? nodePersists(node).catch(() => undefined) : undefined;
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
  const answers = await onEachServer(redis, nodePersists, log);
  const volatile = answers.filter(({ value }) => value === false);
  if (volatile.length === 0) return;
  const where = isCluster(redis) ? ` on ${volatile.map(({ node }) => nodeName(node)).join(', ')}` : '';
  log.warn(
    `Redis keeps nothing on disk${where} (appendonly no, no RDB save points): a restart loses every batch, queued row and result. ` +
      'Turn on AOF (CONFIG SET appendonly yes, or in redis.conf) for batches you cannot redo.',
  );
}
