/**
 * Delay before retry number `attempt` (1 = the first retry): exponential, capped, with "equal
 * jitter" (half fixed, half random) so retries spread out but never bunch at zero. A Retry-After
 * from fal is a floor.
 */
export function retryDelay(attempt: number, policy: { baseMs: number; maxMs: number }, retryAfterMs?: number, random: () => number = Math.random): number {
  const exponential = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.round(exponential / 2 + random() * (exponential / 2));
  return Math.max(jittered, Math.round(retryAfterMs ?? 0));
}

/**
 * How long the whole queue waits after a 429: exactly what fal asked for (Retry-After, at least
 * 50 ms), so a storm of 429s costs no more than fal's own pauses; without Retry-After, backoff
 * with jitter, growing with the length of the row's run of 429s.
 */
export function rateLimitDelay(
  retryAfterMs: number | undefined,
  runMs: number,
  policy: { baseMs: number; maxMs: number },
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.max(50, Math.round(retryAfterMs));
  const attempt = 1 + Math.floor(Math.log2(1 + Math.max(0, runMs) / policy.baseMs));
  return retryDelay(attempt, policy, undefined, random);
}
