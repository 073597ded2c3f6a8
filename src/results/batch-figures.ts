import { costOf, type Price } from '../fal/price.js';
import type { RowResult } from './row-result.js';

/**
 * Figures of a batch that a user needs to trust a run and plan the next: latency split into queue
 * wait and inference, billed inference seconds, cost, throughput. Computed the same way from two
 * sources: the aggregates kept in Redis as rows end (`status`, O(1) in the batch size), and the
 * stored results themselves (the report written beside an export).
 *
 * Latency distributions are histograms with log-spaced buckets: bucket k holds the values from
 * 2^(k/4) ms to 2^((k+1)/4) ms, so a 1-hour latency is bucket 87 and a histogram never has more
 * than ~100 fields. A percentile is read as the geometric middle of its bucket: within
 * PERCENTILE_ERROR (±9.1 %) of the exact nearest-rank percentile.
 */

/** Buckets per doubling of the value. */
export const BUCKETS_PER_DOUBLING = 4;
/** Largest relative error of a percentile read from a histogram (half a bucket): 2^(1/8) − 1 ≈ 0.0905. */
export const PERCENTILE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1;

/** The rate over the last minute is kept in a ring of RATE_SLOTS slots of RATE_SLOT_MS each. */
export const RATE_SLOT_MS = 10_000;
export const RATE_SLOTS = 8;
/** Slots that make up the last minute (the current one, partly elapsed, and the five before it). */
const RATE_WINDOW_SLOTS = 6;

/** The histogram bucket of a value in ms (values up to 1 ms fall in bucket 0). */
export function bucketOf(ms: number): number {
  if (!(ms > 1)) return 0;
  return Math.floor(Math.log2(ms) * BUCKETS_PER_DOUBLING);
}

/** The value a bucket stands for: its geometric middle. */
export function bucketValue(bucket: number): number {
  return 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING);
}

/** Bucket → count. */
export type Histogram = Map<number, number>;

export interface Percentiles {
  /** Values counted. */
  count: number;
  /** Median, ms (within ±9.1 %). */
  p50Ms: number;
  /** 95th percentile, ms (within ±9.1 %). */
  p95Ms: number;
}

function percentileOf(histogram: Histogram, sorted: number[], total: number, p: number): number {
  // Nearest rank: the smallest value with at least p of the values at or below it.
  const rank = Math.max(1, Math.ceil(p * total));
  let seen = 0;
  for (const bucket of sorted) {
    seen += histogram.get(bucket) ?? 0;
    if (seen >= rank) return Math.round(bucketValue(bucket));
  }
  return Math.round(bucketValue(sorted.at(-1) ?? 0));
}

export function percentilesOf(histogram: Histogram): Percentiles | undefined {
  let total = 0;
  for (const count of histogram.values()) total += count;
  if (total <= 0) return undefined;
  const sorted = [...histogram.keys()].filter((bucket) => (histogram.get(bucket) ?? 0) > 0).sort((a, b) => a - b);
  return { count: total, p50Ms: percentileOf(histogram, sorted, total, 0.5), p95Ms: percentileOf(histogram, sorted, total, 0.95) };
}

/** How long one row took, split. Only rows fal answered (ok, not reused) have a timing. */
export interface RowTiming {
  /** From submit to the stored result (RowResult.latency_ms), fal's queue included. */
  latencyMs: number;
  /**
   * From submit until fal started running the request: RowResult.started_at (the worker saw it go
   * from IN_QUEUE to IN_PROGRESS); when that was not seen (it was running at the first look),
   * latency − inference.
   */
  queueWaitMs: number | undefined;
  /** fal's metrics.inference_time, in ms. */
  inferenceMs: number | undefined;
}

