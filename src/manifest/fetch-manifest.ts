import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { ManifestError } from '../errors.js';
import { SECOND, formatDuration } from '../time.js';
import { formatBytes } from './format-bytes.js';

/** Limits on downloading a manifest given as an http(s) URL. */
export interface FetchManifestOptions {
  /**
   * Longest the whole download may take (connecting, the answer's head and all of its body),
   * redirects included. A server that hangs fails the download instead of holding it forever.
   * @default 30 s (flag --fetch-timeout)
   */
  timeoutMs?: number;
  /**
   * Largest manifest accepted, in bytes: a larger one (by its Content-Length, or as it streams)
   * fails the download before more is written. The body goes to a temp file, never into memory.
   * @default 1 GiB (flag --max-manifest-bytes)
   */
  maxBytes?: number;
  /** Redirects followed (3xx with a Location) before giving up. @default 5 (flag --max-redirects) */
  maxRedirects?: number;
  signal?: AbortSignal | undefined;
  /** The HTTP client; default: the global fetch. */
  fetch?: typeof fetch;
}

export const FETCH_DEFAULTS = { timeoutMs: 30 * SECOND, maxBytes: 1024 * 1024 * 1024, maxRedirects: 5 } as const;

/** A manifest downloaded to a temp file of its own; `remove()` deletes it (and its folder). */
export interface FetchedManifest {
  /** The temp file, named as the URL's last path segment (`jobs.csv`). */
  path: string;
  /** The URL asked for. */
  url: string;
  bytes: number;
  remove(): Promise<void>;
}

export function isManifestUrl(manifest: string): boolean {
  return /^https?:\/\//i.test(manifest);
}

/** The URL as shown in messages and records: credentials and the query hidden (either may carry a token). */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    const query = parsed.search === '' ? '' : '?…';
    parsed.search = '';
    return `${parsed.toString()}${query}`;
  } catch {
    return url;
  }
}

function fileNameOf(url: URL): string {
  const last = decodeURIComponent(
    url.pathname
      .split('/')
      .filter((part) => part !== '')
      .pop() ?? '',
  );
  const safe = last
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[.-]+/, '')
    .slice(0, 100);
  return safe === '' ? 'manifest.csv' : safe;
}

/**
 * Downloads a manifest to a temp file, streaming (the body is never held in memory), with a time
 * limit on the whole download, a size cap and a redirect limit. Every failure is a
 * MANIFEST_UNREADABLE error that says which limit or which answer, and nothing is left on disk.
 */
export async function fetchManifest(url: string, options: FetchManifestOptions = {}): Promise<FetchedManifest> {
  const timeoutMs = options.timeoutMs ?? FETCH_DEFAULTS.timeoutMs;
  const maxBytes = options.maxBytes ?? FETCH_DEFAULTS.maxBytes;
  const maxRedirects = options.maxRedirects ?? FETCH_DEFAULTS.maxRedirects;
  const fetchImpl = options.fetch ?? fetch;
  const shown = displayUrl(url);
  const fail = (reason: string, cause?: unknown): ManifestError =>
    new ManifestError('MANIFEST_UNREADABLE', `Cannot download manifest ${shown}: ${reason}.`, { file: shown }, cause === undefined ? {} : { cause });

  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new Error('timeout')), timeoutMs);
  timer.unref();
  const signal = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;
  const dir = await mkdtemp(join(tmpdir(), 'falbatch-manifest-'));
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    let current = new URL(url);
    let response: Response;
    for (let redirects = 0; ; redirects++) {
      if (current.protocol !== 'http:' && current.protocol !== 'https:')
        throw fail(`a redirect leads to ${current.protocol} (only http and https are followed)`);
      response = await fetchImpl(current, { redirect: 'manual', signal, headers: { accept: 'text/csv, text/plain;q=0.9, */*;q=0.5' } });
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel().catch(() => undefined);
        if (redirects >= maxRedirects) throw fail(`more than ${maxRedirects} redirects (--max-redirects)`);
        current = new URL(location, current);
        continue;
      }
      break;
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw fail(`the server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    const tooBig = `it is larger than ${formatBytes(maxBytes)} (--max-manifest-bytes ${maxBytes})`;
    if (Number.isFinite(declared) && declared > maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw fail(`${tooBig}: Content-Length says ${formatBytes(declared)}`);
    }
    const path = join(dir, fileNameOf(current));
    let bytes = 0;
    const body = response.body ? Readable.fromWeb(response.body as unknown as NodeReadableStream<Uint8Array>) : Readable.from([]);
    await pipeline(
      body,
      async function* (source: AsyncIterable<Uint8Array>) {
        for await (const chunk of source) {
          bytes += chunk.byteLength;
          if (bytes > maxBytes) throw fail(tooBig);
          yield chunk;
        }
      },
      createWriteStream(path, { flags: 'wx' }),
      { signal },
    );
    return { path, url, bytes, remove };
  } catch (error) {
    await remove();
    if (error instanceof ManifestError) throw error;
    if (options.signal?.aborted) throw error;
    if (timeout.signal.aborted) throw fail(`no complete answer within ${formatDuration(timeoutMs)} (--fetch-timeout)`, error);
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw fail(cause?.code ?? cause?.message ?? (error as Error).message, error);
  } finally {
    clearTimeout(timer);
  }
}
