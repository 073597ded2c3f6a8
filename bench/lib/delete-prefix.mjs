// Deletes every key a benchmark wrote under its prefix (benchmarks own their prefix).
import { Redis } from 'ioredis';

export async function deletePrefix(url, prefix) {
  const redis = new Redis(url);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}
