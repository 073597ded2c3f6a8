import { Agent as HttpAgent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FalHttpError, FalTimeoutError, FalTransportError } from '../../src/errors.js';
import { until } from '../helpers/harness.js';
import { createHttpFetch, isWholeAnswer } from '../../src/fal/http-fetch.js';
import { fetchFalPrice } from '../../src/fal/pricing.js';
import { createFalFetch } from '../../src/fal/transport.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

// A real server on port 0 per test: the keep-alive fetch must give what the global fetch gives.
let server: Server;
let base: string;
let handler: Handler;
const sockets = new Set<Socket>();
let connections = 0;

beforeEach(async () => {
  connections = 0;
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => handler(req, res, body));
  });
  server.on('connection', (socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const json = (res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(value));
};

describe('the keep-alive fetch behind the fal transport', () => {
  it('sends method, headers and body, and answers as fetch does, on one connection for many calls', async () => {
    handler = (req, res, body) => json(res, 200, { method: req.method, path: req.url, auth: req.headers['authorization'], body }, { 'x-fal-request-id': 'r1' });
    const fal = createFalFetch({ baseUrl: undefined, callTimeoutMs: 2000 });
    for (let i = 0; i < 5; i++) {
      const response = await fal(`${base}/queue.fal.run/a/b?x=${i}`, {
        method: 'POST',
        headers: { Authorization: 'Key k', 'Content-Type': 'application/json' },
        body: '{"é":1}',
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('X-Fal-Request-Id')).toBe('r1');
      expect(await response.json()).toEqual({ method: 'POST', path: `/queue.fal.run/a/b?x=${i}`, auth: 'Key k', body: '{"é":1}' });
    }
    expect(connections).toBe(1);
  });

  it('reads an answer whole before handing it over', async () => {
    handler = (_req, res) => json(res, 200, { ok: true });
    const response = await createHttpFetch()(`${base}/x`);
    expect(isWholeAnswer(response)).toBe(true);
    expect(await response.json()).toEqual({ ok: true });
  });

  it('decodes an answer a server compressed unasked (gzip, deflate, br), whole or streamed, as the global fetch does', async () => {
    const { gzipSync, deflateSync, brotliCompressSync } = await import('node:zlib');
    const encoders = { gzip: gzipSync, deflate: deflateSync, br: brotliCompressSync };
    for (const [coding, encode] of Object.entries(encoders)) {
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': coding });
        res.end(encode(Buffer.from(JSON.stringify({ coding, output: 'a cat' }))));
      };
      const response = await createHttpFetch()(`${base}/x`);
      expect(await response.json()).toEqual({ coding, output: 'a cat' });
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': coding });
        res.end(encode(Buffer.from('data: {"status":"COMPLETED"}\n\n')));
      };
      const stream = await createHttpFetch()(`${base}/s`);
      expect(await stream.text()).toBe('data: {"status":"COMPLETED"}\n\n');
    }
  });

  it('an error answer becomes FalHttpError with its status, body and Retry-After', async () => {
    handler = (_req, res) => json(res, 429, { detail: 'slow down' }, { 'retry-after': '2' });
    const fal = createFalFetch({ baseUrl: undefined, callTimeoutMs: 2000 });
    const error = await fal(`${base}/queue.fal.run/a/b`, { method: 'POST', body: '{}' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FalHttpError);
    expect(error).toMatchObject({ status: 429, retryAfterMs: 2000, body: { detail: 'slow down' } });
  });

  it('an answer cut off mid-body is a transport error, never a short answer', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"output": "half');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const fal = createFalFetch({ baseUrl: undefined, callTimeoutMs: 2000 });
    await expect(fal(`${base}/queue.fal.run/a/b/requests/r1`)).rejects.toBeInstanceOf(FalTransportError);
  });

  it('a call past its deadline is a time-out, and its connection is let go', async () => {
    handler = () => undefined;
    const fal = createFalFetch({ baseUrl: undefined, callTimeoutMs: 200 });
    await expect(fal(`${base}/queue.fal.run/a/b/requests/r1/status`)).rejects.toBeInstanceOf(FalTimeoutError);
    // (The server sees the close a moment later; a connection kept open would never close by itself.)
    await until('the server to see the connection closed', () => sockets.size === 0, 10_000);
  });

  it('streams an event stream, and the caller closes it with its signal', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"status":"IN_PROGRESS"}\n\n');
      // The next event comes after the call time-out (a timer of this process: it cannot fire
      // before the time-out's would, however loaded the machine).
      setTimeout(() => res.write('data: {"status":"COMPLETED"}\n\n'), 400);
    };
    const controller = new AbortController();
    const fal = createFalFetch({ baseUrl: undefined, callTimeoutMs: 200 });
    const response = await fal(`${base}/queue.fal.run/a/b/requests/r1/status/stream`, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('IN_PROGRESS');
    // Open past the call time-out (streams have none of their own): the event sent after it arrives.
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('COMPLETED');
    controller.abort(new Error('done'));
    await expect(reader.read()).rejects.toBeDefined();
  });

  it('follows redirects, and sends Blob bodies and Request objects, as the global fetch does', async () => {
    handler = (req, res, body) => {
      if (req.url === '/old') {
        res.writeHead(307, { location: '/new' });
        res.end();
        return;
      }
      json(res, 200, { path: req.url, body });
    };
    const plain = createHttpFetch();
    expect(await (await plain(`${base}/old`, { method: 'POST', body: 'x' })).json()).toEqual({ path: '/new', body: 'x' });
    expect(await (await plain(`${base}/blob`, { method: 'PUT', body: new Blob(['bytes']) })).json()).toEqual({ path: '/blob', body: 'bytes' });
    expect(await (await plain(new Request(`${base}/request`))).json()).toEqual({ path: '/request', body: '' });
  });
});

