import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';
import { redactUrl } from '../config.js';
import type { FalbatchContext } from '../context.js';
import { BatchNotFoundError, ConfigError } from '../errors.js';
import { isLoopback, listen } from '../http-server.js';
import { importOnce } from '../load-dependency.js';
import { retryFailed, type RetryFailedSummary } from '../ops/retry.js';
import { renderBatchesPage } from './batches-page.js';
import { createBullBoardApp, type BullBoardQueue } from './bull-board.js';
import { createPriceLookup, listDashboardBatches } from './dashboard-batches.js';

export interface DashboardCredentials {
  user: string;
  password: string;
}

export interface DashboardOptions {
  /** Port; 0 picks a free one (see the handle's `url`). @default 3000 */
  port?: number;
  /**
   * Interface to bind. Anything but a loopback address (127.0.0.1, ::1, localhost) needs
   * `credentials`: the dashboard shows every batch's manifest paths, progress and spend.
   * @default '127.0.0.1'
   */
  host?: string;
  /**
   * HTTP basic auth for every page and API (a wrong or missing password gets 401). Basic auth
   * sends the password in clear on every request: beyond this machine, serve it behind TLS (a
   * reverse proxy). Without credentials, requests must name a loopback host (a DNS-rebinding guard).
   */
  credentials?: DashboardCredentials | undefined;
  /**
   * Show a "Retry failed rows" button on each batch with failed rows: falbatch's retry
   * (`falbatch retry --batch`), which submits them to fal again and so spends money. Off, the
   * dashboard changes nothing. Bull Board stays read-only either way (see bull-board.ts).
   * @default false
   */
  allowRetry?: boolean;
  /** Seconds between refreshes of the batches page (0: never). @default 5 */
  refreshSeconds?: number;
  /** Newest batches shown; older ones are counted. @default 50 */
  batchLimit?: number;
  /** More BullMQ queues for Bull Board, beside the row queue. */
  queues?: readonly BullBoardQueue[];
}

export interface DashboardHandle {
  /** `http://host:port`: the batches page; Bull Board is at `<url>/queues`. */
  readonly url: string;
  close(): Promise<void>;
}

/** Where Bull Board is mounted. */
export const QUEUES_PATH = '/queues';
/** Scripts, styles, fonts, images and requests from the dashboard's own origin only (inline styles allowed: both pages use them). */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

// Loaded by the dashboard only (see load-dependency.ts).
const loadHono = importOnce('hono', 'The dashboard', async () => {
  const [{ Hono }, { basicAuth }, { HTTPException }] = await Promise.all([import('hono'), import('hono/basic-auth'), import('hono/http-exception')]);
  return { Hono, basicAuth, HTTPException };
});
const loadNodeServer = importOnce('@hono/node-server', 'The dashboard', () => import('@hono/node-server'));

function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

function checkOptions(host: string, credentials: DashboardCredentials | undefined, refreshSeconds: number, batchLimit: number): void {
  if (credentials) {
    if (credentials.user === '' || credentials.password === '')
      throw new ConfigError(
        'Expected both a dashboard user and a password (--user and --password, or FALBATCH_DASHBOARD_USER and FALBATCH_DASHBOARD_PASSWORD), got an empty one',
      );
    if (credentials.user.includes(':')) throw new ConfigError('Expected a dashboard user without ":" (HTTP basic auth cannot carry it)');
  } else if (!isLoopback(host)) {
    throw new ConfigError(
      `Refusing to serve the dashboard on ${host} without credentials: anyone who reaches it would see every batch. ` +
        'Set FALBATCH_DASHBOARD_USER and FALBATCH_DASHBOARD_PASSWORD (or pass --user and --password), or bind to 127.0.0.1.',
    );
  }
  if (!Number.isInteger(refreshSeconds) || refreshSeconds < 0)
    throw new ConfigError(`Expected the refresh interval to be a whole number of seconds ≥ 0, got ${refreshSeconds}`);
  if (!Number.isInteger(batchLimit) || batchLimit < 1) throw new ConfigError(`Expected the batch limit to be an integer ≥ 1, got ${batchLimit}`);
}

/**
 * Serves falbatch's dashboard: a page of every batch with its progress and spend (`/`, JSON at
 * `/api/batches`) and Bull Board over the row queue (`/queues`), until closed.
 */
