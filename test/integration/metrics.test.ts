import { describe, expect, it, onTestFinished } from 'vitest';
import { resolvePrice } from '../../src/fal/pricing.js';
import { createWorkerMetrics } from '../../src/metrics/worker-metrics.js';
import { cancelBatch } from '../../src/ops/control.js';
import { retryFailed } from '../../src/ops/retry.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { createHarness, spawnCli, until } from '../helpers/harness.js';

/** Prometheus' text format → `name{label="value",…}` (labels sorted) → value. Comments and HELP/TYPE lines skipped. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    samples.set(labels.length > 0 ? `${match[1]}{${labels.join(',')}}` : (match[1] ?? ''), Number(match[3]));
  }
  return samples;
}

/** The sum of every sample of a metric, whatever its labels. */
function total(samples: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [key, value] of samples) if (key === name || key.startsWith(`${name}{`)) sum += value;
  return sum;
}

describe('worker metrics', () => {
  it('work --metrics-port serves Prometheus counters that match the batch: ok/failed, 429s, retries, billed seconds, spend', async () => {
    const h = await createHarness({
      emulator: { faults: ['model-error=1x3', '429@submit=1x1', '503@submit=1x1'], latency: '20..60ms', runners: 3, retryAfterSeconds: 1 },
    });
    const rows = Array.from({ length: 12 }, (_, i) => `r${i},https://example.com/${i}.jpg,Describe image ${i}`);
    const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', ['id,image_url,prompt', ...rows].join('\n')) });
    const worker = spawnCli(['work', '--metrics-port', '0', '--concurrency', '4', '--grace', '5s'], h.env());
    onTestFinished(async () => {
      if (worker.child.exitCode === null) {
        worker.child.kill('SIGKILL');
        await worker.exited;
      }
    });
    let url = '';
    await until('the metrics URL in the log', () => {
      url = /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(worker.output())?.[1] ?? '';
      return url !== '';
    });
    const status = await waitForBatch(h.ctx, batch, { intervalMs: 50 });
    expect(status).toMatchObject({ ok: 9, failed: 3, pending: 0 });

    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    const samples = parseMetrics(text);
    expect(samples.get('falbatch_jobs_total{status="ok"}')).toBe(status.ok);
    expect(samples.get('falbatch_jobs_total{status="failed"}')).toBe(status.failed);
    expect(samples.get('falbatch_rate_limited_total')).toBeGreaterThanOrEqual(1);
    expect(total(samples, 'falbatch_retries_total')).toBeGreaterThanOrEqual(1);
    expect(samples.get('falbatch_inflight')).toBe(0);
    // Billed: fal's inference time over every call fal ran, model errors included (status counts it per row, in ms).
    const billed = samples.get('falbatch_billed_seconds_total') ?? 0;
    expect(billed).toBeGreaterThan(0);
    expect(billed).toBeCloseTo(status.inferenceSeconds, 2);
    const { price } = await resolvePrice(h.config, 'fal-ai/llava-next');
    expect(price).toMatchObject({ unit: 'second', currency: 'USD' });
    expect(samples.get('falbatch_spend_usd_total')).toBeCloseTo(billed * (price?.amount ?? 0), 9);
    // Latency histograms: one observation per answer fal gave.
    const answered = status.latencyMs.inference?.count ?? 0;
    expect(answered).toBe(status.ok);
    expect(samples.get('falbatch_fal_latency_seconds_count{phase="inference"}')).toBe(answered);
    expect(samples.get('falbatch_fal_latency_seconds_count{phase="queue"}')).toBe(status.latencyMs.queueWait?.count);
    // The ok answers' inference time, within the billed seconds (model errors are billed too, not observed).
    const observed = samples.get('falbatch_fal_latency_seconds_sum{phase="inference"}') ?? 0;
    expect(observed).toBeGreaterThan(0);
    expect(observed).toBeLessThanOrEqual(billed + 1e-9);
    expect(samples.get('falbatch_fal_latency_seconds_bucket{le="+Inf",phase="inference"}')).toBe(answered);
    // prom-client's HELP says when spend stays 0.
    expect(text).toContain('# HELP falbatch_spend_usd_total');
    expect(text).toMatch(/falbatch_spend_usd_total .*Stays 0/);
    // The process' own metrics come along.
    expect(text).toContain('process_cpu_user_seconds_total');
    expect((await fetch(url.replace(/\/metrics$/, '/'))).status).toBe(404);

    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(worker.output()).toContain('worker stopped: 9 ok, 3 failed');
  });

  it('counts only what it is told, in a registry of its own; without a price, spend stays 0', async () => {
    const a = createWorkerMetrics();
    const b = createWorkerMetrics();
    a.onEvent({
      type: 'recorded',
      result: {
        status: 'ok',
        attempts: 1,
        endpoint: 'x/y',
        request_id: 'r1',
        inference_s: 1.5,
        latency_ms: 2500,
        submitted_at: 0,
        started_at: 700,
        finished_at: 2500,
      },
    });
    a.onEvent({ type: 'recorded', result: { status: 'ok', attempts: 0, endpoint: 'x/y', cached: true, finished_at: 1 } });
    a.onEvent({ type: 'retried', reason: 'server_error' });
    a.onEvent({ type: 'row-started' });
    const one = parseMetrics(await a.text());
    const other = parseMetrics(await b.text());
    expect(one.get('falbatch_jobs_total{status="ok"}')).toBe(2);
    expect(one.get('falbatch_billed_seconds_total')).toBe(1.5);
    expect(one.get('falbatch_spend_usd_total')).toBe(0);
    expect(one.get('falbatch_retries_total{reason="server_error"}')).toBe(1);
    expect(one.get('falbatch_inflight')).toBe(1);
    expect(one.get('falbatch_fal_latency_seconds_sum{phase="queue"}')).toBeCloseTo(0.7, 9);
    expect(one.get('falbatch_fal_latency_seconds_count{phase="queue"}')).toBe(1);
    expect(other.get('falbatch_jobs_total{status="ok"}')).toBe(0);
    expect(other.has('process_cpu_user_seconds_total')).toBe(false);

    const priced = createWorkerMetrics({ priceOf: async () => ({ unit: 'call', amount: 0.002, currency: 'USD', source: 'flag' }) });
    priced.onEvent({ type: 'recorded', result: { status: 'failed', attempts: 1, endpoint: 'x/y', request_id: 'r2', inference_s: 0.4, finished_at: 1 } });
    priced.onEvent({ type: 'recorded', result: { status: 'failed', attempts: 1, endpoint: 'x/y', finished_at: 1 } });
    const spent = parseMetrics(await priced.text());
    // A model error ran on fal's GPUs (billed); a failed submit did not.
    expect(spent.get('falbatch_spend_usd_total')).toBeCloseTo(0.002, 9);
    expect(spent.get('falbatch_jobs_total{status="failed"}')).toBe(2);
  });

  it('falbatch_jobs_total counts each row ending, as the README says: a cancel, its retry and an edit each count', async () => {
    const h = await createHarness();
    const manifestOf = (last: string): string =>
      h.file('m.csv', `id,image_url,prompt\na,https://example.com/a.jpg,one\nb,https://example.com/b.jpg,two\nc,https://example.com/c.jpg,${last}\n`);
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf('three'), batch: 'counted' });
    await cancelBatch(h.ctx, batch);
    const metrics = createWorkerMetrics();
    const worker = await h.startWorker({ concurrency: 2, onEvent: metrics.onEvent });
    try {
      const ended = async (ok: number, failed: number): Promise<void> =>
        until(`status ${ok} ok, ${failed} failed`, async () => {
          const status = await getStatus(h.ctx, batch);
          return status.finished && status.ok === ok && status.failed === failed;
        });
      const jobsTotal = async (): Promise<[number | undefined, number | undefined]> => {
        const samples = parseMetrics(await metrics.text());
        return [samples.get('falbatch_jobs_total{status="ok"}'), samples.get('falbatch_jobs_total{status="failed"}')];
      };
      await ended(0, 3);
      expect(await jobsTotal()).toEqual([0, 3]);
      // Retried: each row ends again, ok. status counts the rows as they are now; the counter, each ending.
      await retryFailed(h.ctx, { batch, errorType: 'cancelled' });
      await ended(3, 0);
      expect(await jobsTotal()).toEqual([3, 3]);
      // An edited row: its new answer is one more ending; status still counts the row once.
      await enqueueManifest(h.ctx, { manifest: manifestOf('three again'), batch });
      await ended(3, 0);
      expect(h.emulator.stats().submits).toBe(4);
      expect(await jobsTotal()).toEqual([4, 3]);
    } finally {
      await worker.close();
    }
  });
});
