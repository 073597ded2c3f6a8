import { RedisUnavailableError } from '../errors.js';

// What a Redis Cluster's failures mean for a command, apart from connection.ts so that the CLI's
// error mapping does not load the Redis client.

/**
 * A Redis error that means the Cluster did not serve a command for as long as falbatch waits (a
 * master down and no replica taking over), as a RedisUnavailableError saying so; undefined for any
 * other error.
 */
export function clusterFailure(error: unknown): RedisUnavailableError | undefined {
  const message = ((error as Error | undefined)?.message ?? '').replace(/\.$/, '');
  if (/Too many Cluster redirections|^CLUSTERDOWN/.test(message)) return notServed(`while falbatch waited (${message})`, error);
  if (/Failed to refresh slots cache|None of startup nodes is available/.test(message)) {
    return new RedisUnavailableError(
      `No node of the Redis Cluster answered (${message}). Check that its nodes are up and reachable at the addresses they announce, then run the command again.`,
      { cause: error },
    );
  }
  return undefined;
}

export function notServed(how: string, cause: unknown): RedisUnavailableError {
  return new RedisUnavailableError(
    `The Redis Cluster did not serve falbatch's keys ${how}: a master is down and no replica took its slots over. ` +
      'Check the Cluster (redis-cli --cluster check HOST:PORT, CLUSTER NODES): restart the master or give it a replica, then run the command again.',
    { cause },
  );
}
