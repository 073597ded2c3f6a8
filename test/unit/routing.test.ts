import { describe, expect, it } from 'vitest';
import { routeFalUrl } from '../../src/fal/routing.js';
import { describeFalRequest } from '../../src/fal/transport.js';

describe('the FAL_BASE_URL routing contract', () => {
  it.each([
    ['https://queue.fal.run/fal-ai/llava-next', 'http://127.0.0.1:9/queue.fal.run/fal-ai/llava-next'],
    ['https://queue.fal.run/fal-ai/llava-next/requests/abc/status?logs=0', 'http://127.0.0.1:9/queue.fal.run/fal-ai/llava-next/requests/abc/status?logs=0'],
    ['https://fal.run/fal-ai/llava-next', 'http://127.0.0.1:9/fal.run/fal-ai/llava-next'],
    ['https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3', 'http://127.0.0.1:9/rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3'],
    ['https://v3.fal.media/files/x/y.png', 'http://127.0.0.1:9/v3.fal.media/files/x/y.png'],
    ['https://example.com/a.png', 'https://example.com/a.png'],
    ['http://127.0.0.1:9/v3.fal.media/upload/t', 'http://127.0.0.1:9/v3.fal.media/upload/t'],
  ])('%s → %s', (url, expected) => {
    expect(routeFalUrl(url, 'http://127.0.0.1:9/')).toBe(expected);
  });

  it('keeps a path on the base', () => {
    expect(routeFalUrl('https://queue.fal.run/a/b', 'https://proxy.example/fal')).toBe('https://proxy.example/fal/queue.fal.run/a/b');
  });

  it.each([
    ['http://x/queue.fal.run/fal-ai/llava-next', 'POST', 'submit', undefined],
    ['https://queue.fal.run/fal-ai/llava-next/requests/r1/status?logs=0', 'GET', 'status', 'r1'],
    ['http://x/queue.fal.run/fal-ai/llava-next/requests/r1/status/stream', 'GET', 'stream', 'r1'],
    ['http://x/queue.fal.run/fal-ai/llava-next/requests/r1', 'GET', 'result', 'r1'],
    ['http://x/queue.fal.run/fal-ai/llava-next/requests/r1/cancel', 'PUT', 'cancel', 'r1'],
    ['http://x/fal.run/fal-ai/llava-next', 'POST', 'run', undefined],
    ['http://x/rest.fal.ai/storage/upload/initiate', 'POST', 'upload', undefined],
  ])('names %s %s as %s', (url, method, operation, requestId) => {
    expect(describeFalRequest(url, method)).toMatchObject({ operation, requestId });
  });
});
