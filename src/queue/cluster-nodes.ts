import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { withTimeout } from './with-timeout.js';

/**
 * Which nodes of a Redis Cluster per-node work (the persistence and eviction checks, SCAN) may be
 * sent to. ioredis lists the nodes of CLUSTER SLOTS, which still names a master that went down
 * until a replica takes its slots over; CLUSTER NODES says which the Cluster itself flags as
 * failed. A node flagged failed, or that does not answer, is left out, and that is said once per
 * node and process.
 */

/** Flags of CLUSTER NODES that mean "do not send it anything": down, no address yet, or not yet a member. */
const UNUSABLE = ['fail', 'noaddr', 'handshake'];

/** How long one node may take to answer a per-node command before it is left out. */
const NODE_ANSWER_MS = 5000;

/** `host:port` of an ioredis node connection, as CLUSTER SLOTS and CLUSTER NODES name it. */
export function nodeName(node: Redis): string {
  return `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;
}

/**
 * The nodes a CLUSTER NODES reply flags as unusable, by `host:port`, with the flags that say why
 * (`fail`, `noaddr`, `handshake`).
 */
export function unusableNodes(reply: string): Map<string, string> {
  const unusable = new Map<string, string>();
  for (const line of reply.split('\n')) {
    // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slots...>
    const [, address, flags] = line.trim().split(' ');
    if (address === undefined || flags === undefined) continue;
    const why = flags.split(',').filter((flag) => UNUSABLE.includes(flag));
    if (why.length > 0) unusable.set(address.split('@')[0] ?? address, why.join(','));
  }
  return unusable;
}

/** Asks the first node that answers for CLUSTER NODES; an empty map when none does. */
async function askUnusable(nodes: readonly Redis[]): Promise<Map<string, string>> {
  for (const node of nodes) {
    try {
      return unusableNodes(String(await withTimeout(node.cluster('NODES'), NODE_ANSWER_MS)));
    } catch {
      // Down or not answering: ask the next.
    }
  }
  return new Map();
}

const said = new Set<string>();

/** Says once (per node and process) that a node is left out of per-node work, and why. */
export function leaveOut(log: Logger | undefined, node: string, why: string): void {
  if (said.has(node)) return;
  said.add(node);
  log?.warn(`Redis Cluster node ${node} is left out of per-node checks and scans (${why}); the other nodes are used.`, { node });
}

/** The nodes of `role` that the Cluster does not flag as failed; the others are said once (warn) and left out. */
export async function usableNodes(redis: Cluster, role: 'all' | 'master', log: Logger | undefined): Promise<Redis[]> {
  const nodes = redis.nodes(role);
  const unusable = await askUnusable(nodes);
  return nodes.filter((node) => {
    const flagged = unusable.get(nodeName(node));
    if (flagged !== undefined) leaveOut(log, nodeName(node), `flagged ${flagged} by the Cluster`);
    return flagged === undefined;
  });
}

/**
 * Runs `command` on every usable node of `role` (see usableNodes) that answers within 5 s, and
 * returns what each answered; a node that does not answer is said once and left out. An error the
 * node answered (a Redis reply, e.g. CONFIG disabled) is `command`'s to handle: here it leaves the
 * node out quietly.
 */
export async function onEachUsableNode<T>(
  redis: Cluster,
  role: 'all' | 'master',
  command: (node: Redis) => Promise<T>,
  log: Logger | undefined,
): Promise<Array<{ node: Redis; value: T }>> {
  const answers = await Promise.all(
    (await usableNodes(redis, role, log)).map(async (node) => {
      try {
        const value: T = await withTimeout(command(node), NODE_ANSWER_MS);
        return { node, value };
      } catch (error) {
        if (!isReplyError(error)) leaveOut(log, nodeName(node), `it did not answer: ${(error as Error).message}`);
        return undefined;
      }
    }),
  );
  return answers.filter((answer): answer is { node: Redis; value: T } => answer !== undefined);
}

/** Whether the server answered with an error (rather than not answering). */
export function isReplyError(error: unknown): boolean {
  return (error as Error | undefined)?.name === 'ReplyError';
}
