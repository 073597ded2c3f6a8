import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { OutputError } from '../errors.js';

export interface AtomicFileOptions {
  /**
   * The calls the temporary file is written with (open, write, writev, fsync, close), for a test
   * to watch or fail them. Default: node:fs.
   */
  fs?: NonNullable<Exclude<Parameters<typeof createWriteStream>[1], string | undefined>['fs']>;
}

/** Codes of a folder that cannot be opened or synced here (Windows, some network file systems). */
const FOLDER_SYNC_UNSUPPORTED = new Set(['EISDIR', 'EPERM', 'EACCES', 'EINVAL', 'ENOTSUP', 'EBADF']);

/** Makes a rename in `folder` durable (fsync of the folder), where the system can. */
export async function syncFolder(folder: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(folder, 'r');
  } catch (error) {
    if (FOLDER_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    if (!FOLDER_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle.close();
  }
}

/**
 * A file written in full or not at all: streamed into a temporary file beside its target, flushed
 * to disk (fsync) when closed, then renamed over it (`commit`), the rename itself synced in the
 * folder. A reader never sees half a file, a crash or power cut leaves the old file or the new one
 * whole, and a write that fails (a full disk, a folder deleted meanwhile) leaves the old file, if
 * any, in place and no temp file behind.
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
  static async create(path: string, options: AtomicFileOptions = {}): Promise<AtomicFile> {
    const target = resolve(path);
    const temp = resolve(dirname(target), `.${basename(target)}.${randomBytes(4).toString('hex')}.tmp`);
    // flush: fsync before the file is closed, so that the rename never puts an unwritten file in place.
    const stream = createWriteStream(temp, { flags: 'wx', flush: true, ...(options.fs ? { fs: options.fs } : {}) });
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

  /** Flushes the temporary file to disk and closes it; fails if any write (or the sync) failed. */
  async close(): Promise<void> {
    const stream = this.#stream;
    await new Promise<void>((resolveEnd, reject) => {
      if (stream.errored) {
        reject(stream.errored);
        return;
      }
      stream.once('error', reject);
      // end() calls back with the error of a failed write or sync too: never rename a short file into place.
      stream.end((error?: Error | null) => (error ? reject(error) : resolveEnd()));
    });
    if (!stream.closed) await once(stream, 'close');
  }

  /** Renames the closed temporary file over the target, and syncs the folder where it can. */
  async commit(): Promise<void> {
    await rename(this.#temp, this.path);
    await syncFolder(dirname(this.path));
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