export function timingOf(result: RowResult): RowTiming | undefined {
  if (result.status !== 'ok' || result.cached || result.latency_ms === undefined) return undefined;
  const latencyMs = result.latency_ms;
  const inferenceMs = result.inference_s === undefined ? undefined : result.inference_s * 1000;
  let queueWaitMs: number | undefined;
  if (result.started_at !== undefined && result.submitted_at !== undefined) queueWaitMs = Math.max(0, result.started_at - result.submitted_at);
  else if (inferenceMs !== undefined) queueWaitMs = Math.max(0, latencyMs - inferenceMs);
  return { latencyMs, queueWaitMs, inferenceMs };
}

/**
 * A call fal bills: an answer fal gave (not one reused from an identical row), or a failure fal
 * reported inference time for (a model error ran on fal's GPUs). An estimate: fal's invoice decides.
 */
export function isBilled(result: RowResult): boolean {
  if (result.cached) return false;
  return result.status === 'ok' ? result.request_id !== undefined : result.inference_s !== undefined;
}

/** Histogram kinds, with their field prefix in the stats hash. */
const KINDS = { total: 'l', queueWait: 'w', inference: 'i' } as const;
type Kind = keyof typeof KINDS;

/** What is summed over a batch's ended rows. */
export interface BatchAggregate {
  /** Row keys ended (ok or failed). */
  ended: number;
  /** Answered from an identical row already paid for. */
  reused: number;
  /** Answers cut at max_tokens. */
  partial: number;
  /** Calls fal bills (see isBilled). */
  billedCalls: number;
  /** Sum of fal's inference time, ms (integers: each row's seconds × 1000, rounded). */
  inferenceMs: number;
  histograms: Record<Kind, Histogram>;
}

export function emptyAggregate(): BatchAggregate {
  return { ended: 0, reused: 0, partial: 0, billedCalls: 0, inferenceMs: 0, histograms: { total: new Map(), queueWait: new Map(), inference: new Map() } };
}

/**
 * The increments one ended row makes to its batch's stats hash (field, amount), applied in the
 * same atomic step that records the result, only when it is the row's first result.
 */
export function statsIncrements(result: RowResult): Array<[string, number]> {
  const fields: Array<[string, number]> = [['ended', 1]];
  if (result.cached) fields.push(['reused', 1]);
  if (result.partial) fields.push(['partial', 1]);
  if (isBilled(result)) fields.push(['billed', 1]);
  if (result.inference_s !== undefined && !result.cached) fields.push(['inference_ms', Math.round(result.inference_s * 1000)]);
  const timing = timingOf(result);
  if (timing) {
    fields.push([`${KINDS.total}:${bucketOf(timing.latencyMs)}`, 1]);
    if (timing.queueWaitMs !== undefined) fields.push([`${KINDS.queueWait}:${bucketOf(timing.queueWaitMs)}`, 1]);
    if (timing.inferenceMs !== undefined) fields.push([`${KINDS.inference}:${bucketOf(timing.inferenceMs)}`, 1]);
  }
  return fields;
}

/** Adds one ended row to an aggregate: the same arithmetic as statsIncrements, in memory. */
export function addToAggregate(aggregate: BatchAggregate, result: RowResult): void {
  applyFields(aggregate, statsIncrements(result));
}

function applyFields(aggregate: BatchAggregate, fields: Iterable<[string, number]>): void {
  for (const [field, amount] of fields) {
    if (field === 'ended') aggregate.ended += amount;
    else if (field === 'reused') aggregate.reused += amount;
    else if (field === 'partial') aggregate.partial += amount;
    else if (field === 'billed') aggregate.billedCalls += amount;
    else if (field === 'inference_ms') aggregate.inferenceMs += amount;
    else {
      const [prefix, bucket] = field.split(':');
      const kind = (Object.keys(KINDS) as Kind[]).find((k) => KINDS[k] === prefix);
      if (kind === undefined || bucket === undefined || !/^\d+$/.test(bucket)) continue;
      const histogram = aggregate.histograms[kind];
      histogram.set(Number(bucket), (histogram.get(Number(bucket)) ?? 0) + amount);
    }
  }
}

