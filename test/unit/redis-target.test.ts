import { describe, expect, it } from 'vitest';
import { redactUrl, redisPasswords, redisTarget, resolveConfig, secretsOf } from '../../src/config.js';
import { keySlot } from '../../src/queue/connection.js';
import { createKeyLayout } from '../../src/queue/keys.js';

describe('REDIS_URL and REDIS_CLUSTER', () => {
  it('is one Redis by default, unchanged', () => {
    const config = resolveConfig({});
    expect(config.redisCluster).toBe(false);
    expect(redisTarget(config.redisUrl, false)).toMatchObject({ cluster: false, nodes: [{ host: '127.0.0.1', port: 6379 }], db: 0, tls: false });
    expect(redisTarget('redis://:pw@h:7000/3', false)).toMatchObject({ nodes: [{ host: 'h', port: 7000 }], db: 3, password: 'pw' });
  });

  it('takes REDIS_CLUSTER as 1/0, true/false, yes/no, and refuses anything else', () => {
    expect(resolveConfig({ REDIS_CLUSTER: '1' }).redisCluster).toBe(true);
    expect(resolveConfig({ REDIS_CLUSTER: 'Yes' }).redisCluster).toBe(true);
    expect(resolveConfig({ REDIS_CLUSTER: 'false' }).redisCluster).toBe(false);
    expect(resolveConfig({ REDIS_CLUSTER: '' }).redisCluster).toBe(false);
    expect(() => resolveConfig({ REDIS_CLUSTER: 'cluster' })).toThrow('Expected REDIS_CLUSTER to be 1 or 0 (true/false, yes/no), got "cluster"');
    // The flag wins over the environment.
    expect(resolveConfig({ REDIS_CLUSTER: '0' }, { redisCluster: true }).redisCluster).toBe(true);
  });

  it('reads a list of seed nodes: the first URL gives scheme and credentials, later items may be host:port', () => {
    const target = redisTarget('rediss://u:p%40ss@10.0.0.1:7000, 10.0.0.2:7001,rediss://10.0.0.3,[::1]:7002', true);
    expect(target).toEqual({
      cluster: true,
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '10.0.0.3', port: 6379 },
        { host: '::1', port: 7002 },
      ],
      username: 'u',
      password: 'p@ss',
      tls: true,
      db: 0,
    });
  });

  it('says what does not fit', () => {
    expect(() => resolveConfig({ REDIS_URL: 'redis://a:1,b:2' })).toThrow('a list of nodes is for a Redis Cluster; set REDIS_CLUSTER=1 (or --redis-cluster)');
    expect(() => resolveConfig({ REDIS_URL: 'redis://a:1/2', REDIS_CLUSTER: '1' })).toThrow('a Redis Cluster has only database 0');
    expect(() => resolveConfig({ REDIS_URL: 'redis://:s3cret@a:1,rediss://b:2', REDIS_CLUSTER: '1' })).toThrow(
      `Expected every node in REDIS_URL to use the first one's scheme and credentials (one Cluster, one login), got "rediss://b:2" after "redis://:***@a:1"`,
    );
    expect(() => resolveConfig({ REDIS_URL: 'redis://a:1,,b:2', REDIS_CLUSTER: '1' })).toThrow('an empty item at position 2');
    expect(() => resolveConfig({ REDIS_URL: 'http://a:1', REDIS_CLUSTER: '1' })).toThrow('Expected REDIS_URL to start with redis:// or rediss://');
  });

  it('hides every password of a list', () => {
    expect(redactUrl('redis://:one@a:1,redis://:two@b:2,c:3')).toBe('redis://:***@a:1,redis://:***@b:2,c:3');
    expect(redisPasswords('redis://:one@a:1,redis://:two@b:2,c:3')).toEqual(['one', 'two']);
    expect(secretsOf({ falKey: 'k', redisUrl: 'redis://:one@a:1,b:2' })).toEqual(['k', 'one']);
  });
});

describe('keySlot', () => {
  it('is the Cluster hash slot (CRC16 mod 16384, hash tags honoured)', () => {
    expect(keySlot('123456789')).toBe(0x31c3 % 16384);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('bar')).toBe(5061);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar'));
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'));
  });

  it('puts every key of a namespace in the slot of its queue name', () => {
    const keys = createKeyLayout('falbatch');
    const slot = keySlot('jobs');
    for (const key of [
      keys.batches,
      keys.ledger('abc'),
      keys.batch('b').results,
      keys.job('b/k'),
      keys.jobLock('b/k'),
      `falbatch:${keys.ticksQueueName}:wait`,
    ]) {
      expect(keySlot(key)).toBe(slot);
    }
    // The prefix is outside the hash tag: every namespace of the `jobs` queue shares that slot.
    expect(keySlot(createKeyLayout('other').batches)).toBe(slot);
    // Another queue is another slot (maybe another master).
    expect(keySlot(createKeyLayout('falbatch', 'eu').batches)).toBe(keySlot('eu'));
    expect(keySlot('eu')).not.toBe(slot);
  });

  it('takes the queue from --queue or FALBATCH_QUEUE, never a hash tag or a separator', () => {
    expect(resolveConfig({}).queue).toBe('jobs');
    expect(resolveConfig({ FALBATCH_QUEUE: 'eu' }).queue).toBe('eu');
    expect(() => resolveConfig({}, { queue: 'a{b}' })).toThrow('Expected --queue to be 1-64 letters, digits');
    expect(() => resolveConfig({}, { queue: 'a:b' })).toThrow('Expected --queue to be 1-64 letters, digits');
  });
});
