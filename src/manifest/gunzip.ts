import { Readable } from 'node:stream';
import { ManifestError } from '../errors.js';
import { importOnce } from '../load-dependency.js';

// zlib only for a .gz manifest: a CSV run never loads it.
const loadZlib = importOnce('node:zlib', 'Reading a gzip-compressed manifest (.gz)', () => import('node:zlib'));

/**
 * A gzip-compressed manifest's bytes, decompressed as they stream (members one after another,
 * as gzip writes them, included). A file cut short, or not gzip at all, fails with a
 * MANIFEST_UNREADABLE error naming it, thrown before the bytes of its last, unfinished line come
 * out: a truncated file never yields a truncated row.
 */
export async function* gunzip(source: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  const { createGunzip } = await loadZlib();
  const input = Readable.from(source, { objectMode: false });
  const inflate = createGunzip();
  input.on('error', (error) => inflate.destroy(error));
  input.pipe(inflate);
  try {
    for await (const chunk of inflate) yield chunk as Buffer;
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'Z_BUF_ERROR'
        ? 'the gzip stream stops before its end: the file is truncated (an interrupted download or upload?); fetch or compress it again'
        : code === 'Z_DATA_ERROR'
          ? `it is not valid gzip data (${(error as Error).message}); a name ending in .gz is read as gzip: rename the file if it is not compressed`
          : (error as Error).message;
    throw new ManifestError('MANIFEST_UNREADABLE', `Cannot read manifest ${name}: ${reason}.`, { file: name }, { cause: error });
  } finally {
    input.destroy();
    inflate.destroy();
  }
}
