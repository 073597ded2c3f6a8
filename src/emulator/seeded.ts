/**
 * Seeded, order-independent randomness for the emulator: a decision is a pure function of the
 * seed and the names of what is decided (operation, request, nth call), so the same workload
 * meets the same faults and latencies however its requests interleave.
 */
export function unitHash(seed: number, ...parts: Array<string | number>): number {
  // cyrb53 over the joined parts: fast, well mixed, 53 bits.
  const text = parts.join('\u0000');
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  const n = 4294967296 * (2097151 & h2) + (h1 >>> 0);
  return n / 9007199254740992;
}
