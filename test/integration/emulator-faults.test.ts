import { ApiError, ValidationError, createFalClient, type FalClient } from '@fal-ai/client';
import { describe, expect, it } from 'vitest';
import { createFalEmulator, type FalEmulator, type FalEmulatorOptions } from '../../src/emulator/create-fal-emulator.js';
import { createRoutedFetch } from '../../src/fal/routing.js';
import { pngDataUri } from '../helpers/images.js';

const LLAVA = 'fal-ai/llava-next';
const input = (tag = 'x') => ({ image_url: pngDataUri(tag), prompt: 'p' });

async function withEmulator(options: FalEmulatorOptions, body: (emulator: FalEmulator, fal: FalClient) => Promise<void>): Promise<void> {
  const emulator = await createFalEmulator(options);
  try {
    await body(emulator, createFalClient({ credentials: 'k', fetch: createRoutedFetch(emulator.url) }));
  } finally {
    await emulator.close();
  }
}

/** What the official client sees for each injected fault (its own retries included). */
describe.concurrent('emulator faults, as @fal-ai/client sees them', () => {
  it('429 with Retry-After: the raw answer carries Retry-After; the client retries the submit on its own', async () => {
    await withEmulator({ faults: ['429@submit=1x1'], retryAfterSeconds: 3 }, async (emulator, fal) => {
      const raw = await fetch(`${emulator.url}/queue.fal.run/${LLAVA}`, { method: 'POST', body: JSON.stringify(input()) });
      expect(raw.status).toBe(429);
      expect(raw.headers.get('retry-after')).toBe('3');
      const ok = await fal.queue.submit(LLAVA, { input: input() });
      expect(ok.status).toBe('IN_QUEUE');
      expect(emulator.stats()).toMatchObject({ submits: 2, accepted: 1, faults: { '429@submit': 1 } });
    });
  });

  it('429 without Retry-After: no header, and a client that runs out of retries gets ApiError 429', async () => {
    await withEmulator({ faults: ['429-no-retry-after@cancel=1'] }, async (emulator, fal) => {
      const { request_id } = await fal.queue.submit(LLAVA, { input: input() });
      const noRetry = createFalClient({ credentials: 'k', fetch: createRoutedFetch(emulator.url), retry: { maxRetries: 0 } });
      const error = (await noRetry.queue.cancel(LLAVA, { requestId: request_id }).catch((e: unknown) => e)) as ApiError<unknown>;
      expect(error).toBeInstanceOf(ApiError);
      expect(error.status).toBe(429);
      const raw = await fetch(`${emulator.url}/queue.fal.run/${LLAVA}/requests/${request_id}/cancel`, { method: 'PUT' });
      expect(raw.status).toBe(429);
      expect(raw.headers.get('retry-after')).toBeNull();
    });
  });

  it("500 on submit with fal's error_type body: not retried by the client, ApiError 500", async () => {
    await withEmulator({ faults: ['500@submit=1'] }, async (emulator, fal) => {
      const error = (await fal.queue.submit(LLAVA, { input: input() }).catch((e: unknown) => e)) as ApiError<{ error_type: string }>;
      expect(error.status).toBe(500);
      expect(error.body).toEqual({ detail: 'Internal server error', error_type: 'internal_error' });
      expect(emulator.stats()).toMatchObject({ submits: 1, accepted: 0 });
    });
  });

  for (const status of ['502', '503', '504'] as const) {
    it(`${status} on submit: the client retries it invisibly and the job is accepted once`, async () => {
      await withEmulator({ faults: [`${status}@submit=1x1`] }, async (emulator, fal) => {
        const raw = await fetch(`${emulator.url}/queue.fal.run/${LLAVA}`, { method: 'POST', body: JSON.stringify(input()) });
        expect(raw.status).toBe(Number(status));
        expect(raw.headers.get('x-fal-error-type')).toMatch(/^(runner_incomplete_response|runner_scheduling_failure|request_timeout)$/);
        const result = await fal.subscribe(LLAVA, { input: input(), pollInterval: 10 });
        expect(result.data.output).toMatch(/^\[emulated:/);
        expect(emulator.stats()).toMatchObject({ submits: 2, accepted: 1, billed: 1 });
      });
    });
  }

  it("500 on status: the client's status retries cover it and subscribe still completes", async () => {
    await withEmulator({ faults: ['500@status=1x1'] }, async (emulator, fal) => {
      const result = await fal.subscribe(LLAVA, { input: input(), pollInterval: 10 });
      expect(result.data.output).toMatch(/^\[emulated:/);
      expect(emulator.stats().faults).toEqual({ '500@status': 1 });
    });
  });

  it('503 on result: retried by the client, the paid result still arrives, billed once', async () => {
    await withEmulator({ faults: ['503@result=1x1'] }, async (emulator, fal) => {
      const result = await fal.subscribe(LLAVA, { input: input(), pollInterval: 10 });
      expect(result.data.output).toMatch(/^\[emulated:/);
      expect(emulator.stats()).toMatchObject({ resultCalls: 2, billed: 1, faults: { '503@result': 1 } });
    });
  });

  it('504 with X-Fal-Request-Timeout-Type: user: ApiError.isUserTimeout, never retried, not billed', async () => {
    await withEmulator({ faults: ['user-timeout=1'] }, async (emulator, fal) => {
      const error = (await fal.subscribe(LLAVA, { input: input(), pollInterval: 10 }).catch((e: unknown) => e)) as ApiError<unknown>;
      expect(error.status).toBe(504);
      expect(error.isUserTimeout).toBe(true);
      expect(emulator.stats()).toMatchObject({ resultCalls: 1, billed: 0 });
    });
  });

  it('a job that completes with a server error: COMPLETED status carries the error, the result GET answers 503, nothing billed', async () => {
    await withEmulator({ faults: ['job-error=1'] }, async (emulator, fal) => {
      const { request_id } = await fal.queue.submit(LLAVA, { input: input() });
      let status = await fal.queue.status(LLAVA, { requestId: request_id });
      while (status.status !== 'COMPLETED') status = await fal.queue.status(LLAVA, { requestId: request_id });
      expect(status).toMatchObject({ error: expect.any(String), error_type: 'runner_disconnected' });
      const error = (await fal.queue.result(LLAVA, { requestId: request_id }).catch((e: unknown) => e)) as ApiError<{ error_type: string }>;
      expect(error.status).toBe(503);
      expect(error.body.error_type).toBe('runner_disconnected');
      // The client cannot tell a failed job from a flaky gateway: it re-reads the result 3 more times (~7 s).
      expect(emulator.stats()).toMatchObject({ billed: 0, completed: 1, resultCalls: 4 });
    });
  });

  it('a job that completes with a model error: ValidationError 422 from the result, billed', async () => {
    await withEmulator({ faults: ['model-error=1'] }, async (emulator, fal) => {
      const error = (await fal.subscribe(LLAVA, { input: input(), pollInterval: 10 }).catch((e: unknown) => e)) as ValidationError;
      expect(error).toBeInstanceOf(ValidationError);
      expect(error.fieldErrors[0]).toMatchObject({ type: 'model_error' });
      expect(emulator.stats()).toMatchObject({ billed: 1, resultCalls: 1 });
    });
  });

  it('a submit whose answer is lost after the job was accepted: the client resubmits and fal bills twice', async () => {
    await withEmulator({ faults: ['drop@submit=1x1'] }, async (emulator, fal) => {
      const result = await fal.subscribe(LLAVA, { input: input(), pollInterval: 10 });
      expect(result.data.output).toMatch(/^\[emulated:/);
      // Wait for the orphan to finish: two accepted jobs for one input, both billed.
      for (let i = 0; i < 100 && emulator.stats().completed < 2; i++) await new Promise((r) => setImmediate(r));
      expect(emulator.stats()).toMatchObject({ submits: 2, accepted: 2, billed: 2, duplicateBilled: 1 });
    });
  });

  it("a request that never answers: only the caller's own abort signal ends it", async () => {
    await withEmulator({ faults: ['hang@status=1'] }, async (_emulator, fal) => {
      const { request_id } = await fal.queue.submit(LLAVA, { input: input() });
      const error = (await fal.queue.status(LLAVA, { requestId: request_id, abortSignal: AbortSignal.timeout(300) }).catch((e: unknown) => e)) as Error;
      expect(error.name).toMatch(/TimeoutError|AbortError/);
    });
  });

  it("a runner that never finishes: the client's own timeout cancels it, which frees the runner", async () => {
    await withEmulator({ faults: ['stuck=1x1'], runners: 1 }, async (emulator, fal) => {
      const error = (await fal.subscribe(LLAVA, { input: input('stuck'), pollInterval: 20, timeout: 500 }).catch((e: unknown) => e)) as Error;
      expect(error.message).toMatch(/timed out/);
      for (let i = 0; i < 200 && emulator.stats().cancels < 1; i++) await new Promise((r) => setTimeout(r, 5));
      expect(emulator.stats()).toMatchObject({ cancels: 1, inProgress: 0, billed: 0 });
      const next = await fal.subscribe(LLAVA, { input: input('next'), pollInterval: 10 });
      expect(next.data.output).toMatch(/^\[emulated:/);
    });
  });

  it('a locked account (exhausted balance): 403 on submit', async () => {
    await withEmulator({ locked: true }, async (emulator, fal) => {
      const error = (await fal.queue.submit(LLAVA, { input: input() }).catch((e: unknown) => e)) as ApiError<{ detail: string }>;
      expect(error.status).toBe(403);
      expect(error.body.detail).toMatch(/locked/);
      emulator.setLocked(false);
      await expect(fal.queue.submit(LLAVA, { input: input() })).resolves.toMatchObject({ status: 'IN_QUEUE' });
    });
  });
});
