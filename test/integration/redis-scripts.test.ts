import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SCRIPTS_DIR, scriptDefinitions, scriptsIn, scriptsOn } from '../../src/queue/redis-scripts.js';
import { RATE_SLOT_MS, RATE_SLOTS } from '../../src/results/batch-figures.js';
import { ROOT, redisUrl } from '../helpers/harness.js';

const run = promisify(execFile);

/** Every .lua file under the scripts folder, relative to it. */
function luaFiles(dir = SCRIPTS_DIR): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.lua'))
    .map((file) => file.split('\\').join('/'))
    .sort();
}

/** A script's header: its opening `--[[ … ]]` comment. */
function headerOf(file: string): string {
  const text = readFileSync(join(SCRIPTS_DIR, file), 'utf8');
  const header = /^--\[\[\n([\s\S]*?)\n\]\]\n/.exec(text);
  if (!header?.[1]) throw new Error(`${file} does not open with a --[[ … ]] header`);
  return header[1];
}

/** The indices a header lists for KEYS or ARGV (`KEYS[2]`), and whether the last goes on (`KEYS[3..]`). */
function listed(header: string, what: 'KEYS' | 'ARGV'): { indices: number[]; open: boolean } {
  const lines = [...header.matchAll(new RegExp(`^\\s*${what}\\[(\\d+)(\\.\\.)?\\] `, 'gm'))];
  return { indices: lines.map((line) => Number(line[1])), open: lines.some((line) => line[2] === '..') };
}

describe('Redis scripts (src/redis-scripts)', () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('registers every script file exactly once, and uses every include', () => {
    const definitions = scriptDefinitions();
    const files = definitions.map((definition) => definition.file);
    expect(new Set(files).size).toBe(files.length);
    expect(new Set(definitions.map((definition) => definition.name)).size).toBe(definitions.length);
    const includes = luaFiles().filter((file) => file.startsWith('includes/'));
    expect(files.sort()).toEqual(luaFiles().filter((file) => !file.startsWith('includes/')));
    for (const include of includes) {
      const directive = `--- @include "${include.replace(/\.lua$/, '')}"`;
      expect(
        files.some((file) => readFileSync(join(SCRIPTS_DIR, file), 'utf8').includes(directive)),
        `${include} is included`,
      ).toBe(true);
    }
    for (const { file, lua } of definitions) expect(lua, `${file}: every include resolved`).not.toMatch(/^--- @include/m);
  });

  it.each(scriptDefinitions().map((definition) => [definition.file, definition] as const))(
    '%s: its header says its keys, arguments and reply, and the registry agrees',
    (file, definition) => {
      const header = headerOf(file);
      const keys = listed(header, 'KEYS');
      const argv = listed(header, 'ARGV');
      expect(keys.indices.length, 'a line per key').toBeGreaterThan(0);
      expect(keys.indices, 'keys listed in order from 1').toEqual(keys.indices.map((_, i) => i + 1));
      expect(argv.indices, 'arguments listed in order from 1').toEqual(argv.indices.map((_, i) => i + 1));
      expect(header).toMatch(/^ {2}Returns: \S/m);
      // Keys that go on to the end are counted by the caller; otherwise the registry's count is the header's.
      expect(definition.numberOfKeys).toBe(keys.open ? undefined : Math.max(...keys.indices));
    },
  );

  it('every script compiles on Redis (SCRIPT LOAD), includes in place', async () => {
    const includes = luaFiles().filter((file) => file.startsWith('includes/'));
    const loads = [
      ...scriptDefinitions().map(({ file, lua }) => ({ file, lua })),
      ...includes.map((file) => ({ file, lua: readFileSync(join(SCRIPTS_DIR, file), 'utf8') })),
    ];
    for (const { file, lua } of loads) {
      const sha = await redis.script('LOAD', lua).catch((error: Error) => `${file} does not compile: ${error.message}`);
      expect(sha, file).toBe(createHash('sha1').update(lua).digest('hex'));
    }
  });

  it('defines each script on a client once, with its number of keys, and in the MULTIs made after', async () => {
    const client = new Redis(redisUrl(), { maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      const early = client.multi();
      const define = vi.spyOn(client, 'defineCommand');
      const scripts = scriptsOn(client);
      expect(scriptsOn(client)).toBe(scripts);
      expect(define.mock.calls.map(([name, definition]) => [name, definition.numberOfKeys])).toEqual(
        scriptDefinitions().map((definition) => [definition.name, definition.numberOfKeys]),
      );
      for (const { name } of scriptDefinitions()) expect(typeof scripts[name], name).toBe('function');
      const later = client.multi();
      for (const { name } of scriptDefinitions()) expect(typeof scriptsIn(later)[name], name).toBe('function');
      // A MULTI made before takes no scripts from its client: said at once, not a TypeError later.
      expect(() => scriptsIn(early)).toThrow('call scriptsOn(redis) first');
    } finally {
      client.disconnect();
    }
  });

  it('runs a script through the typed client and a MULTI', async () => {
    const key = `falbatch-test-scripts:${process.pid}:${Date.now()}`;
    try {
      const scripts = scriptsOn(redis);
      await redis.set(key, 'holder');
      expect(await scripts.falbatchCompareAndPexpire(key, 'other', 60_000)).toBe(0);
      expect(await scripts.falbatchCompareAndPexpire(key, 'holder', 60_000)).toBe(1);
      const multi = redis.multi();
      scriptsIn(multi).falbatchCompareAndDelete(key, 'other');
      scriptsIn(multi).falbatchCompareAndDelete(key, 'holder');
      expect(await multi.exec()).toEqual([
        [null, 0],
        [null, 1],
      ]);
      expect(await redis.exists(key)).toBe(0);
    } finally {
      await redis.del(key);
    }
  });

  it("record-result's rate ring is the one results/batch-figures reads", () => {
    const lua = readFileSync(join(SCRIPTS_DIR, 'record-result.lua'), 'utf8');
    expect(/^local RATE_SLOT_MS = (\d+)$/m.exec(lua)?.[1]).toBe(String(RATE_SLOT_MS));
    expect(/^local RATE_SLOTS = (\d+)$/m.exec(lua)?.[1]).toBe(String(RATE_SLOTS));
  });
});

