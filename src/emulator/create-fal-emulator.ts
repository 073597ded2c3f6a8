import { DEFAULT_PRICES, type EmulatedPrice } from './pricing.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseDurationRange, systemClock, type Clock, type DurationRange } from '../time.js';
import { FaultPlan, formatFaultSpec, parseFaultSpec, type FaultSpec } from './faults.js';
import { FileStore } from './file-store.js';
import { ImageDownloads } from './image-downloads.js';
import type { Quirk } from './quirks.js';
import { RequestQueue } from './request-queue.js';
import { EmulatorRoutes } from './routes.js';
import { StatsRecorder, type EmulatorStats } from './stats.js';

export interface FalEmulatorOptions {
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** Interface to bind. Default `127.0.0.1`: the emulator is a test double, not a public service. */
  host?: string;
  /**
   * fal's per-account concurrency: how many requests run at once; the rest wait IN_QUEUE.
   * Default 2, like a new fal account (fal raises it up to 40 with credit purchases).
   */
  runners?: number;
  /** Processing time per request: a fixed duration or a range like `500..1500ms`. Default 0. */
  latency?: DurationRange | string;
  /** When set, every fal call must carry `Authorization: Key <key>`; anything else gets 401. */
  key?: string;
  /** Seed for latencies and faults: the same seed and workload meet the same faults. Default 1. */
  seed?: number;
  /** Faults, as specs or as `KIND[@OP]=RATE` strings (see `parseFaultSpec`). */
  faults?: ReadonlyArray<FaultSpec | string>;
  /** Retry-After (seconds) sent with injected 429s. Default 1. */
  retryAfterSeconds?: number;
  /** Start with the account locked (exhausted balance): submits answer 403. */
  locked?: boolean;
  /** Ways to differ from the defaults that fal's protocol allows (see quirks.ts), to test clients against. */
  quirks?: ReadonlyArray<Quirk>;
  /** Time source for runners and start time-outs. Default: the system clock. */
  clock?: Clock;
  /**
   * The time presigned image URLs are judged expired by (X-Amz-Date + X-Amz-Expires), when the
   * runner downloads them. Default: `clock`. A test makes one download see the future with it.
   */
  downloadClock?: Pick<Clock, 'now'>;
  /** Finished requests remembered for status/result lookups. Default 200,000. */
  retainCompleted?: number;
  /** What fal's pricing API (`api.fal.ai/v1/models/pricing`) answers, per endpoint id. Default: DEFAULT_PRICES. */
  prices?: Readonly<Record<string, EmulatedPrice>>;
  /**
   * Told each job a submit creates, as it is created (before its answer is written): a test or a
   * benchmark learns which paid requests exist, and when they began to.
   */
  onAccepted?: (requestId: string) => void;
}

export interface FalEmulator {
  /** Base URL for FAL_BASE_URL, e.g. `http://127.0.0.1:43121`. */
  readonly url: string;
  stats(): EmulatorStats;
  /** Clears the counters (gauges of live work are kept). */
  reset(): void;
  setFaults(faults: ReadonlyArray<FaultSpec | string>): void;
  setRunners(runners: number): void;
  setLocked(locked: boolean): void;
  setKey(key: string | undefined): void;
  /**
   * Expires every file stored so far, as fal's retention does after its time: their URLs answer
   * 404 (GET and HEAD), and a model given one fails with a 422 "Could not load the image". Returns
   * how many expired. Also `POST /_emulator/files/expire`.
   */
  expireFiles(): number;
  close(): Promise<void>;
}

function resolveLatency(latency: DurationRange | string | undefined): DurationRange {
  if (latency === undefined) return { min: 0, max: 0 };
  if (typeof latency !== 'string') return latency;
  const parsed = parseDurationRange(latency);
  if (!parsed) throw new Error(`Invalid latency "${latency}": expected a duration like 800ms or a range like 500..1500ms`);
  return parsed;
}

function toSpecs(faults: ReadonlyArray<FaultSpec | string>): FaultSpec[] {
  return faults.map((f) => (typeof f === 'string' ? parseFaultSpec(f) : f));
}

/**
 * Starts a local server that speaks fal's queue protocol as `@fal-ai/client` 1.10 does, for
 * `fal-ai/llava-next` and `fal-ai/mantis-llava-7b-v11`, with fal's capacity model and seeded faults.
 * Point falbatch at it with `FAL_BASE_URL=<url>`.
 */
export async function createFalEmulator(options: FalEmulatorOptions = {}): Promise<FalEmulator> {
  const runners = options.runners ?? 2;
  if (!Number.isInteger(runners) || runners < 1) throw new Error(`Expected runners to be an integer ≥ 1, got ${runners}`);
  const seed = options.seed ?? 1;
  const stats = new StatsRecorder();
  const faults = new FaultPlan(seed, toSpecs(options.faults ?? []));
  const files = new FileStore();
  let key = options.key;
  let locked = options.locked ?? false;
  // The routes need the queue and the queue needs the routes' image resolver: tie them late.
  let routes: EmulatorRoutes | undefined;
  const downloads = new ImageDownloads(options.downloadClock ?? options.clock ?? systemClock, stats);
  const queue = new RequestQueue({
    runners,
    latency: resolveLatency(options.latency),
    seed,
    clock: options.clock ?? systemClock,
    faults,
    stats,
    resolveImage: (url) => downloads.lookup(url) ?? (routes as EmulatorRoutes).resolveImage(url),
    prefetchImages: (input) => downloads.prefetch(input),
    retainCompleted: options.retainCompleted ?? 200_000,
  });
  routes = new EmulatorRoutes({
    queue,
    stats,
    faults,
    files,
    key: () => key,
    locked: () => locked,
    retryAfterSeconds: options.retryAfterSeconds ?? 1,
    quirks: new Set(options.quirks ?? []),
    prices: options.prices ?? DEFAULT_PRICES,
    ...(options.onAccepted ? { onAccepted: options.onAccepted } : {}),
    onAdmin: (action, body) => {
      switch (action) {
        case 'GET stats':
          return { ...stats.snapshot(), runners: queue.runners, faultSpecs: faults.list().map(formatFaultSpec) };
        case 'POST reset':
          stats.reset(queue.counts());
          return stats.snapshot();
        case 'POST faults':
          faults.set(toSpecs(Array.isArray(body['faults']) ? (body['faults'] as string[]) : []));
          return { faultSpecs: faults.list().map(formatFaultSpec) };
        case 'POST account':
          if (typeof body['locked'] === 'boolean') locked = body['locked'];
          if (typeof body['runners'] === 'number') queue.setRunners(body['runners']);
          return { locked, runners: queue.runners };
        case 'GET health':
          return { ok: true };
        case 'POST files/expire':
          return { expired: (routes as EmulatorRoutes).expireFiles() };
        default:
          return undefined;
      }
    },
  });
  const app = routes;
  const server: Server = createServer((req, res) => {
    void app.handle(req, res);
  });
  server.keepAliveTimeout = 30_000;
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    stats: () => stats.snapshot(),
    reset: () => stats.reset(queue.counts()),
    setFaults: (next) => faults.set(toSpecs(next)),
    setRunners: (n) => queue.setRunners(n),
    setLocked: (value) => {
      locked = value;
    },
    setKey: (value) => {
      key = value;
    },
    expireFiles: () => app.expireFiles(),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        queue.close();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}
