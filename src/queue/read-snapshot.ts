import type { ChainableCommander } from 'ioredis';
import { isRedisOutOfMemory } from '../errors.js';
import type { RedisClient } from './connection.js';

/**
 * Reads in one snapshot (a MULTI of reads), or, when Redis is out of memory (it refuses every
 * MULTI then, reads too, yet still serves the reads), in one pipeline: what a row does between two
 * of its reads may show, which the callers tolerate. So `status` and the commands waiting on a
 * batch go on while workers wait for room.
 */
export async function readSnapshot(redis: RedisClient, reads: (commands: ChainableCommander) => ChainableCommander): Promise<Array<[Error | null, unknown]>> {
  try {
    return (await reads(redis.multi()).exec()) ?? [];
  } catch (error) {
    if (!isRedisOutOfMemory(error)) throw error;
    return (await reads(redis.pipeline()).exec()) ?? [];
  }
}
