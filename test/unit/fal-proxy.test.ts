import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, FalTransportError } from '../../src/errors.js';
import { createFalEmulator, type FalEmulator } from '../../src/emulator/create-fal-emulator.js';
import { createFalCaller } from '../../src/fal/fal-caller.js';
import { createHttpFetch } from '../../src/fal/http-fetch.js';
import { proxySettings } from '../../src/fal/proxy.js';
import { createFalFetch } from '../../src/fal/transport.js';

const KEY = 'proxy-test-key';
const LLAVA = 'fal-ai/llava-next';

// A tiny HTTP proxy on port 0: forwards absolute-form requests (http targets) and tunnels CONNECT
// (https targets), writing down what it was asked and with which Proxy-Authorization.
let proxy: Server;
let proxyUrl: string;
let seen: string[];
let proxyAuth: Array<string | undefined>;
/** When set, CONNECT without exactly this Proxy-Authorization is refused with a 407. */
let requiredAuth: string | undefined;
const proxySockets = new Set<Socket>();
const requestIdSeen = (): string | undefined =>
  seen
    .find((s) => s.includes('/requests/'))
    ?.split('/requests/')[1]
    ?.split('/')[0];

beforeEach(async () => {
  seen = [];
  proxyAuth = [];
  requiredAuth = undefined;
  proxy = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    proxyAuth.push(req.headers['proxy-authorization']);
    const target = new URL(req.url ?? '');
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    const upstream = httpRequest(
      { hostname: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: req.method, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  proxy.on('connection', (socket: Socket) => {
    proxySockets.add(socket);
    socket.once('close', () => proxySockets.delete(socket));
  });
  proxy.on('connect', (req, client: Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url}`);
    proxyAuth.push(req.headers['proxy-authorization']);
    if (requiredAuth !== undefined && req.headers['proxy-authorization'] !== requiredAuth) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
      return;
    }
    const [host, port] = (req.url ?? '').split(/:(?=\d+$)/);
    const upstream = connect(Number(port), host ?? '', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const socket of proxySockets) socket.destroy();
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
});

describe('HTTP_PROXY: http traffic goes through the proxy, requests as absolute URLs', () => {
  let emulator: FalEmulator;
  beforeEach(async () => {
    emulator = await createFalEmulator({ key: KEY });
  });
  afterEach(async () => {
    await emulator.close();
  });

  for (const variable of ['HTTP_PROXY', 'http_proxy']) {
    it(`a row's calls to fal (submit, status, result) and an upload all go through ${variable}`, async () => {
      const fal = createFalCaller({ credentials: KEY, baseUrl: emulator.url, callTimeoutMs: 5000, http: { env: { [variable]: proxyUrl } } });
      try {
        const { requestId } = await fal.submit(LLAVA, { image_url: 'https://example.com/a.jpg', prompt: 'p' });
        await fal.waitForCompletion(LLAVA, requestId, { mode: 'poll', pollIntervalMs: 20, deadline: Date.now() + 30_000 });
        const { data } = await fal.result(LLAVA, requestId);
        expect(data).toBeDefined();
        const url = await fal.upload(new Uint8Array([137, 80, 78, 71]), 'image/png', 'a.png');
        expect(url).toMatch(/^https?:\/\//);
      } finally {
        fal.close();
      }
      const base = emulator.url.replace(/\/$/, '');
      expect(seen).toContain(`POST ${base}/queue.fal.run/${LLAVA}`);
      expect(seen).toContain(`GET ${base}/queue.fal.run/${LLAVA}/requests/${requestIdSeen()}/status?logs=0`);
      expect(seen).toContain(`GET ${base}/queue.fal.run/${LLAVA}/requests/${requestIdSeen()}`);
      // The upload (fal storage) too: it used to go through the global fetch, around any proxy.
      const direct = seen.filter((s) => !s.includes('/queue.fal.run/'));
      expect(direct).toEqual([expect.stringMatching(/^POST /), expect.stringMatching(/^PUT /)]);
      expect(direct.every((s) => s.includes(` ${base}/`))).toBe(true);
      expect(emulator.stats()).toMatchObject({ accepted: 1 });
    });
  }

  it('NO_PROXY names hosts that are reached directly', async () => {
    for (const noProxy of ['127.0.0.1', `localhost,127.0.0.1:${new URL(emulator.url).port}`, '*']) {
      const fal = createFalCaller({ credentials: KEY, baseUrl: emulator.url, callTimeoutMs: 5000, http: { env: { HTTP_PROXY: proxyUrl, no_proxy: noProxy } } });
      try {
        await fal.submit(LLAVA, { image_url: 'https://example.com/a.jpg', prompt: 'p' });
      } finally {
        fal.close();
      }
    }
    expect(seen).toEqual([]);
    // A NO_PROXY naming another host or port leaves this one to the proxy.
    const fal = createFalCaller({
      credentials: KEY,
      baseUrl: emulator.url,
      callTimeoutMs: 5000,
      http: { env: { HTTP_PROXY: proxyUrl, NO_PROXY: '.example.com,127.0.0.1:1' } },
    });
    try {
      await fal.submit(LLAVA, { image_url: 'https://example.com/a.jpg', prompt: 'p' });
    } finally {
      fal.close();
    }
    expect(seen).toHaveLength(1);
  });
});

describe('HTTPS_PROXY: https traffic is tunnelled (CONNECT)', () => {
  let dir: string;
  let ca: Buffer;
  let target: HttpsServer;
  let targetUrl: string;
  const paths: string[] = [];

  beforeAll(async () => {
    // A throwaway certificate for 127.0.0.1, trusted by the fetch through agentOptions.ca.
    dir = mkdtempSync(join(tmpdir(), 'falbatch-proxy-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(join(dir, 'cert.pem'));
    target = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (req, res) => {
      paths.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }));
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetUrl = `https://127.0.0.1:${(target.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    target.closeAllConnections();
    await new Promise<void>((resolve) => target.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('tunnels through the proxy with its credentials, one tunnel kept alive for many calls', async () => {
    paths.length = 0;
    const http = createHttpFetch({ env: { HTTPS_PROXY: proxyUrl.replace('http://', 'http://us%40er:s3cret@') }, agentOptions: { ca } });
    try {
      for (let i = 0; i < 3; i++) expect(await (await http(`${targetUrl}/x/${i}`)).json()).toEqual({ ok: true });
    } finally {
      http.close();
    }
    expect(seen).toEqual([`CONNECT ${targetUrl.slice('https://'.length)}`]);
    expect(proxyAuth).toEqual([`Basic ${Buffer.from('us@er:s3cret').toString('base64')}`]);
    expect(paths).toEqual(['GET /x/0', 'GET /x/1', 'GET /x/2']);
  });

  it('a proxy refusing the tunnel is a transport error naming the proxy, never its credentials', async () => {
    requiredAuth = 'Basic something-else';
    const fal = createFalFetch({
      baseUrl: undefined,
      callTimeoutMs: 5000,
      http: { env: { https_proxy: proxyUrl.replace('http://', 'http://user:s3cret@') }, agentOptions: { ca } },
    });
    try {
      const error = await fal(`${targetUrl}/x`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FalTransportError);
      expect((error as Error).message).toContain(`proxy ${new URL(proxyUrl).host}`);
      expect((error as Error).message).toContain('407');
      expect((error as Error).message).not.toContain('s3cret');
    } finally {
      fal.close();
    }
  });

  it('NO_PROXY sends https traffic to its host directly', async () => {
    const http = createHttpFetch({ env: { HTTPS_PROXY: proxyUrl, NO_PROXY: 'localhost, 127.0.0.1' }, agentOptions: { ca } });
    try {
      expect(await (await http(`${targetUrl}/direct`)).json()).toEqual({ ok: true });
    } finally {
      http.close();
    }
    expect(seen).toEqual([]);
  });
});

it('a proxy URL falbatch cannot use is a ConfigError naming the variable, never the credentials', () => {
  const make = (): unknown => createHttpFetch({ env: { HTTPS_PROXY: 'socks5://user:s3cret@proxy.internal:1080' } });
  expect(make).toThrow(ConfigError);
  expect(make).toThrow(/HTTPS_PROXY .*http:\/\/proxy\.internal:1080/);
  expect(make).not.toThrow(/s3cret/);
});

it('reads NO_PROXY as other tools do: hosts, domains, ports, IPv6, *', () => {
  const route = (noProxy: string, scheme: 'http:' | 'https:', host: string, port = ''): string =>
    proxySettings({ HTTP_PROXY: 'http://p:1', HTTPS_PROXY: 'http://p:2', NO_PROXY: noProxy }).proxyFor(scheme, host, port)?.display ?? 'direct';
  expect(route('example.com', 'https:', 'example.com')).toBe('direct');
  expect(route('example.com', 'https:', 'queue.example.com')).toBe('direct');
  expect(route('example.com', 'https:', 'notexample.com')).toBe('p:2');
  expect(route('.example.com', 'https:', 'example.com')).toBe('p:2');
  expect(route('*.example.com', 'https:', 'a.example.com')).toBe('direct');
  expect(route('example.com:8443', 'https:', 'example.com')).toBe('p:2');
  expect(route('example.com:8443', 'https:', 'example.com', '8443')).toBe('direct');
  expect(route('example.com:80', 'http:', 'example.com')).toBe('direct');
  expect(route('::1, [fe80::1]:8080', 'http:', '::1')).toBe('direct');
  expect(route('::1, [fe80::1]:8080', 'http:', 'fe80::1', '8080')).toBe('direct');
  expect(route('::1, [fe80::1]:8080', 'http:', 'fe80::1')).toBe('p:1');
  expect(route('*', 'http:', 'anything')).toBe('direct');
  expect(route('', 'http:', 'anything')).toBe('p:1');
});

it("reaches this machine's loopback directly when the proxy is elsewhere (its 127.0.0.1 is not ours), through a proxy on this machine", () => {
  const route = (proxy: string, host: string): string =>
    proxySettings({ HTTP_PROXY: proxy, HTTPS_PROXY: proxy }).proxyFor('http:', host, '8080')?.display ?? 'direct';
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', 'api.localhost', '::1']) expect(route('http://proxy.corp:3128', host)).toBe('direct');
  expect(route('http://proxy.corp:3128', '10.0.0.5')).toBe('proxy.corp:3128');
  expect(route('http://proxy.corp:3128', '127.example.com')).toBe('proxy.corp:3128');
  expect(route('http://127.0.0.1:3128', '127.0.0.1')).toBe('127.0.0.1:3128');
  expect(route('http://localhost:3128', 'localhost')).toBe('localhost:3128');
});
