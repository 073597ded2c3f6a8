import { request as httpRequest, type ClientRequest, type ClientRequestArgs } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { ConfigError } from '../errors.js';

/** An HTTP proxy from HTTPS_PROXY / HTTP_PROXY: where it is, and what to say to it. */
export interface HttpProxy {
  hostname: string;
  port: number;
  /** `Basic …` when the proxy URL carries credentials; never logged. */
  authorization: string | undefined;
  /** host:port, for messages: never the credentials. */
  display: string;
}

/** Which requests go through which proxy, as read from the environment once. */
export interface ProxySettings {
  /** The proxy for a target, or undefined for a direct connection. */
  proxyFor(scheme: 'http:' | 'https:', hostname: string, port: string): HttpProxy | undefined;
}

function variable(env: NodeJS.ProcessEnv, name: string): { name: string; value: string } | undefined {
  // Lower case first, as curl, undici's EnvHttpProxyAgent and Node's own NODE_USE_ENV_PROXY read them.
  for (const spelled of [name.toLowerCase(), name]) {
    const value = env[spelled]?.trim();
    if (value) return { name: spelled, value };
  }
  return undefined;
}

function parseProxy(name: string, value: string): HttpProxy {
  let url: URL;
  try {
    // A proxy given as host:port is an http one (as curl reads it).
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new ConfigError(`${name} is not a proxy URL (expected http://host:port)`);
  }
  const display = `${url.hostname}${url.port ? `:${url.port}` : ''}`;
  if (url.protocol !== 'http:')
    throw new ConfigError(`${name} names a ${url.protocol}// proxy (${display}); falbatch speaks to http:// proxies only: give http://${display}`);
  const authorization =
    url.username || url.password
      ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
      : undefined;
  return { hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 80), authorization, display };
}

interface Bypass {
  host: string;
  port: string | undefined;
  /** `.example.com` (or `*.example.com`): subdomains only. */
  subdomainsOnly: boolean;
}

function parseNoProxy(value: string | undefined): Bypass[] | 'all' {
  const entries: Bypass[] = [];
  for (const raw of (value ?? '').toLowerCase().split(/[\s,]+/)) {
    if (raw === '') continue;
    if (raw === '*') return 'all';
    // host, host:port, [v6]:port, or a bare IPv6 address (more than one colon, no port).
    const match = /^(\[[^\]]+\]|[^:]+|[^[\]]*:[^[\]]*:[^[\]]*)(?::(\d+))?$/.exec(raw);
    if (!match) continue;
    const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1').replace(/^\*/, '');
    entries.push({ host: host.replace(/^\./, ''), port: match[2], subdomainsOnly: host.startsWith('.') });
  }
  return entries;
}

function bypassed(rules: Bypass[] | 'all', hostname: string, port: string): boolean {
  if (rules === 'all') return true;
  const host = hostname.toLowerCase();
  return rules.some(
    (rule) => (rule.port === undefined || rule.port === port) && ((!rule.subdomainsOnly && host === rule.host) || host.endsWith(`.${rule.host}`)),
  );
}

/** localhost, 127.0.0.0/8 and ::1: this machine, wherever it is asked from. */
function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return host === 'localhost' || host.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(host) || host === '::1' || /^::ffff:127\./.test(host);
}

/**
 * HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either case, lower case first), as other Node tools read
 * them: a https target goes through HTTPS_PROXY, a http one through HTTP_PROXY, unless NO_PROXY
 * names its host (`example.com` is the host and its subdomains, `.example.com` only the subdomains,
 * `host:port` that port only, `*` every host). A loopback target (`--emulate`'s emulator, a local
 * FAL_BASE_URL) is reached directly when the proxy is on another machine, as Go's clients do: that
 * proxy's 127.0.0.1 is itself, never this machine. ConfigError for a proxy URL falbatch cannot use.
 */
export function proxySettings(env: NodeJS.ProcessEnv): ProxySettings {
  const https = variable(env, 'HTTPS_PROXY');
  const http = variable(env, 'HTTP_PROXY');
  const proxies = { 'https:': https && parseProxy(https.name, https.value), 'http:': http && parseProxy(http.name, http.value) };
  const rules = parseNoProxy(variable(env, 'NO_PROXY')?.value);
  return {
    proxyFor: (scheme, hostname, port) => {
      const proxy = proxies[scheme];
      if (proxy === undefined) return undefined;
      if (isLoopback(hostname) && !isLoopback(proxy.hostname)) return undefined;
      return bypassed(rules, hostname, port || (scheme === 'https:' ? '443' : '80')) ? undefined : proxy;
    },
  };
}

type ConnectCallback = (error: Error | null, socket: Duplex) => void;

/**
 * A keep-alive https agent whose connections are tunnels through an HTTP proxy (CONNECT), with TLS
 * to the target inside: the proxy sees the target's host and port, never the request.
 */
export class TunnelAgent extends HttpsAgent {
  readonly #proxy: HttpProxy;
  /** Tunnels being opened: not yet the agent's sockets, so destroy() must end them itself. */
  readonly #opening = new Set<ClientRequest>();

  constructor(proxy: HttpProxy, options: HttpsAgentOptions) {
    super(options);
    this.#proxy = proxy;
  }

  override destroy(): void {
    for (const connect of this.#opening) connect.destroy();
    super.destroy();
  }

  // Node's agents take a connection handed over later through the callback (returning nothing).
  override createConnection(options: ClientRequestArgs, callback?: ConnectCallback): undefined {
    const done = (error: Error | null, socket?: Duplex): void => callback?.(error, socket as Duplex);
    const proxy = this.#proxy;
    const host = options.host ?? 'localhost';
    const authority = `${host.includes(':') ? `[${host}]` : host}:${options.port ?? 443}`;
    const connect = httpRequest({
      hostname: proxy.hostname,
      port: proxy.port,
      method: 'CONNECT',
      path: authority,
      setHost: false,
      headers: { host: authority, ...(proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}) },
      agent: false,
    });
    this.#opening.add(connect);
    connect.once('close', () => this.#opening.delete(connect));
    connect.once('connect', (answer, socket, head) => {
      if (answer.statusCode !== 200) {
        socket.destroy();
        done(new Error(`the proxy ${proxy.display} refused a tunnel to ${authority}: ${answer.statusCode} ${answer.statusMessage ?? ''}`.trim()));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      done(null, tlsConnect({ ...(options as ConnectionOptions), socket }));
    });
    connect.once('error', (error) => done(error));
    connect.end();
    return undefined;
  }
}
