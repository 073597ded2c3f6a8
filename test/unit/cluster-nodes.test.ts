import { describe, expect, it } from 'vitest';
import { unusableNodes } from '../../src/queue/cluster-nodes.js';
import { clusterFailure } from '../../src/queue/connection.js';
import { RedisUnavailableError } from '../../src/errors.js';

// CLUSTER NODES of Redis 7 after the master on 7001 was killed and its replica (7004) took over.
const AFTER_FAILOVER = [
  '5226a1d95b6f249ea74c027974cc84b636afdba8 10.0.0.1:7000@17000 myself,master - 0 1796604250000 1 connected 0-5460',
  'a444b534dede2bc09debbc75b4baa7a1eed7fcbd 10.0.0.2:7001@17001 master,fail - 1796604243753 1796604241741 2 disconnected',
  '673597039606feb20c1bdad6bb962fe506b0a213 10.0.0.3:7002@17002,redis-3.example master - 0 1796604250116 3 connected 10923-16383',
  'cf436ec838a2e6cf4d68dbcfb6e113ba396aaedb 10.0.0.4:7004@17004 master - 0 1796604251182 7 connected 5461-10922',
  'f15f778b0f081facad4fcdbb8ae5b5a7973e8051 10.0.0.5:7005@17005 slave,fail? 673597039606feb20c1bdad6bb962fe506b0a213 0 1796604250116 3 connected',
  '0d36a7bdbc7857a8e858af8efe6f06106383435b :0@0 slave,noaddr 5226a1d95b6f249ea74c027974cc84b636afdba8 0 1796604251079 1 disconnected',
  '',
].join('\n');

describe('which Cluster nodes per-node work leaves out', () => {
  it('leaves out nodes flagged fail, noaddr or handshake; keeps the merely suspected (fail?), which get their answer time', () => {
    expect(unusableNodes(AFTER_FAILOVER)).toEqual(
      new Map([
        ['10.0.0.2:7001', 'fail'],
        [':0', 'noaddr'],
      ]),
    );
  });
});

describe('a Redis Cluster that stays down past the wait', () => {
  it('is a REDIS_UNAVAILABLE error saying what happened and what to do, not an unexpected one', () => {
    for (const message of ['Too many Cluster redirections. Last error: Error: Connection is closed.', 'CLUSTERDOWN The cluster is down']) {
      const mapped = clusterFailure(new Error(message));
      expect(mapped).toBeInstanceOf(RedisUnavailableError);
      expect(mapped?.message).toMatch(
        /^The Redis Cluster did not serve falbatch's keys while falbatch waited \(.+\): a master is down and no replica took its slots over\. Check the Cluster/,
      );
    }
    expect(clusterFailure(new Error('Failed to refresh slots cache.'))?.message).toBe(
      'No node of the Redis Cluster answered (Failed to refresh slots cache). Check that its nodes are up and reachable at the addresses they announce, then run the command again.',
    );
    expect(clusterFailure(new Error('OOM command not allowed when used memory > maxmemory'))).toBeUndefined();
    expect(clusterFailure('not an error')).toBeUndefined();
  });
});
