import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type AgentOptions as HttpsAgentOptions } from 'node:https';
import { pipeline, Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { proxySettings, TunnelAgent, type HttpProxy } from './proxy.js';

/**
 * How long an idle keep-alive connection is kept for the next call. Below the 5 s that common
 * servers (Node's own included) keep one open, so a call never goes out on a connection the server
 * is closing at that moment.
 */
const IDLE_SOCKET_MS = 4000;

/**
 * The most an answer may decode to: 256 MiB. fal's answers are JSON with file URLs, kilobytes; an
 * answer carrying its images inline (sync mode, data URIs) runs to tens of megabytes. A server
 * compressing a few kilobytes into gigabytes of output (a "zip bomb") stops here.
 */
export const DEFAULT_MAX_ANSWER_BYTES = 256 * 1024 * 1024;

export interface HttpFetchOptions {
  /**
   * The agents direct connections go through. Default: keep-alive agents of this fetch's own,
   * destroyed by its `close()`; agents passed in are their owner's to close.
   */
  agents?: { http?: HttpAgent; https?: HttpsAgent };
  /**
   * Options of the agents this fetch makes (its own direct ones and its proxy tunnels): a private
   * CA (`ca`), client certificates. Default: Node's.
   */
  agentOptions?: HttpsAgentOptions;
  /**
   * The most bytes an answer read whole (and a compressed stream) may decode to; more fails the
   * call, naming the cap. Default DEFAULT_MAX_ANSWER_BYTES (256 MiB): the memory one call may take.
   */
  maxAnswerBytes?: number;
  /** Where HTTPS_PROXY, HTTP_PROXY and NO_PROXY are read (once, here). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** For a scheme other than http(s): the global fetch. */
  fallback?: typeof fetch;
}

/** A fetch holding connections: `close()` lets them go (sockets in use too). */
export type HttpFetch = typeof fetch & { close(): void };

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

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Body;
  signal: AbortSignal | undefined;
  redirect: NonNullable<RequestInit['redirect']>;
}

/**
 * A call whose input is a Request, or whose body is a Blob, a form or a stream (uploads): read
 * into bytes, with the content type fetch would give it. Rare, so it may cost what it costs.
 */
async function slowCall(input: Parameters<typeof fetch>[0], init: RequestInit | undefined): Promise<Call> {
  const request = new Request(input, init?.body instanceof ReadableStream ? ({ ...init, duplex: 'half' } as RequestInit) : init);
  const bytes = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer());
  return {
    url: request.url,
    method: request.method,
    headers: Object.fromEntries(request.headers.entries()),
    body: bytes,
    signal: init?.signal ?? request.signal,
    redirect: request.redirect,
  };
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
    parsed =
      username || password || `${protocol}//${hostname}${port ? `:${port}` : ''}` !== origin
        ? null
        : { protocol, hostname: hostname.replace(/^\[(.*)\]$/, '$1'), port };
    if (origins.size < 100) origins.set(origin, parsed);
  }
  const path = slash < 0 ? '/' : (url.slice(slash).split('#')[0] ?? '/');
  // Only printable ASCII goes into a request line as it is; anything else is encoded by URL parsing.
  if (parsed !== null && /^[\x21-\x7e]*$/.test(path)) return { ...parsed, path };
  const full = new URL(url);
  return { protocol: full.protocol, hostname: full.hostname.replace(/^\[(.*)\]$/, '$1'), port: full.port, path: `${full.pathname}${full.search}` };
}

/** Statuses that redirect (with a Location), and how many are followed in a row, as fetch does. */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;
/** Headers a redirect to another origin drops (fetch's rule): credentials stay with their origin. */
const ORIGIN_BOUND = new Set(['authorization', 'cookie', 'proxy-authorization']);
const BODY_HEADERS = new Set(['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location']);

function schemeOf(url: string): 'http:' | 'https:' | undefined {
  return url.startsWith('https:') ? 'https:' : url.startsWith('http:') ? 'http:' : undefined;
}

function without(headers: Record<string, string>, names: Set<string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.has(name.toLowerCase())));
}

function originOf(url: string): string {
  return new URL(url).origin;
}

/** host[:port] as a request line and a Host header write it. */
function authorityOf(target: Target): string {
  const host = target.hostname.includes(':') ? `[${target.hostname}]` : target.hostname;
  return target.port ? `${host}:${target.port}` : host;
}

