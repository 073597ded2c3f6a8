import type { Registry } from 'prom-client';
import { requireDependency } from '../load-dependency.js';
import { isBilled, timingOf } from '../results/batch-figures.js';
import { costOf, type Price } from '../fal/price.js';
import type { WorkerEvent, WorkerEventListener } from '../worker/worker-events.js';

export interface WorkerMetricsOptions {
  /**
   * What an endpoint costs, for `falbatch_spend_usd_total`. Asked once per endpoint. Default:
   * nothing is priced and spend stays 0.
   */
  priceOf?: (endpoint: string) => Promise<Price | undefined>;
  /**
   * Also Node's process metrics (CPU, memory, event loop lag, …: prom-client's defaults, names
   * `process_*` and `nodejs_*`). Worth it in a process that only works; they keep an event-loop
   * monitor running, so a library user embedding several workers may leave them out.
   * @default false
   */
  processMetrics?: boolean;
}

/** Prometheus metrics of one worker, in a registry of its own (never prom-client's global one). */
export interface WorkerMetrics {
  readonly registry: Registry;
  /** Give to startWorker's `onEvent`. */
  readonly onEvent: WorkerEventListener;
  /** The metrics in Prometheus' text format, once every spend already told is priced. */
  text(): Promise<string>;
}

/** Seconds buckets for fal's queue wait and inference time: from 100 ms to 15 min. */
const SECONDS_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 900];

/**
 * Counters a worker keeps as rows end, for Prometheus. Counted per worker process, from what this
 * worker did (rows other workers finished are theirs); figures are the ones `status` shows per
 * batch (see results/batch-figures.ts): billed = fal answered it (not reused) or reported inference
 * time for its failure; queue wait and inference from the row's result.
 */
export function createWorkerMetrics(options: WorkerMetricsOptions = {}): WorkerMetrics {
  // Required here, synchronously (this function is): only a worker serving metrics loads prom-client.
  const { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } = requireDependency<typeof import('prom-client')>(
    'prom-client',
    'Prometheus metrics (--metrics-port)',
  );
  const registry = new Registry();
  const registers = [registry];
  if (options.processMetrics) collectDefaultMetrics({ register: registry });

  const jobs = new Counter({
    name: 'falbatch_jobs_total',
    help: 'Results this worker recorded, one per row ending: ok (fal answered, or an identical paid row did) or failed (for good, cancelled included); a row ended again after falbatch retry or an edit counts again',
    labelNames: ['status'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'falbatch_fal_latency_seconds',
    help: 'fal timing of the rows this worker got answers for: queue = submitted to started (or latency minus inference when the start was not seen), inference = fal metrics.inference_time',
    labelNames: ['phase'] as const,
    buckets: SECONDS_BUCKETS,
    registers,
  });
  const retries = new Counter({
    name: 'falbatch_retries_total',
    help: 'Attempts that failed and will be tried again, by error class (error_type; result_reread: a paid result whose read failed, read again later)',
    labelNames: ['reason'] as const,
    registers,
  });
  const rateLimited = new Counter({ name: 'falbatch_rate_limited_total', help: '429 answers from fal (the queue waits; no attempt is spent)', registers });
  const inflight = new Gauge({ name: 'falbatch_inflight', help: 'Rows this worker is processing now', registers });
  const billedSeconds = new Counter({
    name: 'falbatch_billed_seconds_total',
    help: "Sum of fal's metrics.inference_time over the calls this worker made (what per-second endpoints bill)",
    registers,
  });
  // Spend is priced asynchronously (a price may have to be asked of fal): a scrape waits for it.
  const pricing = new Set<Promise<void>>();
  const spend = new Counter({
    name: 'falbatch_spend_usd_total',
    help: "Estimated spend in USD of the calls this worker made: billed seconds (or calls) times the endpoint's price (--price, or fal's pricing API). Stays 0 for endpoints without a known price in USD. An estimate: fal's invoice decides",
    registers,
    async collect() {
      await Promise.all([...pricing]);
    },
  });
  jobs.inc({ status: 'ok' }, 0);
  jobs.inc({ status: 'failed' }, 0);
  latency.zero({ phase: 'queue' });
  latency.zero({ phase: 'inference' });

  const prices = new Map<string, Promise<Price | undefined>>();
  const priceOf = (endpoint: string): Promise<Price | undefined> => {
    let price = prices.get(endpoint);
    if (!price) {
      price = options.priceOf ? options.priceOf(endpoint).catch(() => undefined) : Promise.resolve(undefined);
      prices.set(endpoint, price);
    }
    return price;
  };

  const onEvent = (event: WorkerEvent): void => {
    switch (event.type) {
      case 'recorded': {
        const { result } = event;
        jobs.inc({ status: result.status });
        const timing = timingOf(result);
        if (timing?.queueWaitMs !== undefined) latency.observe({ phase: 'queue' }, timing.queueWaitMs / 1000);
        if (timing?.inferenceMs !== undefined) latency.observe({ phase: 'inference' }, timing.inferenceMs / 1000);
        const seconds = result.inference_s !== undefined && !result.cached ? result.inference_s : 0;
        if (seconds > 0) billedSeconds.inc(seconds);
        const calls = isBilled(result) ? 1 : 0;
        if (calls > 0 || seconds > 0) {
          const priced = priceOf(result.endpoint).then((price) => {
            if (price?.currency === 'USD') spend.inc(costOf(price, { calls, inferenceSeconds: seconds }));
          });
          pricing.add(priced);
          void priced.finally(() => pricing.delete(priced));
        }
        return;
      }
      case 'retried':
        retries.inc({ reason: event.reason });
        return;
      case 'rate-limited':
        rateLimited.inc();
        return;
      case 'row-started':
        inflight.inc();
        return;
      case 'row-settled':
        inflight.dec();
        return;
    }
  };

  return { registry, onEvent, text: () => registry.metrics() };
}
