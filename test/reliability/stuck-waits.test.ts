import { spawnSync } from 'node:child_process';
import { createServer, Socket, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { onTestFinished, describe, expect, it } from 'vitest';
import { createHarness, readCsv, redisUrl, spawnCli, until, type SpawnedCli } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

/** Waits for a spawned CLI to exit, for at most `ms`; kills it (SIGKILL) if it is still there. */
async function exitWithin(cli: SpawnedCli, ms: number): Promise<{ code: number | null | 'hung'; tookMs: number }> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([cli.exited, new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), ms)))]);
  clearTimeout(timer);
  if (code === 'hung') {
    cli.child.kill('SIGKILL');
    await cli.exited;
  }
  return { code, tookMs: Date.now() - started };
}

function mkfifo(path: string): void {
  const made = spawnSync('mkfifo', [path]);
  if (made.status !== 0) throw new Error(`mkfifo ${path} failed: ${made.stderr.toString()}`);
}

/**
 * A TCP proxy in front of the real Redis that can black-hole the traffic, as a network partition
 * does: connections stay open, bytes go nowhere, nothing is ever answered (no RST, no FIN).
 */
async function blackHoleProxy(target: string): Promise<{ url: string; freeze(): void }> {
  const { hostname, port } = new URL(target);
  let frozen = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(Number(port), hostname);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk: Buffer) => {
        if (!frozen) to.write(chunk);
      });
      from.on('error', () => undefined);
      from.on('close', () => {
        if (!frozen) to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return {
    url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`,
    freeze: () => {
      frozen = true;
    },
  };
}

describe('nothing waits for ever', () => {
  it('a row whose local image is a FIFO is rejected on its line; the run finishes and the good rows are ok', async () => {
    const h = await createHarness();
    h.file('ok.png', pngBytes('ok'));
    // open() of a FIFO without a writer blocks until one appears: it must never be opened that way.
    mkfifo(join(h.dir, 'pipe.png'));
    const manifest = h.file('m.csv', 'image_url,prompt\nok.png,first\npipe.png,stuck\nok.png,third\n');
    const out = join(h.dir, 'out.csv');
    const cli = spawnCli(['run', manifest, '--out', out], h.env());
    const { code } = await exitWithin(cli, 30_000);
    expect(code, cli.output()).toBe(2);
    expect(cli.output()).toContain('line 3: local file "pipe.png" is not a regular file (a FIFO)');
    const rows = await readCsv(out);
    expect(rows.map((r) => r['status'])).toEqual(['ok', 'rejected', 'ok']);
    expect(rows[1]?.['error']).toMatch(/^line 3: local file "pipe\.png" is not a regular file \(a FIFO\)/);
    expect(h.emulator.stats().submits).toBe(2);
  });

  it('SIGTERM ends enqueue within its grace period while Redis has stopped answering, saying what it waited for; a rerun resumes', async () => {
    const h = await createHarness();
    const rows = 20_000;
    const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const manifest = h.file('m.csv', `id,image_url,prompt\n${body}\n`);
    const proxy = await blackHoleProxy(redisUrl());
    const batch = 'stuck';
    const keys = h.ctx.keys.batch(batch);
    const cli = spawnCli(['enqueue', manifest, '--batch', batch], h.env({ REDIS_URL: proxy.url }));
    // Freeze Redis mid-manifest: some rows are in, the producer holds its lease and waits on Redis.
    await until('rows being enqueued', async () => (await h.ctx.redis.hlen(keys.keys)) > 0);
    proxy.freeze();
    cli.child.kill('SIGTERM');
    // Default grace (30 s) plus 5 s to close, with a generous margin for a loaded machine.
    const { code, tookMs } = await exitWithin(cli, 60_000);
    expect(code, cli.output()).toBe(130);
    // Not before the grace period (30 s by default): the graceful path had its chance.
    expect(tookMs).toBeGreaterThanOrEqual(30_000);
    expect(cli.output()).toMatch(
      /still not stopped 35s after SIGTERM: enqueueing \S*m\.csv \(Redis at redis:\/\/127\.0\.0\.1:\d+\); pending: \d+ network connections?\./,
    );
    expect(cli.output()).toContain('run the same command again to continue');

    // The batch is resumable: once the dead producer's lease lapses (60 s; expired here at once, in
    // Redis, instead of sleeping), the same command adds the rest and nothing twice.
    const before = await h.ctx.redis.hlen(keys.keys);
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(rows);
    await h.ctx.redis.pexpire(keys.enqueuing, 1);
    const again = spawnCli(['enqueue', manifest, '--batch', batch, '--json'], h.env());
    const rerun = await exitWithin(again, 120_000);
    expect(rerun.code, again.output()).toBe(0);
    const summary = JSON.parse(
      again
        .output()
        .split('\n')
        .find((line) => line.startsWith('{')) ?? '{}',
    ) as { rows: number; added: number; present: number };
    expect(summary).toMatchObject({ rows, present: before, added: rows - before });
    expect(await h.ctx.redis.hlen(keys.keys)).toBe(rows);
  }, 240_000);
});
