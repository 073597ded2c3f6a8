import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { OutputError } from '../errors.js';

/**
 * A file written in full or not at all: streamed into a temporary file beside its target, then
 * renamed over it (`commit`). A reader never sees half a file, and a write that fails (a full
 * disk, a folder deleted meanwhile) leaves the old file, if any, in place and no temp file behind.
 */
export class AtomicFile {
  readonly path: string;
  readonly #temp: string;
  readonly #stream: WriteStream;

  private constructor(path: string, temp: string, stream: WriteStream) {
    this.path = path;
    this.#temp = temp;
    this.#stream = stream;
  }

  /** Creates the temporary file; OutputError when the folder takes no files. */
  static async create(path: string): Promise<AtomicFile> {
    const target = resolve(path);
    const temp = resolve(dirname(target), `.${basename(target)}.${randomBytes(4).toString('hex')}.tmp`);
    const stream = createWriteStream(temp, { flags: 'wx' });
    try {
      await new Promise<void>((resolveOpen, reject) => {
        stream.once('open', () => resolveOpen());
        stream.once('error', reject);
      });
    } catch (error) {
      stream.destroy();
      throw new OutputError(`Cannot write ${target}: ${(error as Error).message}`, { cause: error });
    }
    return new AtomicFile(target, temp, stream);
  }

  /** Appends, waiting while the stream's buffer is full. */
  async write(data: string | Uint8Array): Promise<void> {
    // A write that failed earlier (ENOSPC) left the stream errored: no 'drain' or 'error' comes again.
    if (this.#stream.errored) throw this.#stream.errored;
    if (!this.#stream.write(data)) await once(this.#stream, 'drain');
  }

  /** Flushes and closes the temporary file; fails if any write failed. */
  async close(): Promise<void> {
    const stream = this.#stream;
    await new Promise<void>((resolveEnd, reject) => {
      if (stream.errored) {
        reject(stream.errored);
        return;
      }
      stream.once('error', reject);
      // end() calls back with the error of a failed write too: never rename a short file into place.
      stream.end((error?: Error | null) => (error ? reject(error) : resolveEnd()));
    });
  }

  /** Renames the closed temporary file over the target. */
  async commit(): Promise<void> {
    await rename(this.#temp, this.path);
  }

  /** Drops the temporary file (after a failure). */
  async discard(): Promise<void> {
    this.#stream.destroy();
    await unlink(this.#temp).catch(() => undefined);
  }
}

/** File system trouble as an OutputError naming the file; anything else (Redis) as it is. */
export function asOutputError(error: unknown, path: string): unknown {
  if (error instanceof OutputError) return error;
  if ((error as NodeJS.ErrnoException).syscall !== undefined) return new OutputError(`Cannot write ${path}: ${(error as Error).message}`, { cause: error });
  return error;
}
