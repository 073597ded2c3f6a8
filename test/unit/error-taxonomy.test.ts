import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as config from '../../src/config.js';
import * as api from '../../src/index.js';

/**
 * The error taxonomy has no dead entries: every error class is raised (or extended) somewhere, every
 * code is one some class carries, and the README's table of codes lists no other.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const errorsSource = readFileSync(join(ROOT, 'src/errors.ts'), 'utf8');

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourcesUnder(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [readFileSync(join(dir, entry.name), 'utf8')] : [],
  );
}
const src = sourcesUnder(join(ROOT, 'src')).join('\n');

const classes = [...errorsSource.matchAll(/^export class (\w+) extends/gm)].map((match) => match[1] ?? '');
const codes = [...(/export type ErrorCode =([^;]*);/.exec(errorsSource)?.[1] ?? '').matchAll(/'([A-Z_]+)'/g)].map((match) => match[1] ?? '');

describe('the error taxonomy', () => {
  it.each(classes.filter((name) => name !== 'FalbatchError'))('%s is raised or extended somewhere', (name) => {
    expect(src).toMatch(new RegExp(`new ${name}\\(|extends ${name}\\b`));
  });

  it.each(codes)('%s is the code of some error falbatch raises', (code) => {
    // In errors.ts, beyond its line in the ErrorCode union: a class passes it to super().
    expect(errorsSource.split(`'${code}'`).length - 1).toBeGreaterThan(1);
  });

  it('the public API exports no error that is never raised', () => {
    expect(Object.keys(api)).not.toContain('QueuePausedError');
    expect(Object.keys(api)).not.toContain('InterruptedError');
  });

  it("the README's table of errors names only codes that exist (fal's errors are row-level: not in it)", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('### Errors'), readme.indexOf('Row-level errors are never fatal'));
    const documented = [...table.matchAll(/^\| `([A-Z_]+)` \| \d+ \|/gm)].map((match) => match[1]);
    expect(documented.length).toBeGreaterThan(5);
    expect(documented.filter((code) => !codes.includes(code as string))).toEqual([]);
  });
});

describe('secrets redaction', () => {
  it('reads every Redis password of REDIS_URL through one function (the single-password one is gone)', () => {
    expect(Object.keys(config)).not.toContain('redisPassword');
    expect(config.secretsOf({ falKey: 'k', redisUrl: 'redis://:one@a:1,redis://:two@b:2' })).toEqual(['k', 'one', 'two']);
  });
});
