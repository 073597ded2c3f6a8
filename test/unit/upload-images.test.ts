import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { ConfigError, FalHttpError, FalTimeoutError, FalTransportError, MissingCredentialsError } from '../../src/errors.js';
import { detectImageType } from '../../src/manifest/image-type.js';
import { classifyUploadError } from '../../src/manifest/upload-images.js';
import { uploadStore } from '../../src/queue/upload-cache.js';
import { pngBytes } from '../helpers/images.js';

function http(status: number, extra: { retryAfterMs?: number; retryable?: boolean } = {}): FalHttpError {
  return new FalHttpError({
    status,
    endpoint: 'fal storage',
    operation: 'upload',
    body: { detail: `status ${status}` },
    requestId: undefined,
    retryAfterMs: extra.retryAfterMs,
    errorType: undefined,
    timeoutType: undefined,
    retryable: extra.retryable,
  });
}

describe('classifyUploadError', () => {
  it.each([
    ['500', http(500), 'retry'],
    ['503', http(503), 'retry'],
    ['408', http(408), 'retry'],
    ['429', http(429, { retryAfterMs: 1500 }), 'retry'],
    ['500 fal says not retryable', http(500, { retryable: false }), 'permanent'],
    ['400', http(400), 'permanent'],
    ['404', http(404), 'permanent'],
    ['413', http(413), 'permanent'],
    ['422', http(422), 'permanent'],
    ['transport', new FalTransportError('upload', 'fal storage', 'ECONNRESET', 'reset'), 'retry'],
    ['time-out', new FalTimeoutError('upload', 'no answer within 30000 ms'), 'retry'],
    ['an unknown error', new TypeError('fetch failed'), 'retry'],
    ['401', http(401), 'fatal'],
    ['402', http(402), 'fatal'],
    ['403', http(403), 'fatal'],
    ['no credentials', new MissingCredentialsError('no key'), 'fatal'],
  ] as const)('%s → %s', (_name, error, kind) => {
    expect(classifyUploadError(error).kind).toBe(kind);
  });

  it("keeps fal's Retry-After as the floor of the next attempt's delay, and says why in the reason", () => {
    expect(classifyUploadError(http(429, { retryAfterMs: 1500 }))).toEqual({ kind: 'retry', reason: 'fal answered 429: status 429', retryAfterMs: 1500 });
  });

  it('turns an account refusal into a ConfigError that says how to go on', () => {
    const verdict = classifyUploadError(http(401));
    expect(verdict.kind === 'fatal' && verdict.error).toBeInstanceOf(ConfigError);
    expect(verdict.kind === 'fatal' && verdict.error.message).toMatch(/^fal storage refused to take local images \(401: status 401\).*--inline-images/);
  });
});

describe('detectImageType', () => {
  it('accepts the five types fal decodes, named by their bytes', async () => {
    const raw = sharp({ create: { width: 4, height: 4, channels: 3, background: '#c0ffee' } });
    expect(await detectImageType(pngBytes('x'))).toEqual({ ok: true, mime: 'image/png', ext: 'png' });
    expect(await detectImageType(await raw.clone().jpeg().toBuffer())).toEqual({ ok: true, mime: 'image/jpeg', ext: 'jpg' });
    expect(await detectImageType(await raw.clone().webp().toBuffer())).toEqual({ ok: true, mime: 'image/webp', ext: 'webp' });
    expect(await detectImageType(await raw.clone().gif().toBuffer())).toEqual({ ok: true, mime: 'image/gif', ext: 'gif' });
    const bmp = Buffer.alloc(58);
    bmp.write('BM', 0, 'latin1');
    bmp.writeUInt32LE(58, 2);
    bmp.writeUInt32LE(54, 10);
    bmp.writeUInt32LE(40, 14);
    expect(await detectImageType(bmp)).toMatchObject({ ok: true, mime: 'image/bmp' });
  });

  it('says what the bytes are instead: text, another type, or nothing it knows', async () => {
    expect(await detectImageType(Buffer.from('id,caption\n1,hello\n'))).toEqual({ ok: false, found: 'text/plain' });
    expect(await detectImageType(Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1'))).toEqual({ ok: false, found: 'application/pdf' });
    expect(await detectImageType(Buffer.from('RIFF\x24\x00\x00\x00WAVEfmt ', 'latin1'))).toEqual({ ok: false, found: 'audio/wav' });
    expect(
      await detectImageType(
        await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } })
          .tiff()
          .toBuffer(),
      ),
    ).toEqual({ ok: false, found: 'image/tiff' });
    expect(await detectImageType(Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x80]))).toEqual({ ok: false, found: 'unrecognised binary data' });
    expect(await detectImageType(Buffer.alloc(0))).toEqual({ ok: false, found: 'empty' });
  });
});

describe('upload settings', () => {
  it('defaults to uploads at 8 at once, a 6-day cache, no downscale', () => {
    expect(resolveConfig()).toMatchObject({ inlineImages: false, uploadConcurrency: 8, maxImageSide: undefined, uploadCacheTtlMs: 6 * 24 * 3600_000 });
  });

  it('refuses values it cannot use, naming the flag', () => {
    expect(() => resolveConfig({}, { uploadConcurrency: 0 })).toThrow('Expected --upload-concurrency to be an integer from 1 to 256, got 0');
    expect(() => resolveConfig({}, { maxImageSide: 8 })).toThrow('Expected --max-side to be an integer from 16 to 16384, got 8');
    expect(() => resolveConfig({}, { uploadCacheTtlMs: 8 * 24 * 3600_000 })).toThrow(/Expected uploadCacheTtlMs to be an integer from 1000 to 604800000/);
  });

  it("keeps fal's own uploads apart from those of another base URL (an emulator's die with it)", () => {
    expect(uploadStore(undefined)).toBe('fal');
    expect(uploadStore('http://127.0.0.1:4000')).toMatch(/^b[0-9a-f]{12}$/);
    expect(uploadStore('http://127.0.0.1:4000/')).toBe(uploadStore('http://127.0.0.1:4000'));
    expect(uploadStore('http://127.0.0.1:4001')).not.toBe(uploadStore('http://127.0.0.1:4000'));
  });
});
