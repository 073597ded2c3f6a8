import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cancelBatch, pauseBatch, resumeBatch } from '../../src/ops/control.js';
import { statusReport } from '../../src/cli/output.js';
import { getStatus } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { pauseQueue, pauseQueueByOperator, queuePause, resumeQueue } from '../../src/queue/queue-pause.js';
import { exportResults } from '../../src/results/export.js';
import type { RowResult } from '../../src/results/row-result.js';
import { createHarness, readCsv, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';

/** A manifest of `rows` rows; `tag` keeps batches' rows apart (identical rows would share one call). */
function manifestOf(h: Harness, name: string, rows: number, tag = name): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${tag}/${i}.jpg,describe ${tag} ${i}`).join('\n');
  return h.file(name, `id,image_url,prompt\n${body}\n`);
}

async function results(h: Harness, batch: string, rows: number): Promise<RowResult[]> {
  const found = await h.ctx.store.getMany(
    batch,
    Array.from({ length: rows }, (_, i) => `r${i}`),
  );
  return found.filter((r): r is RowResult => r !== undefined);
}

/**
 * Runs a marker batch of `rows` rows through the worker and waits for it to finish: proof that the
 * worker has taken jobs from the queue since (two rounds of its concurrency, say, so that any job
 * that came back to the wait list meanwhile was taken before the last of the marker's).
 */
async function runMarker(h: Harness, rows: number): Promise<void> {
  const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'marker.csv', rows) });
  await until('the marker batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
}

describe('batch control: pause, resume, cancel, priorities, spend caps', () => {
  it('the queue-wide pause, as BullMQ keeps it, is what status reads: by an operator, or by fal refusing the account, and lifted by resume', async () => {
    const h = await createHarness();
    expect(await queuePause(h.ctx)).toBeUndefined();
    await pauseQueueByOperator(h.ctx);
    // BullMQ's own view and falbatch's (read from Redis without a BullMQ queue) agree.
    expect(await h.ctx.queue.isPaused()).toBe(true);
    expect(await queuePause(h.ctx)).toEqual({ by: 'operator', reason: 'paused by an operator' });
    await resumeQueue(h.ctx);
    expect(await h.ctx.queue.isPaused()).toBe(false);
    expect(await queuePause(h.ctx)).toBeUndefined();
    await pauseQueue(h.ctx, 'fal refused the account (403)');
    expect(await queuePause(h.ctx)).toEqual({ by: 'account', reason: 'fal refused the account (403)' });
    await resumeQueue(h.ctx);
    expect(await queuePause(h.ctx)).toBeUndefined();
  });

  it('cancel mid-batch: in-flight requests are cancelled at fal, nothing more is submitted, rows end cancelled; retry finishes them', async () => {
    const rows = 60;
    // The first four requests never finish by themselves (until cancelled): in flight when the cancel comes, whatever the timing.
    const h = await createHarness({ emulator: { runners: 6, latency: '300ms', faults: ['stuck=1x4'] } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'm.csv', rows) });
    // A worker in a process of its own: it learns of the cancel through Redis only.
    const worker = spawnCli(['work', '--concurrency', '6'], h.env());
    try {
      await until(
        'rows answered, four stuck at fal, most still waiting',
        async () => (await getStatus(h.ctx, batch)).ok >= 6 && h.emulator.stats().inProgress >= 4,
        30_000,
      );
      const cancelled = await runCliProcess(['cancel', '--batch', batch], h.env());
      expect(cancelled.code).toBe(0);
      expect(cancelled.stdout).toMatch(
        new RegExp(
          `^batch ${batch} cancelled: \\d+ of its ${rows} distinct calls had not ended \\(\\d+ had ended ok, 0 failed\\); they end as failed, error class cancelled`,
        ),
      );
      await until('the requests in flight to be cancelled at fal', () => h.emulator.stats().cancels >= 4, 10_000);
      const submitsAfterCancel = h.emulator.stats().submits;
      await until('every row to end', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
      // Settled: no job is left that could call fal (none active or waiting, every cancelled row's
      // job parked), and no submit came after the cancel reached the rows in flight.
      await until(
        'no job left that could call fal',
        async () => {
          const { failed } = await getStatus(h.ctx, batch);
          const jobs = await h.ctx.queue.getJobCounts('active', 'waiting', 'prioritized', 'delayed');
          return jobs['active'] === 0 && jobs['waiting'] === 0 && jobs['prioritized'] === 0 && jobs['delayed'] === failed;
        },
        30_000,
      );
      const stats = h.emulator.stats();
      expect(stats.submits).toBe(submitsAfterCancel);

      const status = await getStatus(h.ctx, batch);
      expect(status.cancelled).toBe('cancelled by an operator');
      expect(status.ok + status.failed).toBe(rows);
      expect(status.ok).toBeGreaterThanOrEqual(6);
      expect(status.failed).toBeGreaterThan(rows / 3);
      const ended = await results(h, batch, rows);
      const gone = ended.filter((r) => r.status === 'failed');
      expect(gone.every((r) => r.error_type === 'cancelled')).toBe(true);
      // Those in flight were cancelled at fal (each one once), the others never called.
      const atFal = gone.filter((r) => r.request_id !== undefined);
      expect(atFal.length).toBe(stats.cancels);
      expect(atFal.every((r) => /cancelled by an operator: fal request \S+ cancelled/.test(r.error ?? ''))).toBe(true);
      expect(gone.filter((r) => r.request_id === undefined).every((r) => r.error === 'cancelled by an operator: not called')).toBe(true);
      // Cancelled requests are not billed; the answers fal gave are kept.
      expect(stats.billed).toBe(status.ok);
      const out = join(h.dir, 'out.csv');
      await exportResults(h.ctx, { batch, out });
      const exported = await readCsv(out);
      expect(exported.filter((r) => r['status'] === 'failed').every((r) => r['error_type'] === 'cancelled')).toBe(true);
      const shown = await runCliProcess(['status', '--batch', batch], h.env());
      expect(shown.stdout).toContain(`batch ${batch} (cancelled)`);

      // Sticky: rows added to the batch later are cancelled too, without a call.
      await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'm2.csv', rows + 2, 'm.csv'), batch });
      await until('the new rows to end', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
      expect(await getStatus(h.ctx, batch)).toMatchObject({ jobs: rows + 2, ok: status.ok, failed: status.failed + 2 });
      expect(h.emulator.stats().submits).toBe(submitsAfterCancel);

      // retry runs them: the cancel is lifted, and every row is answered, none paid twice.
      const retried = await runCliProcess(['retry', '--batch', batch, '--error', 'cancelled'], h.env());
      expect(retried.code).toBe(0);
      expect(retried.stdout).toContain(`batch ${batch}: ${status.failed + 2} failed rows with error cancelled back in the queue`);
      expect(retried.stderr).toContain(`Batch ${batch} was cancelled: the cancel is lifted.`);
      await until('the retried rows to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
      expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: rows + 2, failed: 0, cancelled: undefined });
      expect(h.emulator.stats()).toMatchObject({ billed: rows + 2, duplicateBilled: 0 });
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  }, 120_000);

  it('pause a batch: its rows stop being called (parked, not spun on) while another batch goes on; resume finishes them', async () => {
    const rows = 40;
    const otherRows = 16;
    const h = await createHarness({ emulator: { runners: 4, latency: '800ms' } });
    const { batch: paused } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'p.csv', rows) });
    const { batch: other } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'q.csv', otherRows) });
    const worker = await h.startWorker({ concurrency: 4 });
    await until('the first rows of the batch answered', async () => (await getStatus(h.ctx, paused)).ok >= 4);
    const pause = await runCliProcess(['pause', '--batch', paused], h.env());
    expect(pause.code).toBe(0);
    expect(pause.stdout).toContain(`batch ${paused} paused: its rows are not called now`);
    await until('the other batch to finish', async () => (await getStatus(h.ctx, other)).finished, 30_000);
    await until('the paused batch to settle', async () => (await getStatus(h.ctx, paused)).inFlight === 0);

    const held = await getStatus(h.ctx, paused);
    expect(held).toMatchObject({ finished: false, paused: 'paused by an operator', pausedBy: 'operator', failed: 0 });
    expect(held.pending).toBeGreaterThan(0);
    // Parked once each, out of the wait list: nothing is called, and workers do not spin on them.
    const parked = worker.counts().parked;
    expect(parked).toBeLessThanOrEqual(rows);
    const submits = h.emulator.stats().submits;
    // The worker goes on taking jobs (a marker batch, two rounds of its concurrency): a parked row
    // back in the wait list would be taken, parked again or called.
    const markerRows = 8;
    await runMarker(h, markerRows);
    expect(worker.counts().parked).toBe(parked);
    expect(h.emulator.stats().submits).toBe(submits + markerRows);
    expect((await getStatus(h.ctx, paused)).ok).toBe(held.ok);
    expect(await h.ctx.queue.getDelayedCount()).toBe(held.pending);
    const shown = await runCliProcess(['status', '--batch', paused], h.env());
    expect(shown.stdout).toContain(`batch ${paused} (PAUSED)`);
    expect(shown.stdout).toContain('paused    paused by an operator');

    const resumed = await runCliProcess(['resume', '--batch', paused], h.env());
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toBe(`batch ${paused} (pause lifted): ${held.pending} parked rows back in the queue\n`);
    await until('the paused batch to finish', async () => (await getStatus(h.ctx, paused)).finished, 30_000);
    expect(await getStatus(h.ctx, paused)).toMatchObject({ ok: rows, failed: 0, paused: undefined });
    expect(h.emulator.stats()).toMatchObject({ billed: rows + otherRows + markerRows, duplicateBilled: 0 });
    await worker.close();
  }, 90_000);

  it('priorities: with one runner and one row at a time, batches enqueued later with a higher priority are served first', async () => {
    const rows = 4;
    const h = await createHarness({ emulator: { runners: 1, latency: '30ms' } });
    const { batch: lowest } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'backfill.csv', rows), settings: { priority: 1 } });
    const { batch: middle } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'nightly.csv', rows), settings: { priority: 5 } });
    const { batch: top } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'interactive.csv', rows) });
    expect((await getStatus(h.ctx, lowest)).priority).toBe(1);
    expect((await getStatus(h.ctx, top)).priority).toBe(10);
    const worker = await h.startWorker({ concurrency: 1 });
    await until(
      'every batch to finish',
      async () => (await Promise.all([lowest, middle, top].map((b) => getStatus(h.ctx, b)))).every((s) => s.finished),
      30_000,
    );
    await worker.close();
    const submitted = async (batch: string): Promise<number[]> => (await results(h, batch, rows)).map((r) => r.submitted_at ?? NaN);
    const [first, second, third] = await Promise.all([submitted(top), submitted(middle), submitted(lowest)]);
    expect(Math.max(...(first ?? []))).toBeLessThan(Math.min(...(second ?? [])));
    expect(Math.max(...(second ?? []))).toBeLessThan(Math.min(...(third ?? [])));
  }, 60_000);

  it('--fal-priority low reaches fal (the emulator counts it), --priority is validated', async () => {
    const h = await createHarness({ emulator: { runners: 4, latency: '20ms' } });
    const low = await runCliProcess(
      ['run', manifestOf(h, 'backfill.csv', 5), '--fal-priority', 'low', '--priority', '2', '--out', join(h.dir, 'b.csv')],
      h.env(),
    );
    expect(low.code).toBe(0);
    const normal = await runCliProcess(['run', manifestOf(h, 'live.csv', 3), '--out', join(h.dir, 'l.csv')], h.env());
    expect(normal.code).toBe(0);
    expect(h.emulator.stats().submitsByPriority).toEqual({ low: 5, normal: 3 });
    const status = JSON.parse((await runCliProcess(['status', '--json'], h.env())).stdout) as Array<{
      manifest: string;
      priority: number;
      falPriority: string;
    }>;
    expect(status.find((s) => s.manifest.endsWith('backfill.csv'))).toMatchObject({ priority: 2, falPriority: 'low' });
    expect(status.find((s) => s.manifest.endsWith('live.csv'))).toMatchObject({ priority: 10, falPriority: 'normal' });
    const bad = await runCliProcess(['enqueue', manifestOf(h, 'x.csv', 1), '--priority', '11'], h.env());
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('Expected --priority to be an integer from 1 (served last) to 10 (served first, the default), got "11"');
  }, 60_000);

  it('--max-spend stops a batch within one concurrency of requests past the cap; raising the cap lets it finish', async () => {
    const rows = 20;
    const h = await createHarness({ emulator: { runners: 2, latency: '200ms' } });
    const manifest = manifestOf(h, 'm.csv', rows);
    const run = await runCliProcess(['run', manifest, '--price', '1/call', '--max-spend', '5', '--concurrency', '2', '--out', join(h.dir, 'out.csv')], h.env());
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /stopped: spend cap reached: [5-7]\.00 of 5\.00 USD; raise it with `falbatch resume --batch \S+ --max-spend N`, then run this command again/,
    );
    const stats = h.emulator.stats();
    expect(stats.billed).toBeGreaterThanOrEqual(5);
    expect(stats.billed).toBeLessThanOrEqual(5 + 2);
    const batch = /batch (\S+):/.exec(run.stdout)?.[1] ?? '';
    const capped = await getStatus(h.ctx, batch);
    expect(capped).toMatchObject({ pausedBy: 'spend-cap', ok: stats.billed, failed: 0, spend: { amount: stats.billed, cap: 5, currency: 'USD' } });
    expect(capped.paused).toBe(`spend cap reached: ${stats.billed}.00 of 5.00 USD; raise it with \`falbatch resume --batch ${batch} --max-spend N\``);
    const shown = await runCliProcess(['status', '--batch', batch], h.env());
    expect(shown.stdout).toContain(`batch ${batch} (SPEND CAP REACHED)`);
    expect(shown.stdout).toContain(`control   spend cap 5.00 USD (spent ${stats.billed}.00)`);

    // A resume that does not raise the cap says what still holds the batch.
    const still = await runCliProcess(['resume', '--batch', batch], h.env());
    expect(still.code).toBe(1);
    expect(still.stderr).toContain(`batch ${batch} is still held: spend cap reached`);
    const raised = await runCliProcess(['resume', '--batch', batch, '--max-spend', '100'], h.env());
    expect(raised.code).toBe(0);
    expect(raised.stdout).toMatch(new RegExp(`^batch ${batch}: \\d+ parked rows back in the queue; spend cap 100.00 USD\\n$`));
    const worker = await h.startWorker({ concurrency: 2 });
    await until('the batch to finish', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
    await worker.close();
    expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: rows, failed: 0, pausedBy: undefined, spend: { amount: rows, cap: 100 } });
    expect(h.emulator.stats()).toMatchObject({ billed: rows, duplicateBilled: 0 });
  }, 90_000);

  it('running again with a higher --max-spend goes on from where the cap stopped the batch', async () => {
    const rows = 8;
    const h = await createHarness({ emulator: { runners: 2, latency: '100ms' } });
    const manifest = manifestOf(h, 'm.csv', rows);
    const out = join(h.dir, 'out.csv');
    const first = await runCliProcess(['run', manifest, '--price', '1/call', '--max-spend', '3', '--concurrency', '2', '--out', out], h.env());
    expect(first.code).toBe(1);
    expect(first.stderr).toContain('spend cap reached');
    const again = await runCliProcess(['run', manifest, '--price', '1/call', '--max-spend', '100', '--concurrency', '2', '--out', out], h.env());
    expect(again.code).toBe(0);
    expect((await readCsv(out)).every((r) => r['status'] === 'ok')).toBe(true);
    expect(h.emulator.stats()).toMatchObject({ billed: rows, duplicateBilled: 0 });
  }, 60_000);

  it('a cancel of a paused batch ends its parked rows; resume of a cancelled batch lets rows not yet ended go on', async () => {
    const rows = 6;
    const h = await createHarness({ emulator: { runners: 2, latency: '20ms' } });
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'm.csv', rows) });
    const { pauseBatch } = await import('../../src/ops/control.js');
    await pauseBatch(h.ctx, batch);
    const worker = await h.startWorker({ concurrency: 2 });
    await until('every row parked', () => worker.counts().parked === rows);
    expect(h.emulator.stats().submits).toBe(0);
    const summary = await cancelBatch(h.ctx, batch);
    expect(summary).toMatchObject({ previous: 'paused', pending: rows, woken: rows });
    await until('the parked rows to end cancelled', async () => (await getStatus(h.ctx, batch)).finished);
    expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: 0, failed: rows });
    expect(h.emulator.stats().submits).toBe(0);
    // Resume lifts the cancel, but rows already cancelled stay so (retry runs them): their jobs stay parked.
    expect(await resumeBatch(h.ctx, batch)).toMatchObject({ previous: 'cancelled', woken: 0, held: undefined });
    // The worker goes on taking jobs (a marker batch): a cancelled row's job back in the queue would be called.
    await runMarker(h, 4);
    expect(await getStatus(h.ctx, batch)).toMatchObject({ ok: 0, failed: rows, cancelled: undefined });
    expect(h.emulator.stats().submits).toBe(4);
    expect(await h.ctx.queue.getDelayedCount()).toBe(rows);
    await worker.close();
  }, 60_000);

  it('status of a paused batch says its stored rows wait for the pause, not for --max-waiting', async () => {
    const h = await createHarness();
    const { batch } = await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'm.csv', 5, 'p'), batch: 'held' });
    await pauseBatch(h.ctx, batch);
    // 100 more rows while it is paused: stored, not made jobs (the queue's cap, 10,000, is far off).
    await enqueueManifest(h.ctx, { manifest: manifestOf(h, 'm.csv', 105, 'p'), batch });
    const status = await getStatus(h.ctx, batch);
    expect(status).toMatchObject({ pending: 105, backlog: 100, pausedBy: 'operator' });
    const shown = statusReport(status);
    expect(shown).toContain('100 of them not yet jobs while it is paused');
    expect(shown).not.toContain('--max-waiting');
  });

  it("cancel counts in status's units: distinct calls not ended then; rows enqueued after end cancelled too, and the message says so", async () => {
    const h = await createHarness();
    // Six manifest rows, two of them identical: five distinct calls.
    const manifest = h.file(
      'm.csv',
      'image_url,prompt\nhttps://example.com/0.jpg,a\nhttps://example.com/1.jpg,b\nhttps://example.com/1.jpg,b\nhttps://example.com/2.jpg,c\nhttps://example.com/3.jpg,d\nhttps://example.com/4.jpg,e\n',
    );
    const { batch } = await enqueueManifest(h.ctx, { manifest, batch: 'units' });
    // A producer holds the batch (as a run still enqueueing it would).
    await h.ctx.redis.set(h.ctx.keys.batch(batch).enqueuing, 'another-producer', 'PX', 60_000);
    const summary = await cancelBatch(h.ctx, batch);
    expect(summary).toMatchObject({ pending: 5, jobs: 5, ok: 0, failed: 0, enqueuing: true });
    const shown = await runCliProcess(['cancel', '--batch', batch], h.env());
    expect(shown.stdout).toContain(`batch ${batch} cancelled: 5 of its 5 distinct calls had not ended (0 had ended ok, 0 failed)`);
    expect(shown.stdout).toContain(`A producer is enqueuing ${batch} now: the rows it adds end cancelled too.`);
    await h.ctx.redis.del(h.ctx.keys.batch(batch).enqueuing);
    const worker = await h.startWorker({ concurrency: 2 });
    try {
      await until('every row to end', async () => (await getStatus(h.ctx, batch)).finished, 30_000);
    } finally {
      await worker.close();
    }
    expect(await getStatus(h.ctx, batch)).toMatchObject({ jobs: 5, ok: 0, failed: 5 });
    expect(h.emulator.stats().submits).toBe(0);
  });
});