export async function startDashboard(ctx: FalbatchContext, options: DashboardOptions = {}): Promise<DashboardHandle> {
  const host = options.host ?? '127.0.0.1';
  const { credentials } = options;
  const refreshSeconds = options.refreshSeconds ?? 5;
  const batchLimit = options.batchLimit ?? 50;
  checkOptions(host, credentials, refreshSeconds, batchLimit);
  const [{ Hono, basicAuth, HTTPException }, { createAdaptorServer }] = await Promise.all([loadHono(), loadNodeServer()]);
  const prices = createPriceLookup(ctx);
  // A form's anti-forgery token: another site can make a browser post, but not read this page.
  const retryToken = options.allowRetry ? randomBytes(24).toString('base64url') : undefined;
  // What recent retries did, shown once on the page they redirect to (by an id, so nobody can forge one).
  const retries = new Map<string, RetryFailedSummary>();

  const app = new Hono({ strict: false });
  app.use('*', async (c, next) => {
    await next();
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    c.header('x-frame-options', 'DENY');
    // Every asset from here: a browser showing the dashboard loads nothing from a third party.
    c.header('content-security-policy', CONTENT_SECURITY_POLICY);
  });
  if (credentials) {
    app.use('*', basicAuth({ username: credentials.user, password: credentials.password, realm: 'falbatch dashboard' }));
  } else {
    // Only loopback is served without credentials: a page elsewhere resolving its own name to
    // 127.0.0.1 (DNS rebinding) must not read it.
    app.use('*', async (c, next) => {
      let name = '';
      try {
        name = new URL(`http://${c.req.header('host') ?? ''}`).hostname;
      } catch {
        // An unparsable Host is refused below.
      }
      if (!isLoopback(name))
        return c.text(
          'falbatch dashboard: this server answers only requests for localhost or 127.0.0.1 (start it with credentials to serve other names)\n',
          403,
        );
      await next();
      return undefined;
    });
  }

  app.get('/', async (c) => {
    const list = await listDashboardBatches(ctx, prices, batchLimit);
    const notice = c.req.query('retried');
    const summary = notice === undefined ? undefined : retries.get(notice);
    if (notice !== undefined) retries.delete(notice);
    c.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
    c.header('cache-control', 'no-store');
    return c.html(
      renderBatchesPage(list, {
        prefix: ctx.config.prefix,
        redis: redactUrl(ctx.config.redisUrl),
        queuesPath: QUEUES_PATH,
        refreshSeconds,
        retryToken,
        now: ctx.clock.now(),
        retried: summary && { batch: summary.batch, requeued: summary.requeued, missing: summary.missing },
      }),
    );
  });
  app.get('/api/batches', async (c) => {
    const list = await listDashboardBatches(ctx, prices, batchLimit);
    c.header('cache-control', 'no-store');
    return c.json({ namespace: ctx.config.prefix, batches: list.batches, more: list.more });
  });
  if (retryToken !== undefined) {
    app.post('/batches/:batch/retry', async (c) => {
      const body = await c.req.parseBody();
      const token = typeof body['token'] === 'string' ? body['token'] : '';
      if (!constantTimeEqual(token, retryToken)) return c.text('falbatch dashboard: this form is stale or not from this dashboard; reload the page\n', 403);
      const batch = c.req.param('batch');
      let summary: RetryFailedSummary;
      try {
        summary = await retryFailed(ctx, { batch });
      } catch (error) {
        if (error instanceof BatchNotFoundError) return c.text(`falbatch dashboard: ${error.message}\n`, 404);
        throw error;
      }
      ctx.log.info(`dashboard: ${summary.requeued} failed rows of ${batch} put back in the queue`, { batch, missing: summary.missing });
      const id = randomUUID();
      retries.set(id, summary);
      if (retries.size > 100) retries.delete(retries.keys().next().value as string);
      return c.redirect(`/?retried=${id}`, 303);
    });
  }
  const rowQueue: BullBoardQueue = {
    queue: ctx.queue,
    displayName: `rows (${ctx.config.prefix})`,
    description: 'falbatch rows: one job per distinct row key, id <batch>/<key>',
  };
  app.route(QUEUES_PATH, await createBullBoardApp([rowQueue, ...(options.queues ?? [])], QUEUES_PATH, '/'));
  app.notFound((c) => c.text('falbatch dashboard: not found; batches are at /, the queue at /queues\n', 404));
  app.onError((error, c) => {
    if (error instanceof HTTPException) return error.getResponse();
    const message = ctx.scrub(error.message);
    ctx.log.warn(`dashboard: ${c.req.method} ${c.req.path} failed: ${message}`);
    return c.text(`falbatch dashboard: ${message}\n`, 500);
  });

  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  const listening = await listen(server, { host, port: options.port ?? 3000 });
  return { url: listening.url, close: () => listening.close() };
}
