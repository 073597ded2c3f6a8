import type { Queue } from 'bullmq';
import type { Hono } from 'hono';
import { importOnce } from '../load-dependency.js';

// Loaded by the dashboard only (see load-dependency.ts).
const loadBullBoardApi = importOnce('@bull-board/api', 'The dashboard (Bull Board)', async () => {
  const [{ createBullBoard }, { BullMQAdapter }] = await Promise.all([import('@bull-board/api'), import('@bull-board/api/bullMQAdapter')]);
  return { createBullBoard, BullMQAdapter };
});
const loadBullBoardHono = importOnce('@bull-board/hono', 'The dashboard (Bull Board)', () => import('@bull-board/hono'));
const loadHono = importOnce('hono', 'The dashboard (Bull Board)', () => import('hono'));
const loadServeStatic = importOnce('@hono/node-server', 'The dashboard (Bull Board)', () => import('@hono/node-server/serve-static'));

export interface BullBoardQueue {
  queue: Queue;
  /** What the board calls it. */
  displayName: string;
  description: string;
}

/** A `<link>` element whose href leaves the page's origin (`https://…`, `//host/…`). */
const REMOTE_LINK = /<link\b[^>]*\bhref\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?\/\/[^>]*>\s*/gi;

/**
 * Bull Board's page without the links it makes to other origins (its index loads fonts from a
 * public font CDN): offline or on a private network they fail, and a user's browser would call a
 * third party. Its fonts fall back to the browser's sans-serif and monospace; every other asset it
 * uses is served from its own static folder, here.
 */
export function withoutRemoteLinks(html: string): string {
  return html.replace(REMOTE_LINK, '');
}

/**
 * Bull Board over falbatch's queues, always read-only: its actions bypass falbatch's own records.
 * Its "retry" moves a failed job back while the row's failed result stays, so the row ends at once
 * without calling fal (falbatch's retry forgets the result first); "clean" and "remove" delete the
 * jobs `falbatch retry` needs; "add" makes jobs no batch knows. Retry failed rows from falbatch's
 * page (`--allow-retry`) or with `falbatch retry` instead.
 */
export async function createBullBoardApp(queues: readonly BullBoardQueue[], basePath: string, homePath: string): Promise<Hono> {
  const [{ createBullBoard, BullMQAdapter }, { HonoAdapter }, { serveStatic }, { Hono }] = await Promise.all([
    loadBullBoardApi(),
    loadBullBoardHono(),
    loadServeStatic(),
    loadHono(),
  ]);
  const serverAdapter = new HonoAdapter(serveStatic);
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: queues.map(({ queue, displayName, description }) => new BullMQAdapter(queue, { readOnlyMode: true, displayName, description })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'falbatch', miscLinks: [{ text: 'Batches', url: homePath }] } },
  });
  const app = new Hono();
  app.use('*', async (c, next) => {
    await next();
    if (!c.res.headers.get('content-type')?.startsWith('text/html')) return;
    const headers = new Headers(c.res.headers);
    headers.delete('content-length');
    c.res = new Response(withoutRemoteLinks(await c.res.text()), { status: c.res.status, headers });
  });
  return app.route('/', serverAdapter.registerPlugin());
}
