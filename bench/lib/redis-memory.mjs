// What Redis holds, as the benchmarks measure it.

/** INFO's used_memory: the whole server (whatever else shares it counts too). */
export async function usedMemory(redis) {
  return Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1] ?? 0);
}

/**
 * Bytes Redis holds for a prefix: MEMORY USAGE over its keys (exact whatever else shares the
 * Redis), and, given `kindOf(key without the prefix)`, the bytes and keys of each kind.
 */
export async function memoryOf(redis, prefix, kindOf = undefined) {
  let bytes = 0;
  let keys = 0;
  const kinds = new Map();
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (found.length === 0) continue;
    const pipeline = redis.pipeline();
    for (const key of found) pipeline.memory('USAGE', key, 'SAMPLES', '0');
    const replies = (await pipeline.exec()) ?? [];
    replies.forEach(([, used], i) => {
      bytes += Number(used ?? 0);
      if (!kindOf) return;
      const kind = kindOf(found[i].slice(prefix.length + 1));
      const entry = kinds.get(kind) ?? { keys: 0, bytes: 0 };
      entry.keys++;
      entry.bytes += Number(used ?? 0);
      kinds.set(kind, entry);
    });
    keys += found.length;
  } while (cursor !== '0');
  const byKind = [...kinds].map(([kind, entry]) => ({ kind, ...entry })).sort((a, b) => b.bytes - a.bytes);
  return { bytes, keys, byKind };
}