describe('Redis scripts ship with the build', () => {
  it('the npm package holds every script (package.json files)', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    const packed = new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map((file) => file.path));
    for (const file of luaFiles()) expect(packed.has(`src/redis-scripts/${file}`), `src/redis-scripts/${file} in the package`).toBe(true);
  });

  it("the Docker image's runtime stage holds what dist/ reads", async () => {
    // The runtime stage's `COPY --from=build /app/<path> ./<path>` lines, laid out in a folder as the image has them.
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const copied = [...runtime.matchAll(/^COPY --from=build \/app\/(\S+) \.\/(\S+)$/gm)].map((line) => [line[1] ?? '', line[2] ?? ''] as const);
    expect(copied.map(([from]) => from)).toContain('dist');
    const image = mkdtempSync(join(tmpdir(), 'falbatch-image-'));
    try {
      for (const [from, to] of copied) {
        if (from === 'node_modules') symlinkSync(join(ROOT, 'node_modules'), join(image, 'node_modules'));
        else cpSync(join(ROOT, from), join(image, to), { recursive: true });
      }
      const loader = join(image, 'dist/queue/redis-scripts.js');
      const { stdout } = await run(process.execPath, [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(pathToFileURL(loader).href)}); console.log(JSON.stringify({ dir: m.SCRIPTS_DIR, scripts: m.scriptDefinitions().map((d) => d.lua) }));`,
      ]);
      const { dir, scripts } = JSON.parse(stdout) as { dir: string; scripts: string[] };
      expect(relative(image, dir)).toBe(join('src', 'redis-scripts'));
      expect(scripts).toEqual(scriptDefinitions().map((definition) => definition.lua));
    } finally {
      rmSync(image, { recursive: true, force: true });
    }
  });
});
