import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, ROOT, runCliProcess } from '../helpers/harness.js';

/** Packages only some commands' work needs: help and flag mistakes must not load them. */
const HEAVY = [
  'bullmq',
  'ioredis',
  '@fal-ai/client',
  'pino',
  'pino-pretty',
  'sharp',
  'hono',
  '@hono/node-server',
  'prom-client',
  'csv-parse',
  'csv-stringify',
  'hyparquet',
  'hyparquet-compressors',
  'hyparquet-writer',
  'cron-parser',
  'cli-progress',
];

/** The package a loaded file belongs to (`@scope/name` or `name`), or undefined for falbatch's own and node's. */
function packageOf(path: string): string | undefined {
  const at = path.lastIndexOf('/node_modules/');
  if (at < 0) return undefined;
  const [first, second] = path.slice(at + '/node_modules/'.length).split('/');
  return first?.startsWith('@') ? `${first}/${second}` : first;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'falbatch-startup-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Spawns falbatch with the module probe; returns its exit code, stderr and the packages it loaded. */
async function probe(
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string; packages: Set<string> }> {
  const out = join(dir, `${args.join('_').replace(/\W/g, '-')}.txt`);
  const env: Record<string, string | undefined> = { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', ...extraEnv, FALBATCH_MODULE_PROBE: out };
  const child = spawn(process.execPath, ['--import', join(ROOT, 'test/helpers/module-probe.mjs'), join(ROOT, 'bin/falbatch.js'), ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const packages = new Set(
    (await readFile(out, 'utf8'))
      .split('\n')
      .map(packageOf)
      .filter((name) => name !== undefined),
  );
  return { code, stdout, stderr, packages };
}

describe('what falbatch loads before it knows what to do', () => {
  const commands = [
    'run',
    'enqueue',
    'work',
    'status',
    'export',
    'pause',
    'resume',
    'cancel',
    'retry',
    'prune',
    'schedule',
    'schedule add',
    'schedule list',
    'schedule remove',
    'dashboard',
    'emulator',
  ];

  it.each([[['--help']], [['--version']], ...commands.map((command) => [[...command.split(' '), '--help']])])(
    '%j loads none of the packages commands work with',
    async (args) => {
      const { code, packages } = await probe(args);
      expect(code).toBe(0);
      expect(packages).toContain('commander');
      expect(HEAVY.filter((name) => packages.has(name))).toEqual([]);
    },
  );

  it.each([[['run', 'm.csv', '--no-such-flag']], [['status', '--batch']], [['no-such-command']], [['run']]])(
    'a usage mistake, %j, exits 1 and loads none of them either',
    async (args) => {
      const { code, stderr, packages } = await probe(args);
      expect(code).toBe(1);
      expect(stderr).toMatch(/^error: /m);
      expect(HEAVY.filter((name) => packages.has(name))).toEqual([]);
    },
  );

  it('a value the command itself refuses, before connecting, loads no Redis client either', async () => {
    // Refused after parsing, by the command's implementation (loaded by then); the Redis client is required when it connects.
    const { code, stderr, packages } = await probe(['status', '--interval', '1ms']);
    expect(code).toBe(1);
    expect(stderr).toContain('--interval only applies with --watch');
    expect(HEAVY.filter((name) => packages.has(name))).toEqual([]);
  });
});

describe('what a command that goes on loads', () => {
  it("status reads falbatch's own keys with the Redis client alone: no BullMQ, no fal client (the probe sees CommonJS packages)", async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/a.jpg,one\n');
    const ran = await runCliProcess(['run', manifest, '--out', join(h.dir, 'out.csv'), '--batch', 'seen'], h.env());
    expect(ran.code).toBe(0);
    const { code, stdout, packages } = await probe(['status', '--batch', 'seen', '--json'], h.env());
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ batch: 'seen', ok: 1, finished: true });
    expect(packages).toContain('ioredis');
    expect(['bullmq', 'cron-parser', 'msgpackr', '@fal-ai/client', 'csv-parse'].filter((name) => packages.has(name))).toEqual([]);
  });
});

describe('FALBATCH_TIMING', () => {
  it('=1 makes run print when it reached each phase, in order, and nothing else changes; unset, it prints none', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'id,image_url,prompt\na,https://example.com/a.jpg,one\n');
    const timed = await runCliProcess(['run', manifest, '--out', join(h.dir, 'timed.csv'), '--batch', 'timed'], h.env({ FALBATCH_TIMING: '1' }));
    expect(timed.code).toBe(0);
    const marks = [...timed.stderr.matchAll(/^falbatch timing: (\w+) at ([\d.]+) ms since the epoch/gm)].map(([, phase, at]) => ({ phase, at: Number(at) }));
    expect(marks.map((mark) => mark.phase)).toEqual(['started', 'connected', 'enqueued', 'exported', 'exit']);
    expect(marks.map((mark) => mark.at)).toEqual([...marks.map((mark) => mark.at)].sort((a, b) => a - b));
    expect(timed.stderr).toMatch(/^falbatch timing: exit at [\d.]+ ms since the epoch, peak RSS \d+ MB$/m);
    expect(timed.stdout).toMatch(/wrote 1 rows to .*timed\.csv: 1 ok/);
    const plain = await runCliProcess(['run', manifest, '--out', join(h.dir, 'plain.csv'), '--batch', 'plain'], h.env());
    expect(plain.code).toBe(0);
    expect(plain.stderr).not.toContain('falbatch timing');
  });
});
