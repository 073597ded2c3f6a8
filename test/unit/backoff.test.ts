import { describe, expect, it } from 'vitest';
import { rateLimitDelay, retryDelay } from '../../src/fal/backoff.js';

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

describe('rateLimitDelay (how long the whole queue waits after a 429)', () => {
  it('waits exactly the Retry-After fal asked for, not the retry backoff on top', () => {
    expect(rateLimitDelay(1000, 0, { baseMs: 2000, maxMs: 120_000 }, () => 1)).toBe(1000);
    expect(rateLimitDelay(7000, 60_000, policy, () => 1)).toBe(7000);
    // An HTTP date already passed, or Retry-After: 0: a token pause, not a busy loop.
    expect(rateLimitDelay(0, 0, policy, () => 1)).toBe(50);
  });

  it.each([
    [0, 1, 1000],
    [999, 1, 1000],
    [1000, 1, 2000],
    [3000, 1, 4000],
    [600_000, 1, 60_000],
  ])('without Retry-After, a run of 429s %i ms long (random %f) waits %i ms', (runMs, random, expected) => {
    expect(rateLimitDelay(undefined, runMs, policy, () => random)).toBe(expected);
  });
});
