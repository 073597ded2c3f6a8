import { REDIS_MEMORY_ADVICE } from '../errors.js';
import type { Logger } from '../log.js';
import { homeNode, type RedisClient } from './connection.js';

/** Above this share of its maxmemory, Redis is said to be nearly full. */
const NEARLY_FULL = 0.9;

/** `1.5 GB`, `300 MB`: for a person. */
function bytes(n: number): string {
  for (const [unit, size] of [
    ['GB', 1024 ** 3],
    ['MB', 1024 ** 2],
    ['KB', 1024],
  ] as const) {
    if (n >= size) return `${(n / size).toFixed(n >= 10 * size ? 0 : 1)} ${unit}`;
  }
  return `${n} B`;
}

/**
 * Says, when a command connects, that the namespace's Redis is out of memory (it refuses writes:
 * nothing can be enqueued or recorded, workers wait) or nearly so, and what frees room. Quiet
 * without a maxmemory, or where INFO is not allowed.
 */
export async function checkMemory(redis: RedisClient, log: Logger): Promise<void> {
  let info: string;
  try {
    const node = await homeNode(redis);
    if (!node) return;
    info = await node.info('memory');
  } catch {
    return;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  const used = field('used_memory');
  const max = field('maxmemory');
  if (max <= 0) return;
  if (used >= max) {
    log.warn(
      `Redis is out of memory (${bytes(used)} used of its maxmemory ${bytes(max)}): it refuses writes, so nothing can be enqueued or recorded, and workers wait until it has room. ${REDIS_MEMORY_ADVICE}`,
    );
  } else if (used >= NEARLY_FULL * max) {
    log.warn(
      `Redis is nearly full (${bytes(used)} used of its maxmemory ${bytes(max)}): once full it refuses writes, and batches stop until it has room. ${REDIS_MEMORY_ADVICE}`,
    );
  }
}
