import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { ManifestError } from '../errors.js';

/**
 * A manifest's bytes, wherever they live: a local file here, an object in a bucket elsewhere. The
 * readers take only this, so every store reads every format the same way: CSV and JSONL through
 * `stream()` (never the whole file in memory), Parquet through ranged `slice()` reads (its footer,
 * then one row group at a time).
 */
export interface ManifestBytes {
  /** How the manifest is named in messages and records: a path, an `s3://` key, a URL. */
  readonly name: string;
  /** Its size in bytes. */
  byteLength(): Promise<number>;
  /** Bytes [start, end) (end past the size is cut to it). */
  slice(start: number, end: number): Promise<ArrayBuffer>;
  /** Its bytes in order, start to end. */
  stream(): AsyncIterable<Uint8Array>;
}

/** A read error (disk, permissions) as a ManifestError naming the file. */
function unreadable(name: string, error: unknown): ManifestError {
  return new ManifestError('MANIFEST_UNREADABLE', `Cannot read manifest ${name}: ${(error as Error).message}.`, { file: name }, { cause: error });
}

/** A local file's bytes: ranged reads with a file handle opened per read, a stream for the rest. */
export function localManifestBytes(path: string): ManifestBytes {
  let size: Promise<number> | undefined;
  return {
    name: path,
    byteLength: () =>
      (size ??= stat(path).then(
        (info) => info.size,
        (error: unknown) => {
          throw unreadable(path, error);
        },
      )),
    async slice(start, end) {
      try {
        const handle = await open(path, 'r');
        try {
          const length = Math.max(0, Math.min(end, await this.byteLength()) - start);
          const buffer = Buffer.alloc(length);
          let read = 0;
          while (read < length) {
            const { bytesRead } = await handle.read(buffer, read, length - read, start + read);
            if (bytesRead === 0) break;
            read += bytesRead;
          }
          return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + read) as ArrayBuffer;
        } finally {
          await handle.close();
        }
      } catch (error) {
        throw error instanceof ManifestError ? error : unreadable(path, error);
      }
    },
    async *stream() {
      try {
        for await (const chunk of createReadStream(path)) yield chunk as Buffer;
      } catch (error) {
        throw unreadable(path, error);
      }
    },
  };
}
