import type { Server } from 'node:http';
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

/** Where a server of falbatch's (dashboard, metrics) listens. */
export interface ListenOptions {
  /** Interface to bind: `127.0.0.1` (this machine only), `0.0.0.0` (every interface), … */
  host: string;
  /** Port; 0 picks a free one (the returned URL says which). */
  port: number;
  /** The flag the port came from, for messages. @default '--port' */
  portFlag?: string;
}

/** A listening server. */
export interface ListeningServer {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and ends open connections (browsers keep them alive). */
  close(): Promise<void>;
}

/** Whether a host name or address reaches only this machine. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost' || bare.endsWith('.localhost') || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

/**
 * Binds a server (answering EADDRINUSE and the like with a ConfigError that names the address)
 * and returns its URL and a close that does not wait for idle keep-alive connections.
 */
export async function listen(server: Server, options: ListenOptions): Promise<ListeningServer> {
  const flag = options.portFlag ?? '--port';
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535)
    throw new ConfigError(`Expected ${flag} to be a port from 0 to 65535, got ${options.port}`);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      const where = `${options.host}:${options.port}`;
      const why =
        error.code === 'EADDRINUSE'
          ? 'the port is in use (pick another, or 0 for a free one)'
          : error.code === 'EADDRNOTAVAIL'
            ? 'no interface of this machine has that address'
            : error.message;
      reject(new ConfigError(`Cannot listen on ${where}: ${why}`, { cause: error }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options.port, options.host);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const host = isIP(options.host) === 6 ? `[${options.host}]` : options.host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
