import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../src/config.js';
import { collectOutput, createHarness, readCsv, ROOT, runCliProcess, spawnCli, until, type CliResult, type Harness } from '../helpers/harness.js';

// procfs takes no new files, not even from root (tests run as root, so a chmod'ed folder would not
// do): creating one there fails with ENOENT (EACCES for other users), while /proc itself is a folder.
const UNWRITABLE = '/proc/falbatch-results.csv';

function manifestOf(h: Harness, rows: number): string {
  const body = Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
  return h.file('m.csv', `id,image_url,prompt\n${body}\n`);
}

/** The command the message gives, run as a user would paste it into a shell. */
function runGivenCommand(command: string, env: Record<string, string>): Promise<CliResult> {
  expect(command).toMatch(/^falbatch export /);
  const line = `"${process.execPath}" "${join(ROOT, 'bin/falbatch.js')}" ${command.slice('falbatch '.length)}`;
  return collectOutput(spawn('sh', ['-c', line], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** The indented line after "with:" in the message. */
function givenCommand(output: string): string {
  const match = /with:\n {2}(falbatch export [^\n]+)/.exec(output);
  if (!match?.[1]) throw new Error(`no export command in:\n${output}`);
  return match[1];
}

describe('results that cannot be written', () => {
  it('run checks that the output folder takes files before calling fal: exit 1 naming the folder, nothing paid', async () => {
    const h = await createHarness();
    const result = await runCliProcess(['run', manifestOf(h, 3), '--out', UNWRITABLE], h.env());
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toContain(`Cannot write ${UNWRITABLE}: the folder /proc does not take new files`);
    expect(result.stderr).toContain('Pick another --out');
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(h.emulator.stats().submits).toBe(0);
  });

  it('the output folder deleted during the run: exit 3, the results are kept in Redis, and the export command given writes them', async () => {
    const h = await createHarness({ emulator: { runners: 2, latency: '700ms' } });
    const rows = 4;
    // A space in the path: the command given must be quoted for a shell.
    const folder = join(h.dir, 'my results');
    mkdirSync(folder);
    const out = join(folder, 'out.csv');
    const cli = spawnCli(['run', manifestOf(h, rows), '--out', out], h.env());
    await until('a row at fal', () => h.emulator.stats().submits > 0);
    rmSync(folder, { recursive: true });
    expect(await cli.exited, cli.output()).toBe(3);
    const output = cli.output();
    expect(output).toContain(`Cannot write ${out}`);
    expect(output).toMatch(/Batch m-[0-9a-f]{8} finished: 4 ok, 0 failed, 0 rejected\. Its results are kept in Redis: nothing is lost/);
    const command = givenCommand(output);
    expect(command).toContain(`--prefix ${h.prefix}`);
    expect(command).toContain(`--out '${out}'`);
    expect(h.emulator.stats().billed).toBe(rows);

    mkdirSync(folder);
    const exported = await runGivenCommand(command, h.env());
    expect(exported.code, exported.stderr).toBe(0);
    expect((await readCsv(out)).map((r) => r['status'])).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(h.emulator.stats().billed).toBe(rows);
  });

  it('a full disk when the results are written (ENOSPC): exit 3, and once there is room the command given writes them', async ({ skip }) => {
    const h = await createHarness();
    // A real full disk: a 64 KiB tmpfs, filled. An empty file still fits (the early check passes, as
    // it would on a disk that fills up during the run); the results do not. Once the filler is gone,
    // the results, their errors file and their report fit (a few 4 KiB pages each).
    const disk = join(h.dir, 'disk');
    mkdirSync(disk);
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0) skip('mounting a tmpfs needs root with CAP_SYS_ADMIN');
    try {
      const filler = join(disk, 'filler');
      expect(() => writeFileSync(filler, Buffer.alloc(256 * 1024))).toThrow(/ENOSPC/);
      const out = join(disk, 'out.csv');
      const cli = spawnCli(['run', manifestOf(h, 40), '--out', out], h.env());
      // A write that fails must not leave the export waiting for ever.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const code = await Promise.race([cli.exited, new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 40_000)))]);
      clearTimeout(timer);
      if (code === 'hung') {
        cli.child.kill('SIGKILL');
        await cli.exited;
      }
      const result = { code, stderr: cli.output() };
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toContain(`Cannot write ${out}: ENOSPC`);
      expect(result.stderr).toMatch(/Batch m-[0-9a-f]{8} finished: 40 ok, 0 failed, 0 rejected\. Its results are kept in Redis/);
      expect(h.emulator.stats().billed).toBe(40);

      rmSync(filler);
      const exported = await runGivenCommand(givenCommand(result.stderr), h.env());
      expect(exported.code, exported.stderr).toBe(0);
      expect((await readCsv(out)).filter((r) => r['status'] === 'ok')).toHaveLength(40);
      expect(h.emulator.stats().billed).toBe(40);
    } finally {
      spawnSync('umount', [disk]);
    }
  });

  it('export to a folder that takes no files says the results are in Redis and how to write them (exit 3)', async () => {
    const h = await createHarness();
    const first = await runCliProcess(['run', manifestOf(h, 2), '--out', join(h.dir, 'out.csv')], h.env());
    expect(first.code, first.stderr).toBe(0);
    const batch = /batch (m-[0-9a-f]{8})/.exec(first.stdout)?.[1] ?? '';
    const result = await runCliProcess(['export', '--batch', batch, '--out', UNWRITABLE], h.env());
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toContain(`Cannot write ${UNWRITABLE}: the folder /proc does not take new files`);
    expect(result.stderr).toContain(`The results of batch ${batch} are kept in Redis`);
    // A Redis other than the default is named as a shell comment: the line still pastes as it is.
    const sameRedis = h.env()['REDIS_URL'] === DEFAULT_CONFIG.redisUrl ? '' : '   # with the same REDIS_URL';
    expect(givenCommand(result.stderr)).toBe(`falbatch export --batch ${batch} --prefix ${h.prefix} --out ${UNWRITABLE}${sameRedis}`);
  });
});
