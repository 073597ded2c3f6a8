import type { Clock } from '../time.js';
import { contentIdentity, looksLikeImage, type ImageLookup } from './models.js';
import type { StatsRecorder } from './stats.js';

/** A URL an object store signed (SigV4 query auth): S3, R2, MinIO, GCS's interoperability. */
export function isPresignedUrl(url: string): boolean {
  return /^https?:\/\//i.test(url) && /[?&]X-Amz-Signature=/i.test(url);
}

/** Strings of a fal input that are presigned URLs, wherever they sit. */
function presignedUrlsOf(value: unknown, found: string[] = []): string[] {
  if (typeof value === 'string') {
    if (isPresignedUrl(value)) found.push(value);
  } else if (Array.isArray(value)) for (const item of value) presignedUrlsOf(item, found);
  else if (value !== null && typeof value === 'object') for (const item of Object.values(value)) presignedUrlsOf(item, found);
  return found;
}

/** When a SigV4 presigned URL stops being valid (ms), from its X-Amz-Date and X-Amz-Expires; undefined if it does not say. */
export function presignedExpiry(url: string): number | undefined {
  const query = new URL(url).searchParams;
  const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(query.get('X-Amz-Date') ?? '');
  const expires = Number(query.get('X-Amz-Expires'));
  if (!date || !Number.isFinite(expires)) return undefined;
  const [, y, mo, d, h, mi, s] = date.map(Number) as [number, number, number, number, number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, s) + expires * 1000;
}

/** Most bytes one image download reads (fal's own limits are of this order). */
const MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;
const DOWNLOAD_TIMEOUT_MS = 30_000;

/**
 * The runner's downloads of presigned image URLs, as fal makes them when a request starts (not
 * when it is submitted: a URL that expired while the request waited in the queue fails). Expiry is
 * judged by the emulator's clock from X-Amz-Date + X-Amz-Expires, as S3 does (403 AccessDenied
 * "Request has expired"), because test object stores (s3rver) do not check it; then the bytes are
 * fetched, and the image's identity is that of its bytes. Other URLs are not fetched (tests use
 * placeholder hosts).
 */
export class ImageDownloads {
  readonly #clock: Pick<Clock, 'now'>;
  readonly #stats: StatsRecorder;
  readonly #done = new Map<string, ImageLookup>();

  constructor(clock: Pick<Clock, 'now'>, stats: StatsRecorder) {
    this.#clock = clock;
    this.#stats = stats;
  }

  /** Downloads the input's presigned URLs; returns a release that forgets them once the model ran. */
  async prefetch(input: unknown): Promise<() => void> {
    const urls = presignedUrlsOf(input);
    if (urls.length === 0) return () => undefined;
    await Promise.all(
      urls.map(async (url) => {
        const lookup = await this.#download(url);
        this.#stats.count('imageDownloads');
        if (!lookup.ok) this.#stats.count('refusedDownloads');
        this.#done.set(url, lookup);
      }),
    );
    return () => {
      for (const url of urls) this.#done.delete(url);
    };
  }

  /** What a prefetched URL gave, or undefined for any other URL. */
  lookup(url: string): ImageLookup | undefined {
    return this.#done.get(url);
  }

  async #download(url: string): Promise<ImageLookup> {
    const shown = url.split('?')[0] ?? url;
    const expiry = presignedExpiry(url);
    if (expiry !== undefined && this.#clock.now() > expiry)
      return { ok: false, type: 'file_download_error', reason: `could not download ${shown} (403 AccessDenied: Request has expired)` };
    try {
      const answer = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
      if (!answer.ok) {
        await answer.body?.cancel();
        return { ok: false, type: 'file_download_error', reason: `could not download ${shown} (${answer.status})` };
      }
      const bytes = new Uint8Array(await answer.arrayBuffer());
      if (bytes.byteLength > MAX_DOWNLOAD_BYTES) return { ok: false, type: 'file_too_large', reason: `${shown} is larger than ${MAX_DOWNLOAD_BYTES} bytes` };
      if (!looksLikeImage(bytes)) return { ok: false, reason: `${shown}: the file is not a PNG, JPEG, GIF, WebP or BMP image` };
      return { ok: true, identity: contentIdentity(bytes) };
    } catch (error) {
      return { ok: false, type: 'file_download_error', reason: `could not download ${shown} (${(error as Error).message})` };
    }
  }
}
