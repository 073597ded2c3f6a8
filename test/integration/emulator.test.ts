import { ApiError, ValidationError, createFalClient, type FalClient } from '@fal-ai/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFalEmulator, type FalEmulator } from '../../src/emulator/create-fal-emulator.js';
import { createRoutedFetch } from '../../src/fal/routing.js';
import { pngBytes, pngDataUri } from '../helpers/images.js';
import { ManualClock } from '../helpers/manual-clock.js';

const KEY = 'emulator-test-key';
const LLAVA = 'fal-ai/llava-next';
const MANTIS = 'fal-ai/mantis-llava-7b-v11';

function clientFor(emulator: FalEmulator, credentials = KEY): FalClient {
  return createFalClient({ credentials, fetch: createRoutedFetch(emulator.url) });
}

describe('the fal emulator, driven by the official @fal-ai/client', () => {
  let emulator: FalEmulator;
  let fal: FalClient;

  beforeEach(async () => {
    emulator = await createFalEmulator({ key: KEY, runners: 2 });
    fal = clientFor(emulator);
  });
  afterEach(async () => {
    await emulator.close();
  });

  it('answers subscribe in polling mode with a llava-next output that depends on the prompt and the image bytes', async () => {
    const ask = (image: string, prompt: string) => fal.subscribe(LLAVA, { input: { image_url: image, prompt }, pollInterval: 20 });
    const a = await ask(pngDataUri('a'), 'Describe the image');
    const aAgain = await ask(pngDataUri('a'), 'Describe the image');
    const b = await ask(pngDataUri('b'), 'Describe the image');
    const otherPrompt = await ask(pngDataUri('a'), 'Who painted it?');
    expect(a.data).toMatchObject({ output: expect.stringMatching(/^\[emulated:[0-9a-f]{10}\]/), partial: false });
    expect(a.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(aAgain.data).toEqual(a.data);
    expect(b.data.output).not.toEqual(a.data.output);
    expect(otherPrompt.data.output).not.toEqual(a.data.output);
  });

  it('honours max_tokens by cutting the answer and flagging it partial', async () => {
    const { data } = await fal.subscribe(LLAVA, { input: { image_url: pngDataUri('a'), prompt: 'p', max_tokens: 3 }, pollInterval: 20 });
    expect(data.output.split(' ')).toHaveLength(3);
    expect(data.partial).toBe(true);
  });

  it('answers subscribe in streaming mode for mantis with several images', async () => {
    const updates: string[] = [];
    const result = await fal.subscribe(MANTIS, {
      mode: 'streaming',
      input: { prompt: 'What differs?', images: [{ image_url: 'https://llava-vl.github.io/static/images/monalisa.jpg' }, { image_url: pngDataUri('view') }] },
      onQueueUpdate: (status) => updates.push(status.status),
    });
    expect(result.data).toEqual({ output: expect.stringMatching(/^\[emulated:/) });
    expect(updates.at(-1)).toBe('COMPLETED');
  });

  it('submits with self-pointing URLs and reports status, result and request id as fal does', async () => {
    const submitted = await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri('x'), prompt: 'p' } });
    const base = `${emulator.url}/queue.fal.run/${LLAVA}/requests/${submitted.request_id}`;
    expect(submitted).toMatchObject({ status: 'IN_QUEUE', response_url: base, status_url: `${base}/status`, cancel_url: `${base}/cancel`, queue_position: 0 });
    let status = await fal.queue.status(LLAVA, { requestId: submitted.request_id, logs: true });
    while (status.status !== 'COMPLETED') status = await fal.queue.status(LLAVA, { requestId: submitted.request_id, logs: true });
    expect(status).toMatchObject({ status: 'COMPLETED', metrics: { inference_time: 0 } });
    expect(Array.isArray(status.logs)).toBe(true);
    const result = await fal.queue.result(LLAVA, { requestId: submitted.request_id });
    expect(result.requestId).toBe(submitted.request_id);
    expect(result.data.output).toMatch(/^\[emulated:/);
  });

  it('runs synchronously through fal.run', async () => {
    const result = await fal.run(LLAVA, { input: { image_url: pngDataUri('x'), prompt: 'p' } });
    expect(result.data.output).toMatch(/^\[emulated:/);
    expect(result.requestId).not.toBe('');
    expect(emulator.stats()).toMatchObject({ runs: 1, billed: 1, submits: 0 });
  });

  it('uploads through fal storage, serves the file back, and reads uploaded images by their bytes', async () => {
    const url = await fal.storage.upload(new Blob([pngBytes('uploaded')], { type: 'image/png' }));
    expect(url.startsWith(`${emulator.url}/v3.fal.media/files/`)).toBe(true);
    const served = await fetch(url);
    expect(Buffer.from(await served.arrayBuffer())).toEqual(pngBytes('uploaded'));
    expect(served.headers.get('content-type')).toBe('image/png');
    const fromUpload = await fal.run(LLAVA, { input: { image_url: url, prompt: 'p' } });
    const fromDataUri = await fal.run(LLAVA, { input: { image_url: pngDataUri('uploaded'), prompt: 'p' } });
    expect(fromUpload.data).toEqual(fromDataUri.data);
    // A Blob inside the input is uploaded by the client on its own.
    const auto = await fal.run(LLAVA, { input: { image_url: new Blob([pngBytes('uploaded')], { type: 'image/png' }), prompt: 'p' } });
    expect(auto.data).toEqual(fromDataUri.data);
    expect(emulator.stats().uploads).toBe(2);
  });

  it('rejects invalid input with a 422 ValidationError carrying fal-style field errors', async () => {
    const error = await fal
      .subscribe(LLAVA, { input: { image_url: pngDataUri('x'), prompt: 'p', top_p: 1.5, max_tokens: 0 }, pollInterval: 20 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    const validation = error as ValidationError;
    expect(validation.status).toBe(422);
    expect(validation.getFieldErrors('top_p')).toEqual([expect.objectContaining({ loc: ['body', 'top_p'], type: 'less_than_equal' })]);
    expect(validation.getFieldErrors('max_tokens')).toEqual([expect.objectContaining({ type: 'greater_than' })]);

    const missing = (await fal.run(MANTIS, { input: { prompt: 'p', images: [] } }).catch((e: unknown) => e)) as ValidationError;
    expect(missing.fieldErrors).toEqual([expect.objectContaining({ loc: ['body', 'images'], type: 'too_short' })]);

    const notAnImage = (await fal
      .run(LLAVA, { input: { prompt: 'p', image_url: 'data:image/png;base64,aGVsbG8=' } })
      .catch((e: unknown) => e)) as ValidationError;
    expect(notAnImage.getFieldErrors('image_url')[0]?.msg).toMatch(/not a PNG, JPEG/);
    const unreachable = (await fal
      .run(LLAVA, { input: { prompt: 'p', image_url: 'https://images.invalid/a.png' } })
      .catch((e: unknown) => e)) as ValidationError;
    expect(unreachable.getFieldErrors('image_url')[0]?.msg).toMatch(/could not download/);
  });

  it('answers 404 for an unknown endpoint and for an unknown request id', async () => {
    const unknown = (await fal.queue.submit('fal-ai/no-such-model', { input: {} }).catch((e: unknown) => e)) as ApiError<unknown>;
    expect(unknown).toBeInstanceOf(ApiError);
    expect(unknown.status).toBe(404);
    const noRequest = (await fal.queue.result(LLAVA, { requestId: '00000000-0000-0000-0000-000000000000' }).catch((e: unknown) => e)) as ApiError<unknown>;
    expect(noRequest.status).toBe(404);
  });

  it('refuses a wrong or missing key with 401 and counts it', async () => {
    const wrong = (await clientFor(emulator, 'not-the-key')
      .queue.submit(LLAVA, { input: { prompt: 'p', image_url: pngDataUri('x') } })
      .catch((e: unknown) => e)) as ApiError<unknown>;
    expect(wrong.status).toBe(401);
    const none = await fetch(`${emulator.url}/queue.fal.run/${LLAVA}`, { method: 'POST', body: '{}' });
    expect(none.status).toBe(401);
    expect(emulator.stats()).toMatchObject({ authFailures: 2, accepted: 0 });
  });

  it('routes requests that carry x-fal-target-url (the client proxy convention)', async () => {
    const proxied = createFalClient({ credentials: KEY, proxyUrl: { url: `${emulator.url}/proxy`, when: 'always' } });
    const result = await proxied.subscribe(LLAVA, { input: { image_url: pngDataUri('x'), prompt: 'p' }, pollInterval: 20 });
    expect(result.data.output).toMatch(/^\[emulated:/);
  });

  it('cancels a queued request and refuses to cancel a completed one', async () => {
    await emulator.close();
    emulator = await createFalEmulator({ key: KEY, runners: 1, faults: ['stuck=1x1'] });
    fal = clientFor(emulator);
    const blocker = await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri('1'), prompt: 'p' } });
    const queued = await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri('2'), prompt: 'p' } });
    expect(queued.queue_position).toBe(0);
    await fal.queue.cancel(LLAVA, { requestId: queued.request_id });
    const cancelledStatus = await fal.queue.status(LLAVA, { requestId: queued.request_id });
    expect(cancelledStatus.status).toBe('COMPLETED');
    // The stuck runner frees up only when its request is cancelled.
    expect((await fal.queue.status(LLAVA, { requestId: blocker.request_id })).status).toBe('IN_PROGRESS');
    await fal.queue.cancel(LLAVA, { requestId: blocker.request_id });
    const again = (await fal.queue.cancel(LLAVA, { requestId: blocker.request_id }).catch((e: unknown) => e)) as ApiError<{ status: string }>;
    expect(again.status).toBe(400);
    expect(again.body).toEqual({ status: 'ALREADY_COMPLETED' });
    expect(emulator.stats()).toMatchObject({ cancels: 2, inProgress: 0, billed: 0 });
  });

  it('serves stats and reset over HTTP', async () => {
    await fal.run(LLAVA, { input: { image_url: pngDataUri('x'), prompt: 'p' } });
    const stats = (await (await fetch(`${emulator.url}/_emulator/stats`)).json()) as { runs: number; runners: number };
    expect(stats).toMatchObject({ runs: 1, runners: 2 });
    await fetch(`${emulator.url}/_emulator/reset`, { method: 'POST' });
    expect(emulator.stats().runs).toBe(0);
  });
});

