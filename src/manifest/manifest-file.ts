import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { ManifestError } from '../errors.js';
import { mapColumns, type ColumnLayout, type ColumnMap } from './columns.js';
import { localManifestBytes, type ManifestBytes } from './manifest-bytes.js';
import { readRecords, type ReadRecordsOptions } from './read-records.js';

/** `jobs-3fa9c2d1`: the manifest's name, then a hash of its bytes and of what changes its rows' meaning. */
export async function defaultBatchName(file: string, defaultEndpoint: string, filesRoot: string, encoding = 'utf-8'): Promise<string> {
  return defaultBatchNameOf(localManifestBytes(file), defaultEndpoint, filesRoot, encoding);
}

/** defaultBatchName of a manifest's bytes wherever they are (a file, an object in a bucket): named after the last segment of `bytes.name`. */
export async function defaultBatchNameOf(bytes: ManifestBytes, defaultEndpoint: string, filesRoot: string, encoding = 'utf-8'): Promise<string> {
  const file = bytes.name.replace(/[?#].*$/, '').replace(/\/+$/, '');
  const hash = createHash('sha256');
  for await (const chunk of bytes.stream()) hash.update(chunk);
  hash.update(`\0${defaultEndpoint}\0${filesRoot}`);
  // The same bytes read in another encoding are other rows (left out for UTF-8: names stay as they were).
  if (encoding.toLowerCase().replace(/[^a-z0-9]/g, '') !== 'utf8') hash.update(`\0${encoding}`);
  const stem =
    basename(file, extname(file))
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 60) || 'manifest';
  return `${stem}-${hash.digest('hex').slice(0, 8)}`;
}

export async function checkReadable(file: string): Promise<void> {
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new Error('not a file');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new ManifestError('MANIFEST_UNREADABLE', `Cannot read manifest ${file}: ${reason}.`, { file }, { cause: error });
  }
}

/** The manifest's bytes; a read error (disk, permissions) becomes a ManifestError naming the file. */
export async function* readManifest(file: string): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of createReadStream(file)) yield chunk as Buffer;
  } catch (error) {
    throw new ManifestError('MANIFEST_UNREADABLE', `Cannot read manifest ${file}: ${(error as Error).message}.`, { file }, { cause: error });
  }
}

/**
 * Reads only the header, so a manifest without its required columns leaves no trace in Redis.
 * Pass the options the rows are read with (encoding, maxRecordBytes), or the header may be read
 * differently from them.
 */
export async function checkHeader(
  file: string,
  options: ReadRecordsOptions = {},
  layout?: ColumnLayout,
  /** The manifest's bytes when they are not the local file `file` names (an s3:// object). */
  bytes?: AsyncIterable<Buffer>,
): Promise<ColumnMap> {
  const source = bytes ?? readManifest(file);
  try {
    for await (const record of readRecords(source, options)) {
      if ('error' in record) {
        throw new ManifestError('MANIFEST_INVALID', `${file}: line ${record.line}: the header row cannot be read: ${record.error}.`, {
          file,
          line: record.line,
        });
      }
      return mapColumns(record.fields, file, layout);
    }
  } finally {
    await (source as Partial<AsyncGenerator<Buffer>>).return?.(undefined);
  }
  throw new ManifestError('MANIFEST_INVALID', `${file} is empty: expected a header row with image_url and prompt columns.`, { file, line: 1 });
}
