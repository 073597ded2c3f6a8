import { createRequire } from 'node:module';
import { DependencyError } from './errors.js';

/*
 * Packages that only some commands use (sharp, file-type, prom-client, hono and Bull Board,
 * hyparquet-writer, pino and pino-pretty, cli-progress) are loaded where they are first used, not
 * when falbatch starts: loaded eagerly they took a producer from 41 MB to 121 MB RSS before it read
 * a row (issue 12). A module of falbatch's that needs one imports only its types (`import type`,
 * erased) and calls one of these at the point of use.
 */

/**
 * An ES module imported on the first call; later calls share that promise (a failure too: a
 * package missing now is missing for the rest of the run). `load` is a literal
 * `() => import('pkg')`, so the package keeps its types. A failure rejects with a DependencyError
 * naming the package and what needed it.
 */
export function importOnce<T>(name: string, purpose: string, load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () =>
    (loading ??= load().catch((error: unknown) => {
      throw new DependencyError(name, purpose, error);
    }));
}

const require = createRequire(import.meta.url);

/**
 * A CommonJS package required where a synchronous function first needs it (Node caches it).
 * Only for CommonJS-only packages, so it is the same instance an `import` would give. Throws a
 * DependencyError naming the package and what needed it.
 */
export function requireDependency<T>(name: string, purpose: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    throw new DependencyError(name, purpose, error);
  }
}
