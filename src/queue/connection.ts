import { Redis } from 'ioredis';
import { redactUrl } from '../config.js';
import { RedisUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';

export interface ConnectOptions {
  /** How long the first connection may take before falbatch gives up with a clear message. @default 5 s */
  connectTimeoutMs?: number;
  log?: Logger;
  /** Name shown in `CLIENT LIST`, for operators. */
  name?: string;
}

/**
 * The only place that creates Redis clients. The first connection must succeed quickly (or the
 * command fails naming the URL and how to start Redis); after that the client reconnects forever,
 * queueing commands meanwhile, so a Redis restart mid-run costs a pause, not the run.
 */
export async function connectRedis(url: string, options: ConnectOptions = {}): Promise<Redis> {
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
    const reason = (lastError ?? (error as Error)).message;
    if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(reason)) {
      throw new RedisUnavailableError(
        `Redis at ${redactUrl(url)} refused the credentials (${reason.replace(/\.$/, '')}). Check the user and password in REDIS_URL (redis://[user]:password@host:port[/db]).`,
      );
    }
    throw new RedisUnavailableError(
      `Cannot reach Redis at ${redactUrl(url)} (${reason}). Start one with \`docker compose up -d redis\` ` +
        '(from the falbatch folder) or `redis-server`, or point REDIS_URL at yours (redis://[:password@]host:port[/db], rediss:// for TLS).',
    );
  }
  connected = true;
  redis.off('error', onError);
  redis.on('error', (error: Error) => options.log?.warn('redis connection error; reconnecting', { error: error.message }));
  return redis;
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

/**
 * BullMQ loses jobs when Redis evicts keys. Says so, loudly, when the server may evict;
 * stays quiet where CONFIG is not allowed (managed Redis).
 */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as unknown as string[];
    const policy = reply[1];
    if (policy && policy !== 'noeviction') {
      log.warn(`Redis maxmemory-policy is "${policy}": under memory pressure Redis may delete queued jobs and results. Set it to noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf).`);
    }
  } catch {
    // CONFIG disabled: nothing to check.
  }
}

const connectionIds = new WeakMap<Redis, Promise<string>>();
const watched = new WeakSet<Redis>();

/**
 * This client's connection id (CLIENT ID), refreshed after every reconnect: it names this process
 * in Redis for as long as its connection lives, which is how other workers tell a slow worker
 * (connection open) from a dead one (the kernel closed it).
 */
export function connectionIdOf(redis: Redis): Promise<string> {
  let id = connectionIds.get(redis);
  if (!id) {
    if (!watched.has(redis)) {
      watched.add(redis);
      redis.on('ready', () => connectionIds.delete(redis));
    }
    id = (redis.client('ID') as Promise<number>).then(String);
    id.catch(() => connectionIds.delete(redis));
    connectionIds.set(redis, id);
  }
  return id;
}

/**
 * Whether the Redis connection with this id is still open: false once its process died. Undefined
 * when the server does not say (CLIENT LIST disabled, as some managed Redis do).
 */
export async function isConnectionAlive(redis: Redis, id: string): Promise<boolean | undefined> {
  if (!/^\d+$/.test(id)) return false;
  try {
    const listed = (await redis.client('LIST', 'ID', id)) as unknown as string;
    return listed.trim() !== '';
  } catch {
    return undefined;
  }
}

/** Whether Redis keeps its data across a restart (AOF or RDB save points); undefined where CONFIG is disabled. */
export async function redisPersists(redis: Redis): Promise<boolean | undefined> {
  try {
    const aof = ((await redis.config('GET', 'appendonly')) as unknown as string[])[1];
    const save = ((await redis.config('GET', 'save')) as unknown as string[])[1];
    return aof === 'yes' || (save !== undefined && save.trim() !== '');
  } catch {
    return undefined;
  }
}

/** How long the Redis server has been up, in ms (INFO server), or undefined. */
export async function redisUptimeMs(redis: Redis): Promise<number | undefined> {
  try {
    const info = await redis.info('server');
    const seconds = /uptime_in_seconds:(\d+)/.exec(info)?.[1];
    return seconds === undefined ? undefined : Number(seconds) * 1000;
  } catch {
    return undefined;
  }
}

/**
 * A Redis that keeps nothing on disk loses every batch, queued row and result when it restarts.
 * Says so at start, like the eviction check.
 */
export async function checkPersistence(redis: Redis, log: Logger): Promise<void> {
  if ((await redisPersists(redis)) === false) {
    log.warn(
      'Redis keeps nothing on disk (appendonly no, no RDB save points): a restart loses every batch, queued row and result. ' +
        'Turn on AOF (CONFIG SET appendonly yes, or in redis.conf) for batches you cannot redo.',
    );
  }
}
