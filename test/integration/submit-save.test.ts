import type { Command } from 'ioredis';
import { expect, it } from 'vitest';
import { createFalCaller } from '../../src/fal/fal-caller.js';
import { createHttpFetch } from '../../src/fal/http-fetch.js';
import { getStatus } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { createHarness, until } from '../helpers/harness.js';

// A worker killed after fal accepted a submit and before its request id reached Redis pays for the
// row again (RELIABILITY.md). The window must be no longer than fal's answer waiting for the event
// loop plus the write to Redis: the id's SET is sent in the same turn of the event loop as the answer
// is handed over, with nothing else awaited in between.
it('sends each request id to Redis before the event loop turns once after fal answers the submit', async () => {
  const rows = 40;
  const h = await createHarness({ emulator: { runners: 10, latency: '0..20ms' } });
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', `id,image_url,prompt\n${body}\n`) });

  // The worker's Redis client, watched (not replaced): which request ids it has sent a SET for.
  const sent = new Set<string>();
  const redis = h.ctx.redis as unknown as { sendCommand(command: Command, ...rest: unknown[]): unknown };
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command, ...rest) => {
    const value = String(command.args[1] ?? '');
    if (command.name === 'set' && value.startsWith('rid:')) sent.add(value.slice(value.indexOf(':', 4) + 1));
    return send(command, ...rest);
  };
  // The real HTTP transport; at each submit answer handed over, a check one turn of the loop later.
  const answered: string[] = [];
  const late: string[] = [];
  const http = createHttpFetch();
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const response = await http(input, init);
    const id = response.headers.get('x-fal-request-id');
    if (init?.method === 'POST' && id !== null) {
      answered.push(id);
      setImmediate(() => sent.has(id) || late.push(id));
    }
    return response;
  };
  const fal = createFalCaller({ credentials: h.config.falKey, baseUrl: h.config.falBaseUrl, callTimeoutMs: h.config.callTimeoutMs, fetch });
  const worker = await h.startWorker({ concurrency: 10, fal });
  await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished);
  await worker.close();

  expect(answered).toHaveLength(rows);
  expect(late).toEqual([]);
  expect(answered.every((id) => sent.has(id))).toBe(true);
}, 60_000);
