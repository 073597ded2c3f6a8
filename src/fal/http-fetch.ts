import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { brotliDecompressSync, createBrotliDecompress, createGunzip, createInflate, gunzipSync, inflateSync } from 'node:zlib';

/**
 * How long an idle keep-alive connection is kept for the next call. Below the 5 s that common
 * servers (Node's own included) keep one open, so a call never goes out on a connection the server
 * is closing at that moment.
 */
const IDLE_SOCKET_MS = 4000;

const agents = {
  'http:': new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
  'https:': new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
};

/** Answers whose body was read whole before they were handed over (see createHttpFetch). */
const whole = new WeakSet<Response>();

/** Whether the answer's body is already in memory: a cut-off connection can no longer surface while it is read. */
export function isWholeAnswer(response: Response): boolean {
  return whole.has(response);
}

type Body = string | Uint8Array | undefined;

function bodyOf(body: RequestInit['body']): Body | null {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string' || body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return null;
}

function headersOf(init: RequestInit['headers']): Record<string, string> | undefined {
  if (init === undefined) return {};
  if (init instanceof Headers || Array.isArray(init)) return Object.fromEntries(init instanceof Headers ? init.entries() : init);
  if (typeof init !== 'object') return undefined;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(init)) if (typeof value === 'string') headers[name] = value;
  return headers;
}

function responseHeaders(message: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = message.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i] as string, raw[i + 1] as string);
  return headers;
}

interface Target {
  protocol: string;
  hostname: string;
  port: string;
  path: string;
}

/** Parsed origins (scheme, host, port): a worker calls one or two, thousands of times. */
const origins = new Map<string, Omit<Target, 'path'> | null>();

/** Where a request goes, parsing only its origin (once): the path is sent as it is when it can be. */
function targetOf(url: string): Target {
  const slash = url.indexOf('/', url.indexOf('//') + 2);
  const origin = slash < 0 ? url : url.slice(0, slash);
  let parsed = origins.get(origin);
  if (parsed === undefined) {
    const { protocol, hostname, port, username, password } = new URL(origin);
    // Credentials in the URL, or a host name URL parsing rewrites: left to URL parsing, every time.
    parsed = username || password || `${protocol}//${hostname}${port ? `:${port}` : ''}` !== origin ? null : { protocol, hostname: hostname.replace(/^\[(.*)\]$/, '$1'), port };
    if (origins.size < 100) origins.set(origin, parsed);
  }
  const path = slash < 0 ? '/' : url.slice(slash).split('#')[0] ?? '/';
  // Only printable ASCII goes into a request line as it is; anything else is encoded by URL parsing.
  if (parsed !== null && /^[\x21-\x7e]*$/.test(path)) return { ...parsed, path };
  const full = new URL(url);
  return { protocol: full.protocol, hostname: full.hostname.replace(/^\[(.*)\]$/, '$1'), port: full.port, path: `${full.pathname}${full.search}` };
}

/**
 * A `fetch` for fal's queue calls over node:http(s) with keep-alive agents: the same answers as the
 * global fetch, for about half its CPU per call (no WHATWG request, stream and signal machinery
 * around each call), which is most of what a worker spends per row when fal answers at once.
 * A non-streamed answer is read whole before it is handed over (as the transport would read it
 * anyway); a `text/event-stream` one streams. What it does not handle the same way it leaves to
 * the global fetch: a Request object, a body that is not a string or bytes (uploads of Blobs),
 * a scheme other than http(s), and a redirect (fetch follows it).
 */
export function createHttpFetch(fallback: typeof fetch = globalThis.fetch): typeof fetch {
  return (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : undefined;
    const body = bodyOf(init?.body);
    const headers = headersOf(init?.headers);
    const scheme = url?.startsWith('https:') ? 'https:' : url?.startsWith('http:') ? 'http:' : undefined;
    if (url === undefined || body === null || headers === undefined || scheme === undefined) return fallback(input, init);
    const signal = init?.signal ?? undefined;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const to = targetOf(url);
    return new Promise<Response>((resolve, reject) => {
      const options = { ...to, method: init?.method ?? 'GET', headers, agent: agents[scheme], ...(signal ? { signal } : {}) };
      const request = (scheme === 'https:' ? httpsRequest : httpRequest)(options, (message) => {
        const status = message.statusCode ?? 0;
        if (status >= 300 && status < 400 && message.headers.location !== undefined) {
          message.resume();
          fallback(input, init).then(resolve, reject);
          return;
        }
        const answer = { status, statusText: message.statusMessage ?? '', headers: responseHeaders(message) };
        // A server may compress although nobody asked (no Accept-Encoding means "any" to HTTP): the
        // global fetch decodes gzip, deflate and br, and so must this one.
        const coding = (message.headers['content-encoding'] ?? '').trim().toLowerCase();
        const decoded = coding === 'gzip' || coding === 'x-gzip' || coding === 'deflate' || coding === 'br';
        if (decoded) {
          answer.headers.delete('content-encoding');
          answer.headers.delete('content-length');
        }
        if ((message.headers['content-type'] ?? '').includes('text/event-stream') && status >= 200 && status < 300 && status !== 204) {
          const stream = !decoded ? message : message.pipe(coding === 'br' ? createBrotliDecompress() : coding === 'deflate' ? createInflate() : createGunzip());
          resolve(new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, answer));
          return;
        }
        const chunks: Buffer[] = [];
        message.on('data', (chunk: Buffer) => chunks.push(chunk));
        message.once('error', (error) => reject(signal?.aborted ? signal.reason : error));
        message.once('close', () => {
          if (!message.complete) {
            reject(signal?.aborted ? signal.reason : Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' }));
            return;
          }
          try {
            // A 204 or 304 takes no body, not even an empty one.
            const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
            const body = !decoded || raw.length === 0 ? raw : coding === 'br' ? brotliDecompressSync(raw) : coding === 'deflate' ? inflateSync(raw) : gunzipSync(raw);
            const bytes = status === 204 || status === 304 ? null : body;
            const response = new Response(bytes, answer);
            whole.add(response);
            resolve(response);
          } catch (error) {
            // A status a Response cannot carry (outside 200–599).
            reject(error);
          }
        });
      });
      request.once('error', (error) => reject(signal?.aborted ? signal.reason : error));
      request.end(body);
    });
  };
}
