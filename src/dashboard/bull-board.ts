import type { Queue } from 'bullmq';
import type { Hono } from 'hono';
import { importOnce } from '../load-dependency.js';

// Loaded by the dashboard only (see load-dependency.ts).
const loadBullBoardApi = importOnce('@bull-board/api', 'The dashboard (Bull Board)', async () => {
  const [{ createBullBoard }, { BullMQAdapter }] = await Promise.all([import('@bull-board/api'), import('@bull-board/api/bullMQAdapter')]);
  return { createBullBoard, BullMQAdapter };
});
const loadBullBoardHono = importOnce('@bull-board/hono', 'The dashboard (Bull Board)', () => import('@bull-board/hono'));
const loadServeStatic = importOnce('@hono/node-server', 'The dashboard (Bull Board)', () => import('@hono/node-server/serve-static'));

export interface BullBoardQueue {
  queue: Queue;
  /** What the board calls it. */
  displayName: string;
  description: string;
}

/**
 * Bull Board over falbatch's queues, always read-only: its actions bypass falbatch's own records.
 * Its "retry" moves a failed job back while the row's failed result stays, so the row ends at once
 * without calling fal (falbatch's retry forgets the result first); "clean" and "remove" delete the
 * jobs `falbatch retry` needs; "add" makes jobs no batch knows. Retry failed rows from falbatch's
 * page (`--allow-retry`) or with `falbatch retry` instead.
 */
export async function createBullBoardApp(queues: readonly BullBoardQueue[], basePath: string, homePath: string): Promise<Hono> {
  const [{ createBullBoard, BullMQAdapter }, { HonoAdapter }, { serveStatic }] = await Promise.all([loadBullBoardApi(), loadBullBoardHono(), loadServeStatic()]);
  const serverAdapter = new HonoAdapter(serveStatic);
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: queues.map(({ queue, displayName, description }) => new BullMQAdapter(queue, { readOnlyMode: true, displayName, description })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'falbatch', miscLinks: [{ text: 'Batches', url: homePath }] } },
  });
  return serverAdapter.registerPlugin();
}
