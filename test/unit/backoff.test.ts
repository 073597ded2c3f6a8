import { describe, expect, it } from 'vitest';
import { retryDelay } from '../../src/worker/backoff.js';

const policy = { baseMs: 1000, maxMs: 60_000 };

describe('retryDelay', () => {
  it.each([
    [1, 0, 500],
    [1, 1, 1000],
    [2, 0, 1000],
    [2, 1, 2000],
    [3, 0.5, 3000],
    [7, 0, 30_000],
    [7, 1, 60_000],
    [30, 1, 60_000],
  ])('attempt %i with random %f waits %i ms', (attempt, random, expected) => {
    expect(retryDelay(attempt, policy, undefined, () => random)).toBe(expected);
  });

  it('never waits less than a Retry-After', () => {
    expect(retryDelay(1, policy, 7000, () => 0)).toBe(7000);
    expect(retryDelay(5, policy, 100, () => 1)).toBe(16_000);
  });
});
