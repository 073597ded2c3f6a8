import { describe, expect, it } from 'vitest';
import { presignedExpiry } from '../../src/emulator/image-downloads.js';
import { hasS3References, redactSignedUrls } from '../../src/storage/sign-input.js';

describe('s3:// images in a fal input', () => {
  it('finds them wherever they sit, as whole string values only', () => {
    expect(hasS3References({ image_url: 's3://b/k.png', prompt: 'x' })).toBe(true);
    expect(hasS3References({ images: [{ image_url: 's3://b/k.png' }] })).toBe(true);
    expect(hasS3References({ image_url: 'https://e.com/k.png', prompt: 'about s3://b/k.png' })).toBe(false);
  });

  it('cuts the query (signature, key id) of a presigned URL quoted in an error', () => {
    const quoted =
      'Could not load the image: https://b.s3.amazonaws.com/p/cat.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261207&X-Amz-Signature=abc123 (403)';
    expect(redactSignedUrls(quoted)).toBe('Could not load the image: https://b.s3.amazonaws.com/p/cat.png?… (403)');
    expect(redactSignedUrls('see https://example.com/a.png?size=2')).toBe('see https://example.com/a.png?size=2');
  });

  it('the emulator reads a SigV4 URL’s expiry from X-Amz-Date + X-Amz-Expires, as S3 does', () => {
    expect(presignedExpiry('http://h/b/k?X-Amz-Date=20261207T034533Z&X-Amz-Expires=3600&X-Amz-Signature=x')).toBe(Date.UTC(2026, 11, 7, 4, 45, 33));
    expect(presignedExpiry('http://h/b/k?X-Amz-Signature=x')).toBeUndefined();
  });
});
