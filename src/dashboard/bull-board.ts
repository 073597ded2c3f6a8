import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Queue } from 'bullmq';
import type { Hono } from 'hono';

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
export function createBullBoardApp(queues: readonly BullBoardQueue[], basePath: string, homePath: string): Hono {
  const serverAdapter = new HonoAdapter(serveStatic);
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: queues.map(({ queue, displayName, description }) => new BullMQAdapter(queue, { readOnlyMode: true, displayName, description })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'falbatch', miscLinks: [{ text: 'Batches', url: homePath }] } },
  });
  return serverAdapter.registerPlugin();
}
