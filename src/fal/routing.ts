/**
 * The routing contract: with FAL_BASE_URL=<base>, fal traffic for `https://<host>/<path>?<query>`
 * goes to `<base>/<host>/<path>?<query>`, for fal's hosts (`queue.fal.run`, `fal.run`,
 * `rest.fal.ai`, `*.fal.media`, and their siblings under fal.run / fal.ai). Applied in the
 * client's `fetch`, the only hook that sees every request, including storage PUTs.
 */
const FAL_HOST = /(^|\.)fal\.(run|ai|media)$/i;

export function isFalHost(hostname: string): boolean {
  return FAL_HOST.test(hostname);
}

/**
 * An https URL already in the form URL parsing would give back (lower-case host, no port, nothing
 * in the path or query that parsing encodes or resolves): what @fal-ai/client builds for every
 * call. Such a URL is routed with string operations; any other is parsed.
 */
const PLAIN_URL =
  /^https:\/\/([a-z0-9-]+(?:\.[a-z0-9-]+)+)((?:\/[A-Za-z0-9\-_~!$&'()*+,;=:@%]+(?:\.[A-Za-z0-9\-_~!$&'()*+,;=:@%]*)*)*\/?)(\?[A-Za-z0-9\-._~!$&()*+,;=:@%/?]+)?$/;

/** Returns the URL to call: rewritten under `baseUrl` for fal's hosts, unchanged otherwise. */
export function routeFalUrl(url: string, baseUrl: string): string {
  const plain = PLAIN_URL.exec(url);
  // (%2e is a dot to URL parsing: a path holding one may have segments to resolve.)
  if (plain && !/%2e/i.test(plain[2] ?? '')) {
    const [, host = '', path = '', query = ''] = plain;
    if (!isFalHost(host)) return url;
    return `${baseUrl.replace(/\/+$/, '')}/${host}${path === '' ? '/' : path}${query}`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (!isFalHost(parsed.hostname)) return url;
  return `${baseUrl.replace(/\/+$/, '')}/${parsed.host}${parsed.pathname}${parsed.search}`;
}

type FetchInput = Parameters<typeof fetch>[0];

function urlOf(input: FetchInput): string {
  if (typeof input === 'string') return input;
  if (input instanceof URL) return input.href;
  return input.url;
}

/** A `fetch` that applies the routing contract before handing the request to `fetchImpl`. */
export function createRoutedFetch(baseUrl: string, fetchImpl: typeof fetch = globalThis.fetch): typeof fetch {
  return (input, init) => {
    const url = urlOf(input);
    const routed = routeFalUrl(url, baseUrl);
    if (routed === url) return fetchImpl(input, init);
    return fetchImpl(input instanceof Request ? new Request(routed, input) : routed, init);
  };
}
