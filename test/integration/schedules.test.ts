import { once } from 'node:events';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it, onTestFinished } from 'vitest';
import { fetchManifest } from '../../src/manifest/fetch-manifest.js';
import { runScheduleTick } from '../../src/ops/schedule-tick.js';
import { addSchedule, listSchedules, openTicksQueue, removeSchedule, tickRecords, type TickRecord } from '../../src/ops/schedules.js';
import { getStatus } from '../../src/ops/status.js';
import { startScheduler } from '../../src/ops/start-scheduler.js';
import { createHarness, runCliProcess, spawnCli, startPrivateRedis, until, type Harness, type SpawnedCli } from '../helpers/harness.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { pngBytes } from '../helpers/images.js';
import { createCheckedUploads } from '../../src/manifest/upload-images.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';

/** A manifest of URL rows with these ids (prompt = "describe <id>"). */
function csv(ids: string[]): string {
  return `id,image_url,prompt\n${ids.map((id) => `${id},https://example.com/${id}.jpg,describe ${id}`).join('\n')}\n`;
}

const ids = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `r${String(from + i).padStart(2, '0')}`);

/** Oldest first. */
async function ticksOf(h: Harness, name: string): Promise<TickRecord[]> {
  return (await tickRecords(h.ctx, name)).reverse();
}

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** A local HTTP server on port 0 whose behaviour the test switches; hung answers are cut when it closes. */
async function httpServer(handler: Handler): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((request, response) => {
    requests.push(request.url ?? '');
    handler(request, response);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

describe('scheduled enqueueing', () => {
  it('two work processes serve a schedule: each tick runs once, only new rows are called, an edited manifest adds its new rows, a missing one fails one tick, remove stops it', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(['a', 'b', 'c']));
    const added = await runCliProcess(['schedule', 'add', 's', '--manifest', manifest, '--every', '1s'], h.env());
    expect(added.stderr).not.toMatch(/\n\s+at /);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/schedule s added: every 1s, manifest .*m\.csv -> batch s/);

    const workers: SpawnedCli[] = [spawnCli(['work', '--grace', '2s'], h.env()), spawnCli(['work', '--grace', '2s'], h.env())];
    onTestFinished(() => {
      for (const worker of workers) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
    });
    const tickLines = (): string[] =>
      workers.flatMap((worker) => [...worker.output().matchAll(/schedule s: tick (\S+) (ok|failed|skipped)/g)].map((m) => m[1] as string));
    let beforeRemove: TickRecord[] = [];
    let removeMs = 0;
    try {
      await until('three ok ticks', async () => (await ticksOf(h, 's')).filter((r) => r.outcome === 'ok').length >= 3, 90_000);
      await until('the 3 rows answered', async () => (await getStatus(h.ctx, 's')).ok === 3, 60_000);
      const first = await ticksOf(h, 's');
      // (On a busy machine the first tick due may start after the next one, in the other process,
      // and be skipped while that one enqueues: the first ok tick is the one that adds the rows.)
      const adding = first.find((r) => r.outcome === 'ok' && r.added > 0);
      expect(adding).toMatchObject({ outcome: 'ok', batch: 's', rows: 3, added: 3, present: 0, rejected: 0 });
      // Every other tick found each row present: it added (and cost) nothing. (A tick due while the
      // one before still enqueued the batch would be skipped: never a second producer.)
      // (On a busy machine a tick may start late: the ticks due meanwhile are recorded as missed.)
      for (const later of first.filter((r) => r !== adding)) {
        if (later.outcome === 'missed') expect(later.reason).toContain('no work process took this tick when it was due');
        else if (later.outcome === 'skipped') expect(later.reason).toContain('being enqueued by another producer');
        else expect(later).toMatchObject({ outcome: 'ok', rows: 3, added: 0, present: 3 });
      }
      // One record per due time, a second apart.
      // (Records come in the order ticks ended: on a busy machine not always the order they were due.)
      const due = first.map((r) => r.tick).sort((a, b) => a - b);
      expect(new Set(due).size).toBe(due.length);
      for (let i = 1; i < due.length; i++) expect((due[i] as number) - (due[i - 1] as number)).toBeGreaterThanOrEqual(1000);
      expect(h.emulator.stats().accepted).toBe(3);

      // The manifest edited between ticks: a tick adds just the two new rows.
      // (Replaced whole, as an editor or a sync tool does: a tick never reads a half-written file.)
      writeFileSync(`${manifest}.new`, csv(['a', 'b', 'c', 'd', 'e']));
      renameSync(`${manifest}.new`, manifest);
      await until('a tick adding the 2 new rows', async () => (await ticksOf(h, 's')).some((r) => r.added === 2), 60_000);
      await until('the 5 rows answered', async () => (await getStatus(h.ctx, 's')).ok === 5, 60_000);
      expect((await ticksOf(h, 's')).filter((r) => r.added > 0).map((r) => [r.added, r.present])).toEqual([
        [3, 0],
        [2, 3],
      ]);
      expect(h.emulator.stats().accepted).toBe(5);

      // The manifest gone: one tick fails with the reason, the schedule goes on, and the next tick
      // after it is back succeeds.
      renameSync(manifest, `${manifest}.away`);
      await until('a failed tick', async () => (await ticksOf(h, 's')).some((r) => r.outcome === 'failed'), 60_000);
      const failed = (await ticksOf(h, 's')).find((r) => r.outcome === 'failed') as TickRecord;
      expect(failed.reason).toBe(`Cannot read manifest ${manifest}: no such file.`);
      renameSync(`${manifest}.away`, manifest);
      await until(
        'an ok tick after the failed one',
        async () => {
          const records = await ticksOf(h, 's');
          const at = records.findIndex((r) => r.outcome === 'failed');
          return records.slice(at + 1).some((r) => r.outcome === 'ok');
        },
        60_000,
      );
      expect(h.emulator.stats().accepted).toBe(5);

      const list = await runCliProcess(['schedule', 'list', '--ticks', '50'], h.env());
      expect(list.code).toBe(0);
      expect(list.stdout).toMatch(/^schedule s: every 1s, next tick \S+Z \((in|\d).*\)$/m);
      expect(list.stdout).toMatch(/manifest +.*m\.csv -> batch s/);
      expect(list.stdout).toMatch(/last tick +\S+Z OK \(.*\): 5 rows read, 0 added, 5 already present, 0 rejected/);
      expect(list.stdout).toContain(`FAILED (`);
      expect(list.stdout).toContain(`Cannot read manifest ${manifest}: no such file.`);
      const json = await runCliProcess(['schedule', 'list', '--json'], h.env());
      const [listed] = JSON.parse(json.stdout) as Array<{ name: string; everyMs: number; batch: string; next: number; ticks: TickRecord[] }>;
      expect(listed).toMatchObject({ name: 's', everyMs: 1000, batch: 's', manifest });
      expect(listed?.next).toBeGreaterThan(0);
      expect(listed?.ticks.some((r) => r.outcome === 'failed' && r.reason?.includes('no such file'))).toBe(true);

      // Removed: no tick is due any more, and none runs.
      beforeRemove = await ticksOf(h, 's');
      const removeStarted = Date.now();
      const removed = await runCliProcess(['schedule', 'remove', 's'], h.env());
      removeMs = Date.now() - removeStarted;
      expect(removed.code).toBe(0);
      expect(removed.stdout).toContain('schedule s removed');
      expect(await listSchedules(h.ctx)).toEqual([]);
      const ticks = openTicksQueue(h.ctx);
      try {
        await until('no tick queued or running', async () => (await ticks.getJobCountByTypes('delayed', 'waiting', 'prioritized', 'active')) === 0, 30_000);
      } finally {
        await ticks.close();
      }
      const ran = tickLines().length;
      // A marker schedule, every 1s as s was, ticks twice in the same processes: they have served
      // the ticks queue for over a second since, and a tick of s still due would have run too.
      await addSchedule(h.ctx, { name: 'marker', manifest: h.file('k.csv', csv(['k'])), everyMs: 1000 });
      await until('two ticks of the marker schedule', async () => (await ticksOf(h, 'marker')).filter((r) => r.outcome === 'ok').length >= 2, 60_000);
      expect(tickLines().length).toBe(ran);
      expect(await tickRecords(h.ctx, 's')).toEqual([]);
      const again = await runCliProcess(['schedule', 'remove', 's'], h.env());
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('No schedule named "s"');
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      await Promise.all(workers.map((worker) => worker.exited));
    }
    // Each tick ran once, in one of the two processes: every recorded tick is logged exactly once
    // across both (and no more ran between the last look and the removal than fell due meanwhile:
    // one a second, plus the one under way).
    const lines = tickLines();
    expect(new Set(lines).size).toBe(lines.length);
    const ran = beforeRemove.filter((r) => r.outcome !== 'missed');
    for (const record of ran) expect(lines.filter((line) => line === new Date(record.tick).toISOString())).toHaveLength(1);
    expect(lines.length - ran.length).toBeLessThanOrEqual(Math.ceil(removeMs / 1000) + 1);
    for (const worker of workers) expect(worker.output()).not.toMatch(/\n\s+at /);
  }, 240_000);

  it('a URL manifest: a 500, a hang past the time-out and a too-big answer each fail one tick with the reason; the ticks after succeed', async () => {
    const h = await createHarness();
    let mode: 'ok' | '500' | 'hang' | 'big' = '500';
    let body = csv(['a', 'b']);
    const server = await httpServer((_request, response) => {
      if (mode === '500') response.writeHead(500).end('boom');
      else if (mode === 'hang') response.writeHead(200, { 'content-type': 'text/csv' }).write('id,image_url,prompt\n');
      else if (mode === 'big') {
        // No Content-Length: the cap is met while streaming.
        response.writeHead(200, { 'content-type': 'text/csv' });
        response.end(csv(ids(200)));
      } else response.writeHead(200, { 'content-type': 'text/csv' }).end(body);
    });
    const url = `${server.url}/feeds/m.csv?token=s3cret`;
    await addSchedule(h.ctx, { name: 'u', manifest: url, everyMs: 1000, fetch: { timeoutMs: 400, maxBytes: 4096 } });
    const scheduler = await startScheduler(h.ctx);
    onTestFinished(() => scheduler.close(0));
    const awaitTick = async (what: string, check: (r: TickRecord) => boolean): Promise<TickRecord> => {
      let found: TickRecord | undefined;
      await until(
        what,
        async () => {
          found = (await ticksOf(h, 'u')).find(check);
          return found !== undefined;
        },
        30_000,
      );
      return found as TickRecord;
    };
    const shown = `${server.url}/feeds/m.csv?…`;

    // (On a saturated machine a tick may miss the 400 ms time-out before it sees the 500: the next one, a second later, does.)
    const answered500 = await awaitTick('a tick failed by a 500', (r) => r.outcome === 'failed' && r.reason?.includes('500') === true);
    expect(answered500.reason).toBe(`Cannot download manifest ${shown}: the server answered 500 Internal Server Error.`);
    mode = 'ok';
    await awaitTick('an ok tick', (r) => r.outcome === 'ok' && r.added === 2);
    expect((await getStatus(h.ctx, 'u')).manifest).toBe(shown);
    mode = 'hang';
    const hung = await awaitTick('a tick failed by the time-out', (r) => r.outcome === 'failed' && r.reason?.includes('within') === true);
    expect(hung.reason).toBe(`Cannot download manifest ${shown}: no complete answer within 400ms (--fetch-timeout).`);
    expect(hung.ms).toBeLessThan(5000);
    mode = 'big';
    const big = await awaitTick('a tick failed by the size cap', (r) => r.outcome === 'failed' && r.reason?.includes('larger') === true);
    expect(big.reason).toBe(`Cannot download manifest ${shown}: it is larger than 4.0 KiB (--max-manifest-bytes 4096).`);
    body = csv(['a', 'b', 'c']);
    mode = 'ok';
    await awaitTick('an ok tick adding the new row', (r) => r.outcome === 'ok' && r.added === 1);
    const records = await ticksOf(h, 'u');
    expect(JSON.stringify(records)).not.toContain('s3cret');
    expect(JSON.stringify(records)).not.toContain('falbatch-manifest-');
    // (Every tick kept: on a busy machine more ticks may have run since the 500 than the default shows.)
    const list = await runCliProcess(['schedule', 'list', '--ticks', '50'], h.env());
    expect(list.stdout).toContain(`manifest   ${shown} -> batch u`);
    expect(list.stdout).toContain('the server answered 500');
    expect(list.stdout).not.toContain('s3cret');
    // Ticks never overlap the batch's rows: every row once in the queue.
    expect(await h.ctx.redis.hlen(h.ctx.keys.batch('u').keys)).toBe(3);
  }, 120_000);

  it('--max-rows caps each tick at the first N new rows in manifest order; the rest are added by later ticks', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(ids(7)));
    // A long interval, and no scheduler running: the test runs the ticks itself.
    const { schedule } = await addSchedule(h.ctx, { name: 'cap', manifest, everyMs: 3_600_000, maxRows: 3 });
    const keys = h.ctx.keys.batch('cap');
    const seen: TickRecord[] = [];
    const expected: Array<[number, number, string[]]> = [
      [3, 4, ids(3)],
      [3, 1, ids(6)],
      [1, 0, ids(7)],
      [0, 0, ids(7)],
    ];
    for (const [added, deferred, present] of expected) {
      const record = await runScheduleTick(h.ctx, schedule);
      seen.push(record);
      expect(record).toMatchObject({ outcome: 'ok', rows: 7, added, deferred });
      // Rows left for later are not marked present: only the admitted ones are in the batch.
      expect((await h.ctx.redis.hkeys(keys.keys)).sort()).toEqual(present);
    }
    expect(seen.map((r) => r.capped)).toEqual(['max-rows', 'max-rows', undefined, undefined]);
    expect(seen[0]?.reason).toBe('--max-rows 3 reached: 4 new rows left for later ticks');
    expect(await h.ctx.queue.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(7);
  });

  it('ticks due while no work process could take them are recorded as missed, and schedule list shows them', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(['a', 'b']));
    const { schedule } = await addSchedule(h.ctx, { name: 'gap', manifest, everyMs: 1000 });
    const due = schedule.next as number;
    // Nothing serves the ticks for a while (Redis down, or no `falbatch work`): the first tick
    // waits, and the ones due after it are never run.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const scheduler = await startScheduler(h.ctx);
    onTestFinished(() => scheduler.close(0));
    let late: TickRecord | undefined;
    await until(
      'the late tick',
      async () => {
        late = (await ticksOf(h, 'gap')).find((r) => r.outcome === 'ok');
        return late !== undefined;
      },
      30_000,
    );
    await scheduler.close(0);
    expect(late).toMatchObject({ tick: due, added: 2 });
    const missed = late?.missed ?? 0;
    expect(missed).toBeGreaterThanOrEqual(3);
    expect(scheduler.counts().missed).toBe(missed);
    const records = await ticksOf(h, 'gap');
    const at = records.findIndex((r) => r.tick === due);
    // Oldest first: the late tick, then each tick it stood in for, one a second.
    expect(records.slice(at + 1, at + 1 + missed).map((r) => [r.outcome, r.tick])).toEqual(
      Array.from({ length: missed }, (_, i) => ['missed', due + (i + 1) * 1000]),
    );
    expect(records[at + 1]?.reason).toBe(
      `no work process took this tick when it was due (Redis unreachable, or none running): the tick due ${new Date(due).toISOString()} ran late, at ${new Date(late?.at as number).toISOString()}, in its place`,
    );
    // The ticks after ran on their own due times, past the missed ones.
    for (const record of records.slice(at + 1 + missed)) expect(record.tick).toBeGreaterThan(due + missed * 1000);

    const list = await runCliProcess(['schedule', 'list', '--ticks', '50'], h.env());
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(
      `${new Date(due + 1000).toISOString()} MISSED: no work process took this tick when it was due (Redis unreachable, or none running)`,
    );
    expect(list.stdout).toMatch(
      new RegExp(`${new Date(due).toISOString()} OK \\(.*\\): 2 rows read, 2 added.*; ran \\S+ late, in place of ${missed} missed ticks`),
    );
    const json = await runCliProcess(['schedule', 'list', '--json'], h.env());
    const [listed] = JSON.parse(json.stdout) as Array<{ ticks: TickRecord[] }>;
    expect(
      listed?.ticks
        .filter((r) => r.outcome === 'missed')
        .map((r) => r.tick)
        .sort(),
    ).toEqual(Array.from({ length: missed }, (_, i) => due + (i + 1) * 1000));
    expect(listed?.ticks.find((r) => r.tick === due)).toMatchObject({ outcome: 'ok', missed });
  }, 60_000);

  it('ticks due while Redis was down are recorded as missed by the work process that serves the schedule', async () => {
    const redis = await startPrivateRedis();
    const h = await createHarness({ redisUrl: redis.url });
    await addSchedule(h.ctx, { name: 'outage', manifest: h.file('m.csv', csv(['a'])), everyMs: 1000 });
    const worker = spawnCli(['work', '--grace', '2s'], h.env());
    onTestFinished(() => {
      if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
    });
    await until('two ok ticks', async () => (await ticksOf(h, 'outage')).filter((r) => r.outcome === 'ok').length >= 2, 60_000);
    await redis.stop();
    const down = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 4000)); // Redis down for a while
    await redis.start();
    const up = Date.now();
    let late: TickRecord | undefined;
    await until(
      'a tick run late, in place of the ones due while Redis was down',
      async () => {
        late = (await ticksOf(h, 'outage')).find((r) => r.at >= up && (r.missed ?? 0) > 0);
        return late !== undefined;
      },
      60_000,
    );
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    const records = await ticksOf(h, 'outage');
    const missed = records.filter((r) => r.outcome === 'missed');
    // The ticks due while Redis was down (about 4), but the one run late in their place, are there
    // as missed (and any due just before, that the loaded machine had not taken yet).
    expect(missed.filter((r) => r.tick > down && r.tick < up).length).toBeGreaterThanOrEqual(2);
    expect(missed.length).toBe(records.reduce((sum, r) => sum + (r.missed ?? 0), 0));
    expect(new Set(records.map((r) => r.tick)).size).toBe(records.length);
    const list = await runCliProcess(['schedule', 'list', '--ticks', '50'], h.env());
    expect(list.stdout).toContain('MISSED: no work process took this tick when it was due (Redis unreachable, or none running)');
    expect(worker.output()).toMatch(/schedule outage: \d+ ticks due from \S+ missed \(no work process could take them: Redis unreachable, or none running\)/);
  }, 120_000);

  it('a schedule service checks cached uploads once, not at every tick: ticks over an unchanged manifest send nothing to fal storage', async () => {
    const h = await createHarness();
    const names = ids(8);
    for (const name of names) h.file(`${name}.png`, pngBytes(name));
    const manifest = h.file('m.csv', `id,image_url,prompt\n${names.map((name) => `${name},${name}.png,describe ${name}`).join('\n')}\n`);
    // Uploaded by an earlier run: the schedule finds every image in the upload cache.
    await enqueueManifest(h.ctx, { manifest, batch: 'earlier' });
    expect(h.emulator.stats()).toMatchObject({ uploads: 8, fileReads: 0 });

    await addSchedule(h.ctx, { name: 'local', manifest, everyMs: 1000 });
    const scheduler = await startScheduler(h.ctx);
    onTestFinished(() => scheduler.close(0));
    await until('four ok ticks', async () => (await ticksOf(h, 'local')).filter((r) => r.outcome === 'ok').length >= 4, 60_000);
    await scheduler.close(0);
    const ok = (await ticksOf(h, 'local')).filter((r) => r.outcome === 'ok');
    expect(ok[0]).toMatchObject({ added: 8, present: 0 });
    for (const later of ok.slice(1)) expect(later).toMatchObject({ added: 0, present: 8 });
    // The first tick checked each cached URL (8 HEADs); the later ones sent nothing (8 each before).
    expect(h.emulator.stats()).toMatchObject({ uploads: 8, fileReads: 8 });
  }, 90_000);

  it("a schedule service's checks of cached uploads: a URL found served is trusted until the re-check interval, one fal lost is uploaded again", async () => {
    const h = await createHarness();
    const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
    const ctx = { ...h.ctx, clock };
    const names = ids(3);
    for (const name of names) h.file(`${name}.png`, pngBytes(name));
    const manifest = h.file('m.csv', `id,image_url,prompt\n${names.map((name) => `${name},${name}.png,describe ${name}`).join('\n')}\n`);
    await enqueueManifest(ctx, { manifest, batch: 'earlier' });
    const { schedule } = await addSchedule(ctx, { name: 'local', manifest, everyMs: 3_600_000 });
    const checkedUploads = createCheckedUploads(24 * 3_600_000);
    const tick = async (): Promise<TickRecord> => runScheduleTick(ctx, schedule, { checkedUploads });

    expect(await tick()).toMatchObject({ outcome: 'ok', added: 3 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 3, fileReads: 3 });
    await clock.advance(23 * 3_600_000);
    expect(await tick()).toMatchObject({ outcome: 'ok', present: 3 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 3, fileReads: 3 });
    // A day after the check: checked again, once.
    await clock.advance(3_600_000);
    expect(await tick()).toMatchObject({ outcome: 'ok', present: 3 });
    expect(h.emulator.stats()).toMatchObject({ uploads: 3, fileReads: 6 });
    // fal lost the files: the next check finds them gone, uploads them again, and trusts the new ones.
    h.emulator.expireFiles();
    await clock.advance(24 * 3_600_000);
    await tick();
    expect(h.emulator.stats()).toMatchObject({ uploads: 6, fileReads: 9 });
    await tick();
    expect(h.emulator.stats()).toMatchObject({ uploads: 6, fileReads: 9 });
  });

  it('ticks read gzipped JSONL and Parquet manifests too: a local .jsonl.gz, and a URL without an extension with --manifest-format parquet', async () => {
    const h = await createHarness();
    const rows = ids(3).map((id) => ({ id, image_url: `https://example.com/${id}.jpg`, prompt: `describe ${id}` }));
    const local = h.file('feed.jsonl.gz', gzipSync(rows.map((row) => JSON.stringify(row)).join('\n')));
    const { schedule: jsonl } = await addSchedule(h.ctx, { name: 'jsonl', manifest: local, everyMs: 3_600_000 });
    expect(await runScheduleTick(h.ctx, jsonl)).toMatchObject({ outcome: 'ok', added: 3 });
    expect(await runScheduleTick(h.ctx, jsonl)).toMatchObject({ outcome: 'ok', added: 0, present: 3 });

    const parquet = Buffer.from(
      parquetWriteBuffer({
        columnData: (['id', 'image_url', 'prompt'] as const).map((name) => ({ name, data: rows.map((row) => row[name]), type: 'STRING' as const })),
      }),
    );
    const server = await httpServer((_request, response) => response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(parquet));
    const { schedule: remote } = await addSchedule(h.ctx, {
      name: 'remote',
      manifest: `${server.url}/export/latest`,
      everyMs: 3_600_000,
      settings: { manifestFormat: 'parquet' },
    });
    expect(await runScheduleTick(h.ctx, remote)).toMatchObject({ outcome: 'ok', added: 3 });
    expect((await getStatus(h.ctx, 'remote')).manifest).toBe(`${server.url}/export/latest`);
  });

  it('a schedule with --retention gives its batch that retention at every tick (forever included)', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(ids(2)));
    const { schedule } = await addSchedule(h.ctx, { name: 'kept', manifest, everyMs: 3_600_000, retentionMs: 2 * 3_600_000 });
    expect(schedule.retention).toBe(2 * 3_600_000);
    expect(await runScheduleTick(h.ctx, schedule)).toMatchObject({ outcome: 'ok', added: 2 });
    expect(await h.ctx.redis.hget(h.ctx.keys.batch('kept').meta, 'retention_ms')).toBe(String(2 * 3_600_000));
    const { schedule: forever } = await addSchedule(h.ctx, { name: 'kept', manifest, everyMs: 3_600_000, retentionMs: Number.POSITIVE_INFINITY });
    expect(forever.retention).toBe('forever');
    expect(await runScheduleTick(h.ctx, forever)).toMatchObject({ outcome: 'ok', added: 0, present: 2 });
    expect(await h.ctx.redis.hget(h.ctx.keys.batch('kept').meta, 'retention_ms')).toBe('forever');
  });

  it('--max-spend caps a tick at the rows whose forecast cost fits; without a usable price the tick refuses, saying why', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(ids(5)));
    const { schedule } = await addSchedule(h.ctx, {
      name: 'spend',
      manifest,
      everyMs: 3_600_000,
      maxSpend: 0.025,
      settings: { price: { unit: 'call', amount: 0.01, currency: 'USD', source: 'flag' } },
    });
    const first = await runScheduleTick(h.ctx, schedule);
    expect(first).toMatchObject({ outcome: 'ok', added: 2, deferred: 3, capped: 'max-spend', spend: { amount: 0.02, currency: 'USD' } });
    expect(first.reason).toBe('--max-spend 0.025 reached: 3 new rows left for later ticks');
    expect(await runScheduleTick(h.ctx, schedule)).toMatchObject({ outcome: 'ok', added: 2, present: 2, deferred: 1 });

    // The emulator prices llava-next per second, and nothing was measured in this namespace yet.
    const { schedule: unpriced } = await addSchedule(h.ctx, { name: 'unpriced', manifest, everyMs: 3_600_000, maxSpend: 1 });
    const refused = await runScheduleTick(h.ctx, unpriced);
    expect(refused.outcome).toBe('failed');
    expect(refused.reason).toContain(
      '--max-spend with a price per second (0.0005 USD/s for fal-ai/llava-next) needs the mean inference time of a call, and no call was measured',
    );
    expect(await h.ctx.redis.exists(h.ctx.keys.batch('unpriced').meta)).toBe(0);
  });

  it('a tick whose batch another producer is enqueueing is skipped; --strict fails a tick on a bad row, enqueueing nothing', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(['a', 'b']));
    const { schedule } = await addSchedule(h.ctx, { name: 'busy', manifest, everyMs: 3_600_000 });
    await h.ctx.redis.set(h.ctx.keys.batch('busy').enqueuing, 'another-producer', 'PX', 60_000);
    const skipped = await runScheduleTick(h.ctx, schedule);
    expect(skipped.outcome).toBe('skipped');
    expect(skipped.reason).toContain('Batch busy is being enqueued by another producer right now');
    await h.ctx.redis.del(h.ctx.keys.batch('busy').enqueuing);
    expect(await runScheduleTick(h.ctx, schedule)).toMatchObject({ outcome: 'ok', added: 2 });

    const bad = h.file('bad.csv', 'id,image_url,prompt\na,https://example.com/a.jpg,one\nb,https://example.com/b.jpg,\n');
    const { schedule: strict } = await addSchedule(h.ctx, { name: 'strict', manifest: bad, everyMs: 3_600_000, strict: true });
    const failed = await runScheduleTick(h.ctx, strict);
    expect(failed).toMatchObject({ outcome: 'failed', added: 0 });
    expect(failed.reason).toContain('line 3: prompt is empty (--strict: nothing was enqueued)');
  });

  it('records when the tick was due, when it started and how long it took, by the injected clock', async () => {
    const h = await createHarness();
    const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
    const ctx = { ...h.ctx, clock };
    const { schedule } = await addSchedule(h.ctx, { name: 'timed', manifest: 'https://manifests.example/m.csv', everyMs: 3_600_000 });
    // The download takes 1.5 s of the injected clock.
    const slowFetch = (async () => {
      await clock.advance(1500);
      return new Response(csv(['a']), { status: 200, headers: { 'content-type': 'text/csv' } });
    }) as unknown as typeof fetch;
    const due = Date.UTC(2026, 5, 1, 11, 59, 59);
    const record = await runScheduleTick(ctx, schedule, { scheduledAt: due, fetch: slowFetch, worker: 'test:1' });
    expect(record).toMatchObject({ tick: due, at: Date.UTC(2026, 5, 1, 12), ms: 1500, outcome: 'ok', added: 1, worker: 'test:1' });
  });

  it('schedule add refuses a bad timing, naming the flag, before storing anything', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', csv(['a']));
    const cases: Array<[string[], string]> = [
      [['--cron', 'every hour'], 'Expected --cron to be a cron expression'],
      // Fewer fields than 5 were filled in by the parser: "5" became a weekly tick.
      [
        ['--cron', '5'],
        'Expected --cron to be a cron expression of 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, e.g. "0 * * * *" for every hour, got "5" (1 field)',
      ],
      [['--cron', '* * *'], 'got "* * *" (3 fields)'],
      [['--cron', '0 0 0 1 1 * 2030'], 'got "0 0 0 1 1 * 2030" (7 fields)'],
      [['--cron', '0 * * * *', '--tz', 'Mars/Olympus'], 'Expected --tz to be an IANA time zone'],
      [['--cron', '0 * * * *', '--every', '1h'], 'A schedule needs exactly one of --cron "EXPR" and --every DURATION'],
      [['--every', '100ms'], 'Expected --every to be at least 1s'],
    ];
    for (const [flags, message] of cases) {
      const result = await runCliProcess(['schedule', 'add', 'x', '--manifest', manifest, ...flags], h.env());
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(message);
    }
    const missing = await runCliProcess(['schedule', 'add', 'x', '--manifest', `${manifest}.nope`, '--every', '1h'], h.env());
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no such file');
    expect(await listSchedules(h.ctx)).toEqual([]);
    // A cron schedule, in a time zone: its next tick is the next match.
    const { schedule, created } = await addSchedule(h.ctx, { name: 'nightly', manifest, cron: '30 2 * * *', tz: 'Europe/Paris' });
    expect(created).toBe(true);
    expect(schedule).toMatchObject({ cron: '30 2 * * *', tz: 'Europe/Paris', everyMs: undefined, batch: 'nightly' });
    const paris = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Paris', hour: '2-digit', minute: '2-digit' }).format(new Date(schedule.next as number));
    expect(paris).toBe('02:30');
    expect((await addSchedule(h.ctx, { name: 'nightly', manifest, cron: '0 3 * * *' })).created).toBe(false);
    await removeSchedule(h.ctx, 'nightly');
  });
});

