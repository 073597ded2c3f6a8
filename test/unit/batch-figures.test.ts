import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addToAggregate,
  aggregateFromStats,
  bucketOf,
  bucketValue,
  emptyAggregate,
  figuresOf,
  PERCENTILE_ERROR,
  percentilesOf,
  RATE_SLOT_MS,
  rateFromStats,
  statsIncrements,
  timingOf,
  type Histogram,
} from '../../src/results/batch-figures.js';
import type { RowResult } from '../../src/results/row-result.js';

const ok = (fields: Partial<RowResult> = {}): RowResult => ({
  status: 'ok',
  output: 'x',
  attempts: 1,
  endpoint: 'e',
  request_id: 'r',
  finished_at: 0,
  ...fields,
});

function exactPercentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1] as number;
}

describe('latency histograms', () => {
  it('a bucket stands for every value in it within PERCENTILE_ERROR (±9.1 %)', () => {
    expect(PERCENTILE_ERROR).toBeCloseTo(0.0905, 4);
    fc.assert(
      fc.property(fc.double({ min: 1.001, max: 1e8, noNaN: true }), (ms) => {
        expect(Math.abs(bucketValue(bucketOf(ms)) / ms - 1)).toBeLessThanOrEqual(PERCENTILE_ERROR + 1e-9);
      }),
    );
  });

  it('p50 and p95 read from a histogram are within PERCENTILE_ERROR (plus rounding to 1 ms) of the exact nearest-rank percentiles', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 2, max: 3_600_000 }), { minLength: 1, maxLength: 300 }), (values) => {
        const histogram: Histogram = new Map();
        for (const v of values) histogram.set(bucketOf(v), (histogram.get(bucketOf(v)) ?? 0) + 1);
        const read = percentilesOf(histogram);
        expect(read?.count).toBe(values.length);
        for (const [p, got] of [
          [0.5, read?.p50Ms],
          [0.95, read?.p95Ms],
        ] as const) {
          const exact = exactPercentile(values, p);
          expect(Math.abs((got ?? 0) - exact)).toBeLessThanOrEqual(exact * PERCENTILE_ERROR + 0.5);
        }
      }),
    );
  });

  it('an empty histogram has no percentiles', () => {
    expect(percentilesOf(new Map())).toBeUndefined();
  });
});

describe('what one ended row adds', () => {
  it.each<[string, RowResult, Array<[string, number]>]>([
    [
      'an answer fal gave, its start seen',
      ok({ latency_ms: 900, submitted_at: 1000, started_at: 1300, inference_s: 0.5 }),
      [
        ['ended', 1],
        ['billed', 1],
        ['inference_ms', 500],
        [`l:${bucketOf(900)}`, 1],
        [`w:${bucketOf(300)}`, 1],
        [`i:${bucketOf(500)}`, 1],
      ],
    ],
    [
      'an answer whose start was not seen: queue wait = latency − inference',
      ok({ latency_ms: 900, submitted_at: 1000, inference_s: 0.5, partial: true }),
      [
        ['ended', 1],
        ['partial', 1],
        ['billed', 1],
        ['inference_ms', 500],
        [`l:${bucketOf(900)}`, 1],
        [`w:${bucketOf(400)}`, 1],
        [`i:${bucketOf(500)}`, 1],
      ],
    ],
    [
      'an answer reused from an identical row: free, no timing',
      ok({ attempts: 0, cached: true }),
      [
        ['ended', 1],
        ['reused', 1],
      ],
    ],
    [
      'a model error fal ran (billed)',
      { status: 'failed', error: 'm', error_type: 'model_error', attempts: 1, endpoint: 'e', finished_at: 0, latency_ms: 700, inference_s: 0.25 },
      [
        ['ended', 1],
        ['billed', 1],
        ['inference_ms', 250],
      ],
    ],
    ['a failure fal never ran', { status: 'failed', error: 'x', attempts: 5, endpoint: 'e', finished_at: 0 }, [['ended', 1]]],
  ])('%s', (_, result, increments) => {
    expect(statsIncrements(result)).toEqual(increments);
  });

  it('the aggregate kept in Redis and the one summed from results are the same figures', () => {
    const results = [
      ok({ latency_ms: 900, submitted_at: 0, started_at: 100, inference_s: 0.7 }),
      ok({ cached: true }),
      ok({ latency_ms: 3000, inference_s: 1.2 }),
    ];
    const summed = emptyAggregate();
    const hash: Record<string, string> = {};
    for (const result of results) {
      addToAggregate(summed, result);
      for (const [field, n] of statsIncrements(result)) hash[field] = String(Number(hash[field] ?? 0) + n);
    }
    const price = { unit: 'second', amount: 0.001, currency: 'USD', source: 'flag' } as const;
    expect(figuresOf(aggregateFromStats(hash), price)).toEqual(figuresOf(summed, price));
    expect(figuresOf(summed, price)).toMatchObject({ inferenceSeconds: 1.9, billedCalls: 2, reused: 1, cost: { amount: expect.closeTo(0.0019, 9) } });
    expect(timingOf(ok({ cached: true }))).toBeUndefined();
  });
});

describe('the rate over the last minute', () => {
  const now = 1_000_000 * RATE_SLOT_MS + 4_000; // 4 s into a slot
  const slot = Math.floor(now / RATE_SLOT_MS);
  const ring = (entries: Array<[number, number]>): Record<string, string> =>
    Object.fromEntries(
      entries.flatMap(([s, n]) => [
        [`rt:${s % 8}`, String(s)],
        [`r:${s % 8}`, String(n)],
      ]),
    );

  it('counts the current slot and the five before it, over the time they span', () => {
    // 6 slots: 54 s of the window has elapsed.
    const hash = ring([
      [slot, 9],
      [slot - 1, 9],
      [slot - 5, 9],
      [slot - 6, 100],
      [slot - 7, 100],
    ]);
    expect(rateFromStats(hash, now, 0)).toBeCloseTo((27 * 60_000) / 54_000, 6);
  });

  it('counts since the batch began when that is later', () => {
    expect(rateFromStats(ring([[slot, 10]]), now, now - 20_000)).toBeCloseTo(30, 6);
  });

  it('is 0 when nothing ended lately', () => {
    expect(rateFromStats(ring([[slot - 7, 50]]), now, 0)).toBe(0);
    expect(rateFromStats({}, now, 0)).toBe(0);
  });
});
