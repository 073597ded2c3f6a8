import { createServer } from 'node:http';
import type { FalbatchContext } from '../context.js';
import { resolvePrice } from '../fal/pricing.js';
import { listen } from '../http-server.js';
import type { Price } from '../fal/price.js';
import type { WorkerEventListener } from '../worker/worker-events.js';
import { createWorkerMetrics } from './worker-metrics.js';

export interface MetricsServerOptions {
  /**
   * Interface to bind. Metrics carry no secrets (counts, timings, spend), so any interface is
   * allowed: Prometheus usually scrapes from another machine.
   * @default '127.0.0.1'
   */
  host?: string;
  /** Port; 0 picks a free one (see `url`). */
  port: number;
  /** Node's process metrics too (CPU, memory, event loop). @default true */
  processMetrics?: boolean;
}

export interface MetricsServer {
  /** `http://host:port/metrics`. */
  readonly url: string;
  /** Give to startWorker's `onEvent`. */
  readonly onEvent: WorkerEventListener;
  close(): Promise<void>;
}

/**
 * Serves a worker's Prometheus metrics on `/metrics` (see metrics/worker-metrics.ts for what they
 * count). Spend is priced per endpoint with the same price `status` uses (`--price`, else fal's
 * pricing API); the default endpoint's price is asked now, and its absence logged.
 */
export async function startMetricsServer(ctx: FalbatchContext, options: MetricsServerOptions): Promise<MetricsServer> {
  const { config, log } = ctx;
  const prices = new Map<string, Promise<Price | undefined>>();
  const priceOf = (endpoint: string): Promise<Price | undefined> => {
    let price = prices.get(endpoint);
    if (!price) {
      price = resolvePrice(config, endpoint).then(({ price: found, note }) => {
        if (!found) log.warn(`metrics: ${note ?? `no price for ${endpoint}`}; falbatch_spend_usd_total leaves out ${endpoint}`);
        else if (found.currency !== 'USD') log.warn(`metrics: ${endpoint} is priced in ${found.currency}; falbatch_spend_usd_total leaves it out`);
        return found;
      });
      prices.set(endpoint, price);
    }
    return price;
  };
  // The default endpoint's price is asked now, so that a missing one is said at start.
  await priceOf(config.endpoint);
  const metrics = createWorkerMetrics({ priceOf, processMetrics: options.processMetrics ?? true });
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('falbatch serves its metrics on /metrics\n');
      return;
    }
    metrics.text().then(
      (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(request.method === 'HEAD' ? undefined : text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${(error as Error).message}\n`),
    );
  });
  const listening = await listen(server, { host: options.host ?? '127.0.0.1', port: options.port, portFlag: '--metrics-port' });
  return { url: `${listening.url}/metrics`, onEvent: metrics.onEvent, close: () => listening.close() };
}
