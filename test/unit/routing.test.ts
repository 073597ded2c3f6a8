import fc from 'fast-check';
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

  it('routes a URL the client builds by string, exactly as URL parsing would', () => {
    const parsed = (url: string, base: string): string => {
      let at: URL;
      try {
        at = new URL(url);
      } catch {
        return url;
      }
      return /(^|\.)fal\.(run|ai|media)$/i.test(at.hostname) ? `${base.replace(/\/+$/, '')}/${at.host}${at.pathname}${at.search}` : url;
    };
    const host = fc.constantFrom(
      'queue.fal.run',
      'fal.run',
      'rest.alpha.fal.ai',
      'v3.fal.media',
      'QUEUE.fal.run',
      'example.com',
      'queue.fal.run:443',
      'a.fal.run:8443',
    );
    const segment = fc.oneof(
      fc.constantFrom('fal-ai', 'llava-next', 'requests', 'status', 'stream', '.', '..', '%2e%2E', '.x', 'a.', 'a b', 'é', '%20', "it's", ''),
      fc.webSegment(),
    );
    const query = fc.oneof(
      fc.constant(''),
      fc.constant('?'),
      fc.constantFrom('?logs=0', "?q='x'", '?a b', '?x=%2e'),
      fc.webQueryParameters().map((q) => `?${q}`),
    );
    fc.assert(
      fc.property(host, fc.array(segment, { maxLength: 6 }), query, (h, segments, q) => {
        const url = `https://${h}${segments.map((s) => `/${s}`).join('')}${q}`;
        expect(routeFalUrl(url, 'http://127.0.0.1:9/')).toBe(parsed(url, 'http://127.0.0.1:9/'));
      }),
      { numRuns: 2000 },
    );
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