function tooLarge(cap: number): Error {
  return new Error(`the answer decodes to more than ${cap} bytes, the most one answer may take (maxAnswerBytes)`);
}

/** The decoder of a content coding fetch decodes (gzip, deflate, br); undefined for none or another. */
function decoderFor(coding: string): Transform | undefined {
  if (coding === 'gzip' || coding === 'x-gzip') return createGunzip();
  if (coding === 'deflate') return createInflate();
  if (coding === 'br') return createBrotliDecompress();
  return undefined;
}

/** Passes a stream on until it has carried more than `cap` bytes, then fails it. */
function capped(cap: number): Transform {
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > cap) callback(tooLarge(cap));
      else callback(null, chunk);
    },
  });
}

/**
 * A `fetch` for fal's calls over node:http(s) with keep-alive agents: the same answers as the
 * global fetch, for about half its CPU per call (no WHATWG request, stream and signal machinery
 * around each call), which is most of what a worker spends per row when fal answers at once.
 * A non-streamed answer is read whole before it is handed over (as the transport would read it
 * anyway), decoded as it comes (gzip, deflate, br) and capped (`maxAnswerBytes`); a
 * `text/event-stream` one streams. Redirects are followed as fetch follows them, uploads (Blob,
 * form and stream bodies, Request objects) read into bytes first, so that every call goes through
 * this fetch's agents and proxy: only a scheme other than http(s) goes to the global fetch.
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured (see proxy.ts). The agents are this fetch's own:
 * `close()` ends their connections.
 */