/** A batch's stats hash (HGETALL), as an aggregate. */
export function aggregateFromStats(hash: Record<string, string>): BatchAggregate {
  const aggregate = emptyAggregate();
  applyFields(
    aggregate,
    Object.entries(hash).map(([field, value]): [string, number] => [field, Number(value)]),
  );
  return aggregate;
}

/** Rows ended per minute over the last minute, from the rate ring of a stats hash. */
export function rateFromStats(hash: Record<string, string>, now: number, since: number): number {
  const current = Math.floor(now / RATE_SLOT_MS);
  const oldest = current - RATE_WINDOW_SLOTS + 1;
  let ended = 0;
  for (let i = 0; i < RATE_SLOTS; i++) {
    const slot = Number(hash[`rt:${i}`] ?? NaN);
    if (slot >= oldest && slot <= current) ended += Number(hash[`r:${i}`] ?? 0);
  }
  const windowMs = now - Math.max(oldest * RATE_SLOT_MS, since);
  return windowMs > 0 ? (ended * 60_000) / Math.max(windowMs, 1000) : 0;
}

/** What a batch cost so far, estimated from a price. */
export interface CostEstimate {
  amount: number;
  currency: string;
  /** What the price is per: a second of inference, or a call. */
  unit: Price['unit'];
  /** The price per unit. */
  perUnit: number;
  source: Price['source'];
}

export interface Figures {
  /** Percentiles of the rows fal answered in this batch (ok, not reused), in ms. */
  latency: {
    /** From submit to the stored result. */
    total: Percentiles | undefined;
    /** From submit until fal started the request. */
    queueWait: Percentiles | undefined;
    /** fal's inference time. */
    inference: Percentiles | undefined;
  };
  /** Sum of fal's metrics.inference_time over the calls of the batch: what per-second endpoints bill. */
  inferenceSeconds: number;
  /** Calls fal bills: answers fal gave (not reused), and failures fal reported inference time for. */
  billedCalls: number;
  /** Rows answered from an identical row already paid for: free. */
  reused: number;
  /** Answers cut at max_tokens. */
  partial: number;
  /** Estimated cost, when a price is known. */
  cost: CostEstimate | undefined;
}

/** The figures of a batch's calls as status and the report show them (JSON: null where none). */
export interface CallFigures {
  /**
   * p50/p95 in ms (within ±9.1 %) over the rows fal answered (ok, not reused): total (submit →
   * stored result), queue wait (submit → fal started it), inference (fal's inference_time).
   */
  latencyMs: { total: Percentiles | null; queueWait: Percentiles | null; inference: Percentiles | null };
  /** Sum of fal's metrics.inference_time over the batch's calls, seconds: what per-second endpoints bill. */
  inferenceSeconds: number;
  /** Calls fal bills: answers it gave (not reused), and failures it reported inference time for. */
  billedCalls: number;
  /** Rows answered from an identical row already paid for (free). */
  reused: number;
  /** Answers cut at max_tokens. */
  partial: number;
  /** Estimated from the price, when one is known (fal's invoice decides). */
  cost: CostEstimate | null;
}

export function figuresOf(aggregate: BatchAggregate, price: Price | undefined): Figures {
  const inferenceSeconds = aggregate.inferenceMs / 1000;
  return {
    latency: {
      total: percentilesOf(aggregate.histograms.total),
      queueWait: percentilesOf(aggregate.histograms.queueWait),
      inference: percentilesOf(aggregate.histograms.inference),
    },
    inferenceSeconds,
    billedCalls: aggregate.billedCalls,
    reused: aggregate.reused,
    partial: aggregate.partial,
    cost:
      price === undefined
        ? undefined
        : {
            amount: costOf(price, { calls: aggregate.billedCalls, inferenceSeconds }),
            currency: price.currency,
            unit: price.unit,
            perUnit: price.amount,
            source: price.source,
          },
  };
}
