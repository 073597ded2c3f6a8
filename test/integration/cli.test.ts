import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createHarness, readCsv, ROOT, runCliProcess } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';

describe('the falbatch CLI, spawned as a process', () => {
  it('run exits 0 when every row is ok and writes the results file', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/a.jpg,one\nb,https://example.com/b.jpg,two\n');
    const out = join(h.dir, 'out.csv');
    const result = await runCliProcess(['run', manifest, '--out', out], h.env());
    expect(result.stderr).not.toMatch(/at .*\.js:\d+/);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/2 rows read; 2 added, 0 already present, 0 rejected/);
    expect(result.stdout).toMatch(/wrote 2 rows to .*out\.csv: 2 ok, 0 failed, 0 rejected/);
    expect((await readCsv(out)).map((r) => r['status'])).toEqual(['ok', 'ok']);
  });

  it('run exits 2 when the batch finished with failed or rejected rows, naming each rejected line', async () => {
    const h = await createHarness();
    h.file('ok.png', pngBytes('ok'));
    const manifest = h.file('m.csv', 'image_url,prompt,max_tokens\nok.png,fine,\nok.png,bad,zero\nhttps://images.invalid/a.png,unreachable,\n');
    const result = await runCliProcess(['run', manifest, '--out', join(h.dir, 'out.csv')], h.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('line 3: max_tokens must be a whole number greater than 0, got "zero"');
    expect(result.stdout).toMatch(/1 ok, 1 failed, 1 rejected/);
  });

  it('exits 1 naming the missing column and listing the columns found, before enqueueing anything', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image,text\na.png,hello\n');
    const result = await runCliProcess(['run', manifest], h.env());
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('the header (line 1) has no "image_url" or "prompt" column. Found: "image", "text".');
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(h.emulator.stats().submits).toBe(0);
    expect(await h.ctx.redis.keys(`${h.prefix}:*batch*`)).toEqual([]);
  });

  it('exits 1 with how to get a key, or to try --emulate, when FAL_KEY is missing', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    const env = h.env();
    delete env['FAL_KEY'];
    delete env['FAL_BASE_URL'];
    const result = await runCliProcess(['run', manifest], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/FAL_KEY is not set.*fal\.ai\/dashboard\/keys.*--emulate/s);
  });

  it('exits 1 naming the Redis URL (password hidden) and how to start one when Redis is unreachable', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    const result = await runCliProcess(['run', manifest], h.env({ REDIS_URL: 'redis://:hunter2secret@127.0.0.1:1/0' }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Cannot reach Redis at redis://:***@127.0.0.1:1/0');
    expect(result.stderr).toContain('docker compose up -d redis');
    expect(result.stderr).not.toContain('hunter2secret');
  });

  it('exits 1 on a bad flag value, saying what was expected and what came', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    const result = await runCliProcess(['run', manifest, '--concurrency', '0'], h.env());
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`Expected --concurrency to be auto (learn the account's fal concurrency, the default) or an integer ≥ 1, got "0"`);
    const unknown = await runCliProcess(['run', manifest, '--concurency', '3'], h.env());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown option '--concurency'/);
  });

  it('--strict aborts on the first bad row, naming its line, and enqueues nothing', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\nhttps://example.com/b.jpg,\n');
    const result = await runCliProcess(['enqueue', manifest, '--strict'], h.env());
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('line 3: prompt is empty (--strict: nothing was enqueued)');
    expect(await h.ctx.queue.getJobCountByTypes('waiting', 'active', 'completed', 'failed', 'delayed')).toBe(0);
  });

  it('splits the work over processes: enqueue, a worker, status and export --wait', async () => {
    const h = await createHarness({ emulator: { latency: '20..80ms' } });
    const manifest = h.file('m.csv', `id,image_url,prompt\n${Array.from({ length: 6 }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n')}\n`);
    const enqueued = await runCliProcess(['enqueue', manifest, '--batch', 'split-test'], h.env());
    expect(enqueued.code).toBe(0);
    expect(enqueued.stdout).toContain('batch split-test: 6 rows read; 6 added');
    const before = await runCliProcess(['status', '--batch', 'split-test', '--json'], h.env());
    expect(JSON.parse(before.stdout)).toMatchObject({ batch: 'split-test', rows: 6, jobs: 6, pending: 6, finished: false });

    const worker = spawn(process.execPath, [join(ROOT, 'bin/falbatch.js'), 'work', '--concurrency', '3'], { env: h.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let workerLog = '';
    worker.stderr.on('data', (chunk: Buffer) => (workerLog += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => worker.once('close', resolve));
    try {
      const out = join(h.dir, 'out.jsonl');
      const exported = await runCliProcess(['export', '--batch', 'split-test', '--out', out, '--wait'], h.env());
      expect(exported.code).toBe(0);
      expect(exported.stdout).toMatch(/wrote 6 rows .* 6 ok/);
    } finally {
      worker.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(workerLog).toContain('worker stopped: 6 ok, 0 failed');
    const after = await runCliProcess(['status', '--json'], h.env());
    expect(JSON.parse(after.stdout)).toEqual([expect.objectContaining({ batch: 'split-test', ok: 6, finished: true })]);
  });

  it('keeps --emulate answers apart: a later real run of the same manifest calls fal for every row', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/a.jpg,one\nb,https://example.com/b.jpg,two\n');
    const emulated = await runCliProcess(['run', manifest, '--emulate', '--out', join(h.dir, 'emulated.csv')], h.env());
    expect(emulated.code).toBe(0);
    expect(emulated.stdout).toContain('emulated');
    const real = await runCliProcess(['run', manifest, '--out', join(h.dir, 'real.csv')], h.env());
    expect(real.code).toBe(0);
    expect(real.stdout).toContain('2 added, 0 already present');
    expect(h.emulator.stats().billed).toBe(2);
  });

  it('status and export of an emulated batch without its --prefix say where emulated runs live, not that Redis lost it', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/a.jpg,one\n');
    const emulated = await runCliProcess(['run', manifest, '--emulate', '--batch', 'tried', '--out', join(h.dir, 'emulated.csv')], h.env());
    expect(emulated.code).toBe(0);
    for (const args of [
      ['status', '--batch', 'tried'],
      ['export', '--batch', 'tried', '--out', join(h.dir, 'again.csv')],
    ]) {
      const result = await runCliProcess(args, h.env());
      expect(result.code).toBe(1);
      const said = result.stderr.split('\n').find((line) => line.includes('No batch named "tried"')) ?? result.stderr;
      expect(said).toContain(`emulated runs live in a namespace of their own, ${h.prefix}-emulated. Add \`--prefix ${h.prefix}-emulated\` to reach it.`);
      expect(said).not.toMatch(/restart|keeps nothing on disk/);
    }
    const reached = await runCliProcess(['status', '--batch', 'tried', '--prefix', `${h.prefix}-emulated`], h.env());
    expect(reached.code).toBe(0);
    expect(reached.stdout).toContain('batch tried (finished)');
  });

  it('--emulate starts a private redis-server when nothing answers at REDIS_URL', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,one\n');
    const result = await runCliProcess(['run', manifest, '--emulate', '--out', join(h.dir, 'out.csv')], h.env({ REDIS_URL: 'redis://127.0.0.1:1' }));
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/started a private redis-server on 127\.0\.0\.1:\d+ for this run/);
    expect((await readCsv(join(h.dir, 'out.csv')))[0]).toMatchObject({ status: 'ok', output: expect.stringMatching(/^\[emulated:/) });
  });

  it('Ctrl-C on run --emulate stops gracefully: the private Redis survives the signal until falbatch is done with it', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', `image_url,prompt\n${Array.from({ length: 30 }, (_, i) => `https://example.com/${i}.jpg,p${i}`).join('\n')}\n`);
    const out = join(h.dir, 'out.csv');
    // Its own process group, as in a terminal: SIGINT goes to the whole group.
    const child = spawn(process.execPath, [join(ROOT, 'bin/falbatch.js'), 'run', manifest, '--emulate', '--out', out], {
      env: h.env({ REDIS_URL: 'redis://127.0.0.1:1' }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const port = await new Promise<string>((resolve) => {
      const look = (): void => {
        const match = /private redis-server on 127\.0\.0\.1:(\d+)/.exec(output);
        if (match?.[1] && /\d+ added/.test(output)) resolve(match[1]);
        else setTimeout(look, 20);
      };
      look();
    });
    process.kill(-(child.pid as number), 'SIGINT');
    expect(await exited).toBe(130);
    expect(output).toContain('interrupted; rows done so far are in');
    expect((await readCsv(out)).length).toBe(30);
    // And the private Redis is gone with the run.
    const { Socket } = await import('node:net');
    const refused = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('error', () => resolve(true));
      socket.connect(Number(port), '127.0.0.1', () => {
        socket.destroy();
        resolve(false);
      });
    });
    expect(refused).toBe(true);
  });

  it('export and status name a batch that does not exist', async () => {
    const h = await createHarness();
    const result = await runCliProcess(['export', '--batch', 'nope', '--out', join(h.dir, 'x.csv')], h.env());
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('No batch named "nope"');
  });

  it("emulator prints its base URL, serves fal's protocol and stops on SIGTERM", async () => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/falbatch.js'), 'emulator', '--latency', '0', '--key', 'k'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const url = await new Promise<string>((resolve) => {
      let buffer = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        if (buffer.includes('\n')) resolve(buffer.split('\n')[0] ?? '');
      });
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const submit = await fetch(`${url}/queue.fal.run/fal-ai/llava-next`, {
      method: 'POST',
      headers: { authorization: 'Key k', 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'p', image_url: 'https://example.com/a.jpg' }),
    });
    expect(submit.status).toBe(200);
    expect(((await submit.json()) as { status: string }).status).toBe('IN_QUEUE');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