export function createHttpFetch(options: HttpFetchOptions = {}): HttpFetch {
  const fallback = options.fallback ?? globalThis.fetch;
  const cap = options.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES;
  const agentOptions: HttpsAgentOptions = { ...options.agentOptions, keepAlive: true, timeout: IDLE_SOCKET_MS };
  const owned: HttpAgent[] = [];
  const own = <A extends HttpAgent>(agent: A): A => {
    owned.push(agent);
    return agent;
  };
  const direct = {
    'http:': options.agents?.http ?? own(new HttpAgent(agentOptions)),
    'https:': options.agents?.https ?? own(new HttpsAgent(agentOptions)),
  };
  const proxies = proxySettings(options.env ?? process.env);
  const tunnels = new Map<HttpProxy, TunnelAgent>();
  const tunnelThrough = (proxy: HttpProxy): TunnelAgent => {
    let agent = tunnels.get(proxy);
    if (agent === undefined) {
      agent = own(new TunnelAgent(proxy, agentOptions));
      tunnels.set(proxy, agent);
    }
    return agent;
  };
  let closed = false;

  const send = (call: Call, scheme: 'http:' | 'https:', redirectsLeft: number): Promise<Response> => {
    const { signal } = call;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const to = targetOf(call.url);
    const proxy = proxies.proxyFor(scheme, to.hostname, to.port);
    const common = { method: call.method, ...(signal ? { signal } : {}) };
    const options: RequestOptions =
      proxy === undefined
        ? { ...to, ...common, headers: call.headers, agent: direct[scheme] }
        : scheme === 'https:'
          ? { ...to, ...common, headers: call.headers, agent: tunnelThrough(proxy) }
          : // Plain http through a proxy: the whole URL in the request line, to the proxy.
            {
              ...common,
              protocol: 'http:',
              hostname: proxy.hostname,
              port: proxy.port,
              path: `http://${authorityOf(to)}${to.path}`,
              setHost: false,
              headers: { host: authorityOf(to), ...call.headers, ...(proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}) },
              agent: direct['http:'],
            };
    return new Promise<Response>((resolve, reject) => {
      const fail = (error: unknown): void => reject(signal?.aborted ? signal.reason : error);
      const request = scheme === 'https:' ? httpsRequest(options, answered) : httpRequest(options, answered);
      function answered(message: IncomingMessage): void {
        const status = message.statusCode ?? 0;
        const location = message.headers.location;
        if (REDIRECTS.has(status) && location !== undefined && call.redirect !== 'manual') {
          message.resume();
          if (call.redirect === 'error') return fail(new TypeError(`redirect to ${location} refused (redirect: 'error')`));
          if (redirectsLeft === 0) return fail(new TypeError(`more than ${MAX_REDIRECTS} redirects`));
          let next: string;
          try {
            next = new URL(location, call.url).href;
          } catch {
            return fail(new TypeError(`a redirect to an invalid URL: ${location}`));
          }
          const nextScheme = schemeOf(next);
          if (nextScheme === undefined) return fail(new TypeError(`a redirect to a scheme fetch does not follow: ${next}`));
          // 303, and 301/302 after a POST, turn into a GET without the body (fetch's rule).
          const toGet =
            (status === 303 && call.method.toUpperCase() !== 'HEAD') || ((status === 301 || status === 302) && call.method.toUpperCase() === 'POST');
          let headers = toGet ? without(call.headers, BODY_HEADERS) : call.headers;
          if (originOf(next) !== originOf(call.url)) headers = without(headers, ORIGIN_BOUND);
          const body = toGet ? undefined : call.body;
          // Once the redirect's own body is read: its connection is then free for the next call.
          message.once('error', fail);
          message.once('close', () => {
            if (message.complete) resolve(send({ ...call, url: next, method: toGet ? 'GET' : call.method, headers, body }, nextScheme, redirectsLeft - 1));
            else fail(Object.assign(new Error('the connection closed during a redirect'), { code: 'ECONNRESET' }));
          });
          return;
        }
        const answer = { status, statusText: message.statusMessage ?? '', headers: responseHeaders(message) };
        const empty = status === 204 || status === 304 || call.method.toUpperCase() === 'HEAD';
        // A server may compress although nobody asked (no Accept-Encoding means "any" to HTTP): the
        // global fetch decodes gzip, deflate and br, and so must this one, as the bytes come.
        const decoder = empty ? undefined : decoderFor((message.headers['content-encoding'] ?? '').trim().toLowerCase());
        if (decoder) {
          answer.headers.delete('content-encoding');
          answer.headers.delete('content-length');
        }
        if ((message.headers['content-type'] ?? '').includes('text/event-stream') && status >= 200 && status < 300 && !empty) {
          const stream = decoder ? pipeline(message, decoder, capped(cap), () => undefined) : message;
          resolve(new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, answer));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        let over = false;
        const take = (chunk: Buffer): void => {
          if (over) return;
          size += chunk.length;
          if (size > cap) {
            over = true;
            fail(tooLarge(cap));
            decoder?.destroy();
            message.destroy();
            return;
          }
          chunks.push(chunk);
        };
        // Whole when the message has ended complete and, if coded, its decoder has flushed.
        let pending = decoder ? 2 : 1;
        const finish = (): void => {
          if (--pending > 0 || over) return;
          try {
            const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
            // A 204 or 304 takes no body, not even an empty one.
            const response = new Response(status === 204 || status === 304 ? null : raw, answer);
            whole.add(response);
            resolve(response);
          } catch (error) {
            // A status a Response cannot carry (outside 200–599).
            reject(error);
          }
        };
        let received = 0;
        if (decoder) {
          decoder.on('data', take);
          decoder.once('error', (error) => {
            // A body that does not decode: the rest of it is of no use.
            fail(error);
            message.destroy();
          });
          decoder.once('end', finish);
        }
        message.on('data', (chunk: Buffer) => {
          if (decoder === undefined) return take(chunk);
          received += chunk.length;
          decoder.write(chunk);
        });
        message.once('error', fail);
        message.once('end', () => {
          if (decoder === undefined) return;
          // An empty body says nothing in any coding.
          if (received > 0) decoder.end();
          else {
            decoder.destroy();
            finish();
          }
        });
        message.once('close', () => {
          if (!message.complete) {
            decoder?.destroy();
            fail(Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' }));
            return;
          }
          finish();
        });
      }
      request.once('error', fail);
      request.end(call.body);
    });
  };

  const httpFetch = ((input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
    if (closed) return Promise.reject(new Error('falbatch: this fal transport was closed'));
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const scheme = schemeOf(url);
    if (scheme === undefined) return fallback(input, init);
    const body = bodyOf(init?.body);
    const headers = headersOf(init?.headers);
    if (typeof input !== 'object' || input instanceof URL) {
      if (body !== null && headers !== undefined) {
        return send(
          { url, method: init?.method ?? 'GET', headers, body, signal: init?.signal ?? undefined, redirect: init?.redirect ?? 'follow' },
          scheme,
          MAX_REDIRECTS,
        );
      }
    }
    return slowCall(input, init).then((call) => send(call, scheme, MAX_REDIRECTS));
  }) as HttpFetch;
  httpFetch.close = () => {
    closed = true;
    for (const agent of owned) agent.destroy();
  };
  return httpFetch;
}