describe('fetchManifest', () => {
  it('follows redirects up to the limit, names the file after the URL, and refuses a declared size over the cap', async () => {
    const server = await httpServer((request, response) => {
      const hops = Number(/^\/hop\/(\d+)/.exec(request.url ?? '')?.[1] ?? NaN);
      if (hops > 0) response.writeHead(302, { location: `/hop/${hops - 1}` }).end();
      else if (hops === 0) response.writeHead(302, { location: '/data/jobs.csv' }).end();
      else if (request.url === '/declared') response.writeHead(200, { 'content-length': '5000000' }).end();
      else if (request.url === '/data/jobs.csv') response.writeHead(200).end(csv(['a']));
      else response.writeHead(404).end();
    });
    const fetched = await fetchManifest(`${server.url}/hop/1`, { maxRedirects: 2 });
    try {
      expect(basename(fetched.path)).toBe('jobs.csv');
      expect(fetched.bytes).toBe(Buffer.byteLength(csv(['a'])));
    } finally {
      await fetched.remove();
    }
    expect(existsSync(fetched.path)).toBe(false);
    await expect(fetchManifest(`${server.url}/hop/3`, { maxRedirects: 2 })).rejects.toThrow('more than 2 redirects (--max-redirects)');
    await expect(fetchManifest(`${server.url}/declared`, { maxBytes: 1000 })).rejects.toThrow(
      'it is larger than 1000 bytes (--max-manifest-bytes 1000): Content-Length says 4.8 MiB',
    );
    await expect(fetchManifest(`${server.url}/nothing`)).rejects.toThrow('the server answered 404 Not Found');
  });
});
