import * as fs from 'node:fs';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AtomicFile, syncFolder } from '../../src/results/atomic-file.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'falbatch-atomic-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

type Callback = (error: NodeJS.ErrnoException | null, ...rest: unknown[]) => void;

/** node:fs's calls for the temp file, written down in order (and fsync failed when asked). */
function watchedFs(calls: string[], failSync = false) {
  const last = <T extends unknown[]>(args: T): Callback => args[args.length - 1] as Callback;
  return {
    open: (...args: unknown[]) => (calls.push('open'), (fs.open as (...a: unknown[]) => void)(...args)),
    write: (...args: unknown[]) => (calls.push('write'), (fs.write as (...a: unknown[]) => void)(...args)),
    writev: (...args: unknown[]) => (calls.push('write'), (fs.writev as (...a: unknown[]) => void)(...args)),
    fsync: (...args: unknown[]) => {
      calls.push('fsync');
      if (failSync) last(args)(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO', syscall: 'fsync' }));
      else (fs.fsync as (...a: unknown[]) => void)(...args);
    },
    close: (...args: unknown[]) => (calls.push('close'), (fs.close as (...a: unknown[]) => void)(...args)),
  };
}

it('syncs the temporary file to disk before closing it, and closes it before the rename', async () => {
  const calls: string[] = [];
  const path = join(dir, 'out.csv');
  const file = await AtomicFile.create(path, { fs: watchedFs(calls) });
  await file.write('id,status\n');
  await file.write('a,ok\n');
  await file.close();
  // Everything written, then synced, then closed: all of it done when close() resolves.
  expect(calls.filter((call) => call !== 'write')).toEqual(['open', 'fsync', 'close']);
  expect(calls.lastIndexOf('write')).toBeLessThan(calls.indexOf('fsync'));
  await file.commit();
  expect(readFileSync(path, 'utf8')).toBe('id,status\na,ok\n');
  expect(readdirSync(dir)).toEqual(['out.csv']);
});

it('a sync that fails fails the file: the old one stays, and no temp file is left', async () => {
  const path = join(dir, 'out.csv');
  writeFileSync(path, 'old\n');
  const file = await AtomicFile.create(path, { fs: watchedFs([], true) });
  await file.write('new\n');
  await expect(file.close()).rejects.toMatchObject({ code: 'EIO' });
  await file.discard();
  expect(readFileSync(path, 'utf8')).toBe('old\n');
  expect(readdirSync(dir)).toEqual(['out.csv']);
});

it('syncs a folder where the system can, and says when the folder is gone', async () => {
  await expect(syncFolder(dir)).resolves.toBeUndefined();
  await expect(syncFolder(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
});