describe('the keep-alive fetch holds its own connections', () => {
  it('each transport has agents of its own, and close() ends their connections', async () => {
    handler = (_req, res) => json(res, 200, { ok: true });
    // Idle connections would be let go after a minute: only close() can explain their end.
    const a = createFalFetch({ baseUrl: undefined, callTimeoutMs: 2000, http: { agentOptions: { timeout: 60_000 } } });
    const b = createFalFetch({ baseUrl: undefined, callTimeoutMs: 2000, http: { agentOptions: { timeout: 60_000 } } });
    await (await a(`${base}/queue.fal.run/a/b/requests/r1/status`)).json();
    await (await b(`${base}/queue.fal.run/a/b/requests/r1/status`)).json();
    expect(connections).toBe(2);
    expect(sockets.size).toBe(2);
    a.close();
    await until("the closed transport's connection ended", () => sockets.size === 1);
    b.close();
    await until('both connections ended', () => sockets.size === 0);
    await expect(a(`${base}/x`)).rejects.toThrow(/closed/);
  });

  it('a one-off question (fal pricing) closes its connection once answered', async () => {
    handler = (_req, res) => json(res, 200, { prices: [{ endpoint_id: 'a/b', unit_price: 0.001, unit: 'request' }] });
    expect(await fetchFalPrice('a/b', { credentials: 'k', baseUrl: base, callTimeoutMs: 2000 })).toMatchObject({ ok: true });
    expect(connections).toBe(1);
    // Well within the 4 s after which an idle connection would be let go anyway.
    await until("the pricing call's connection ended", () => sockets.size === 0, 2000);
  });

  it('uses agents passed in, and leaves them to their owner', async () => {
    handler = (_req, res) => json(res, 200, { ok: true });
    const agent = new HttpAgent({ keepAlive: true });
    try {
      const http = createHttpFetch({ agents: { http: agent } });
      await (await http(`${base}/x`)).json();
      expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);
      http.close();
      expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);
    } finally {
      agent.destroy();
    }
  });

  it('follows redirects and sends uploads on its own connections, dropping credentials for another origin', async () => {
    const seen: Array<{ path: string | undefined; auth: string | undefined; body: string; type: string | undefined }> = [];
    handler = (req, res, body) => {
      seen.push({ path: req.url, auth: req.headers['authorization'], body, type: req.headers['content-type'] });
      if (req.url === '/same') res.writeHead(307, { location: '/new' }).end();
      else if (req.url === '/other') res.writeHead(302, { location: `${base.replace('127.0.0.1', 'localhost')}/there` }).end();
      else json(res, 200, { path: req.url });
    };
    const http = createHttpFetch();
    try {
      await (await http(`${base}/same`, { method: 'PUT', headers: { authorization: 'Key k' }, body: new Blob(['bytes'], { type: 'image/png' }) })).json();
      await (await http(`${base}/other`, { headers: { authorization: 'Key k' } })).json();
      expect(seen).toEqual([
        { path: '/same', auth: 'Key k', body: 'bytes', type: 'image/png' },
        { path: '/new', auth: 'Key k', body: 'bytes', type: 'image/png' },
        { path: '/other', auth: 'Key k', body: '', type: undefined },
        { path: '/there', auth: undefined, body: '', type: undefined },
      ]);
      // All of it on this fetch's keep-alive connections (127.0.0.1 and localhost): none by the global fetch.
      expect(connections).toBe(2);
    } finally {
      http.close();
    }
  });
});

describe('compressed answers are decoded as they come, up to a cap', () => {
  // 32 gzip members of 1 MiB of zeros each: about 32 KiB on the wire, 32 MiB decoded.
  const bomb = Buffer.concat(Array.from({ length: 32 }, () => gzipSync(Buffer.alloc(1024 * 1024))));

  it('an answer decoding past maxAnswerBytes fails naming the endpoint and the cap', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(bomb);
    };
    const fal = createFalFetch({ baseUrl: undefined, callTimeoutMs: 5000, http: { maxAnswerBytes: 1024 * 1024 } });
    try {
      const error = await fal(`${base}/queue.fal.run/acme/model/requests/r1`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FalTransportError);
      expect((error as Error).message).toMatch(/result acme\/model: .*more than 1048576 bytes.*maxAnswerBytes/);
    } finally {
      fal.close();
    }
  });

  it('a compressed event stream decoding past the cap errors instead of filling memory', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      res.end(bomb);
    };
    const http = createHttpFetch({ maxAnswerBytes: 1024 * 1024 });
    try {
      const stream = await http(`${base}/s`);
      await expect(stream.arrayBuffer()).rejects.toThrow();
    } finally {
      http.close();
    }
  });

  it('an answer within the cap decodes whole, in any coding, and an empty coded body is empty', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(Buffer.from(JSON.stringify({ output: 'x'.repeat(100_000) }))));
    };
    const http = createHttpFetch({ maxAnswerBytes: 200_000 });
    try {
      expect(((await (await http(`${base}/x`)).json()) as { output: string }).output).toHaveLength(100_000);
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': '0' });
        res.end();
      };
      expect(await (await http(`${base}/x`)).text()).toBe('');
    } finally {
      http.close();
    }
  });
});
