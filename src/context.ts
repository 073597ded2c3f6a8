import { reportRedisError } from './queue/redis-outage.js';
import type { Queue } from 'bullmq';
import { secretsOf, type ResolvedConfig } from './config.js';
import { createScrubber, silentLogger, type Logger } from './log.js';
import { checkMemory } from './queue/check-memory.js';
import { checkEvictionPolicy, checkPersistence, checkServerMode, connectRedis, type RedisClient } from './queue/connection.js';
import { createKeyLayout, type KeyLayout } from './queue/keys.js';
import { bullmq } from './queue/cjs-packages.js';
import { createResultStore, type ResultStore } from './results/result-store.js';
import { createObjectStore, type ObjectStore } from './storage/object-store.js';
import { systemClock, type Clock } from './time.js';

/** One connection to one falbatch namespace: what every library entry point works with. */
export interface FalbatchContext {
  readonly config: ResolvedConfig;
  /** One Redis, or a Redis Cluster (config.redisCluster): server-level commands go through queue/connection.ts. */
  readonly redis: RedisClient;
  readonly keys: KeyLayout;
  /**
   * The BullMQ queue rows travel on. Made (and BullMQ loaded) on first use: commands that only
   * read falbatch's own keys (`status`) never pay for it.
   */
  readonly queue: Queue;
  readonly store: ResultStore;
  readonly log: Logger;
  readonly clock: Clock;
  /** Removes secrets (FAL_KEY, Redis password) from text bound for logs, Redis or files. */
  readonly scrub: (text: string) => string;
  /** The object store for s3:// locations (config.s3Endpoint, the AWS chain): made, and the SDK loaded, on first use. */
  objects(): ObjectStore;
  close(): Promise<void>;
}

export interface OpenContextOptions {
  log?: Logger;
  clock?: Clock;
  /** The object store for s3:// locations. Default: one from config.s3Endpoint and the AWS credential chain. */
  objects?: ObjectStore;
}

/** Connects to Redis (failing fast with a clear message when it is not there); the queue is opened when first used. */
export async function openContext(config: ResolvedConfig, options: OpenContextOptions = {}): Promise<FalbatchContext> {
  const log = options.log ?? silentLogger;
  const keys = createKeyLayout(config.prefix, config.queue);
  const redis = await connectRedis(config.redisUrl, { log, cluster: config.redisCluster, home: keys.batches });
  try {
    // Together: one round trip of pipelined commands rather than one each.
    await Promise.all([checkServerMode(redis, config.redisUrl), checkEvictionPolicy(redis, log), checkPersistence(redis, log), checkMemory(redis, log)]);
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  const scrub = createScrubber(secretsOf(config));
  let queue: Queue | undefined;
  let closed: Promise<void> | undefined;
  let objects = options.objects;
  return {
    config,
    redis,
    keys,
    get queue() {
      if (!queue) {
        queue = new (bullmq().Queue)(keys.queueName, { connection: redis, prefix: keys.bullPrefix });
        queue.on('error', (error) => reportRedisError(redis, log, 'queue', error, scrub));
      }
      return queue;
    },
    store: createResultStore(redis, keys, config),
    log,
    clock: options.clock ?? systemClock,
    scrub,
    objects: () => (objects ??= createObjectStore({ endpoint: config.s3Endpoint })),
    close() {
      closed ??= (async () => {
        if (!options.objects) objects?.close();
        await queue?.close();
        // The connection was handed to BullMQ, which does not own it: quit it here or the process hangs.
        await redis.quit().catch(() => redis.disconnect());
      })();
      return closed;
    },
  };
}
