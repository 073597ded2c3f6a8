import { describe, expect, it } from 'vitest';
import { BatchNotFoundError } from '../../src/errors.js';
import { getStatus, listBatches } from '../../src/ops/status.js';
import { watchStatus } from '../../src/ops/watch-status.js';
import { openBatch } from '../../src/queue/retention.js';
import { createHarness, namespaceKeys, runCliInProcess } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

const cli = runCliInProcess;

describe('a batch exists once a row is stored; --watch returns when nothing is left to do', () => {
  it('an enqueue that fails before storing a row (local images, no key to upload them) leaves no batch behind', async () => {
    const h = await createHarness();
    h.file('a.png', pngBytes('no key'));
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,a.png,describe\n');
    const noKey = { REDIS_URL: h.config.redisUrl, FALBATCH_PREFIX: h.prefix };
    const refused = await cli(['enqueue', manifest, '--batch', 'no-key'], noKey);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('FAL_KEY is not set');
    await expect(getStatus(h.ctx, 'no-key')).rejects.toBeInstanceOf(BatchNotFoundError);
    expect(await listBatches(h.ctx)).toEqual([]);
    expect((await namespaceKeys(h)).filter((key) => key.includes('no-key'))).toEqual([]);
    const watched = await cli(['status', '--watch', '--batch', 'no-key'], noKey);
    expect(watched.code).toBe(1);
    expect(watched.stderr).toContain('No batch named "no-key"');
    // A batch that had rows keeps them when a later enqueue of it fails the same way.
    const urls = h.file('u.csv', 'id,image_url,prompt\nu,https://example.com/u.jpg,describe\n');
    expect((await cli(['enqueue', urls, '--batch', 'kept'], noKey)).code).toBe(0);
    expect((await cli(['enqueue', manifest, '--batch', 'kept'], noKey)).code).toBe(1);
    expect(await getStatus(h.ctx, 'kept')).toMatchObject({ rows: 1, jobs: 1, pending: 1 });
  });

  it('status --watch of a batch whose producer died before storing a row returns: nothing is left to do', async () => {
    const h = await createHarness();
    // What a producer killed right after creating the batch leaves: the batch, no row, no lease.
    await openBatch(h.ctx, 'orphan', { createdAt: Date.now() });
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 20_000);
    try {
      const result = await watchStatus(h.ctx, { batch: 'orphan', intervalMs: 50, signal: stop.signal });
      expect(result.interrupted).toBe(false);
      expect(result.statuses[0]).toMatchObject({ batch: 'orphan', jobs: 0, pending: 0, finished: true });
    } finally {
      clearTimeout(timer);
    }
  });
});