describe('the emulator capacity model (runners, FIFO queue, processing time) on a manual clock', () => {
  it('runs N requests at once, queues the rest with real positions, and streams position changes', async () => {
    const clock = new ManualClock();
    const emulator = await createFalEmulator({ runners: 2, latency: '1s', clock });
    const fal = clientFor(emulator, '');
    try {
      const submitted: Array<{ request_id: string; queue_position: number }> = [];
      for (let i = 0; i < 5; i++) submitted.push(await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri(String(i)), prompt: 'p' } }));
      expect(submitted.map((s) => s.queue_position)).toEqual([0, 0, 0, 1, 2]);
      const statuses = async () => Promise.all(submitted.map((s) => fal.queue.status(LLAVA, { requestId: s.request_id })));
      expect((await statuses()).map((s) => s.status)).toEqual(['IN_PROGRESS', 'IN_PROGRESS', 'IN_QUEUE', 'IN_QUEUE', 'IN_QUEUE']);
      // A result asked for too early: 400, as fal answers.
      const early = (await fal.queue.result(LLAVA, { requestId: submitted[0]!.request_id }).catch((e: unknown) => e)) as ApiError<{ detail: string }>;
      expect(early.status).toBe(400);
      expect(early.body.detail).toMatch(/in progress/);

      const stream = await fal.queue.streamStatus(LLAVA, { requestId: submitted[4]!.request_id });
      const seen: Array<string> = [];
      stream.on('data', (s) => seen.push(`${s.status}${s.status === 'IN_QUEUE' ? `:${s.queue_position}` : ''}`));
      await clock.advance(1000);
      expect((await statuses()).map((s) => ('queue_position' in s ? `${s.status}:${s.queue_position}` : s.status))).toEqual([
        'COMPLETED',
        'COMPLETED',
        'IN_PROGRESS',
        'IN_PROGRESS',
        'IN_QUEUE:0',
      ]);
      await clock.advance(1000);
      await clock.advance(1000);
      const last = await stream.done();
      expect(last.status).toBe('COMPLETED');
      expect(seen).toEqual(['IN_QUEUE:2', 'IN_QUEUE:1', 'IN_QUEUE:0', 'IN_PROGRESS', 'COMPLETED']);
      expect(emulator.stats()).toMatchObject({ maxInProgress: 2, completed: 5, billed: 5 });
    } finally {
      await emulator.close();
    }
  });

  it('draws each latency from the range, reproducibly from the seed', async () => {
    const durations = async (seed: number): Promise<number[]> => {
      const clock = new ManualClock();
      const emulator = await createFalEmulator({ runners: 10, latency: '100..900ms', seed, clock });
      const fal = clientFor(emulator, '');
      try {
        for (let i = 0; i < 10; i++) await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri(String(i)), prompt: 'p' } });
        return clock.sleeps.slice();
      } finally {
        await emulator.close();
      }
    };
    const first = await durations(7);
    expect(first).toHaveLength(10);
    for (const ms of first) expect(ms).toBeGreaterThanOrEqual(100), expect(ms).toBeLessThanOrEqual(900);
    expect(new Set(first).size).toBeGreaterThan(5);
    expect(await durations(7)).toEqual(first);
    expect(await durations(8)).not.toEqual(first);
  });

  it('ends a request that did not start within its start timeout with 504 X-Fal-Request-Timeout-Type: user', async () => {
    const clock = new ManualClock();
    const emulator = await createFalEmulator({ runners: 1, latency: '10s', clock });
    const fal = clientFor(emulator, '');
    try {
      await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri('busy'), prompt: 'p' } });
      const late = await fal.queue.submit(LLAVA, { input: { image_url: pngDataUri('late'), prompt: 'p' }, startTimeout: 2 });
      await clock.advance(2000);
      const error = (await fal.queue.result(LLAVA, { requestId: late.request_id }).catch((e: unknown) => e)) as ApiError<unknown>;
      expect(error.status).toBe(504);
      expect(error.isUserTimeout).toBe(true);
      expect(emulator.stats().billed).toBe(0);
    } finally {
      await emulator.close();
    }
  });
});
