import type { ChainableCommander } from 'ioredis';
import { isRedisOutOfMemory } from '../errors.js';
import type { RedisClient } from './connection.js';

/**
 * Runs commands in one MULTI, or, when Redis is out of memory, in one pipeline: a full Redis
 * refuses every command queued in a MULTI, reads and deletes too, yet still runs them one by one.
 * The pipeline keeps their order but not their isolation (another client may act between two of
 * them), which the callers tolerate: so `status`, the commands waiting on a batch, and `prune`
 * (what frees room) work while Redis is full.
 */
export async function runTogether(redis: RedisClient, commands: (batch: ChainableCommander) => ChainableCommander): Promise<Array<[Error | null, unknown]>> {
  try {
    return (await commands(redis.multi()).exec()) ?? [];
  } catch (error) {
    if (!isRedisOutOfMemory(error)) throw error;
    return (await commands(redis.pipeline()).exec()) ?? [];
  }
}
