import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { ConfigError, ManifestError } from '../errors.js';
import { IMAGE_EXTENSIONS, walkImages } from './image-folder.js';
import { mapColumns, type ColumnLayout } from './columns.js';
import { localManifestBytes, type ManifestBytes } from './manifest-bytes.js';
import { checkReadable, defaultBatchNameOf } from './manifest-file.js';
import { manifestEncodingOf, type ManifestFormat } from './manifest-format.js';
import { headerNameOf, manifestRecords } from './manifest-records.js';
import type { RawRecord } from './read-records.js';

/**
 * Where a batch's rows come from: a manifest file (CSV, JSON Lines or Parquet, the text ones maybe
 * gzip-compressed), or a folder of images (one row per image, the same prompt for all). All come
 * out as records, header first, so everything after reading (validation, ids, images, the queue)
 * is the same for all.
 */
export interface ManifestSource {
  readonly kind: ManifestFormat | 'folder';
  /** Absolute path of the manifest file or the images folder. */
  readonly path: string;
  /** Folder local image paths resolve against and must stay inside. */
  readonly filesRoot: string;
  /**
   * The header record, then one record per row, numbered by the line it is on (CSV, JSONL; a
   * folder's records are numbered like lines, header 1) or by its row (Parquet: from 1, header 0).
   */
  records(): AsyncIterable<RawRecord>;
  /** `<name>-<hash>`: the same source with the same settings resumes its batch. */
  defaultBatchName(defaultEndpoint: string): Promise<string>;
  /** Files of a folder left out as not images, by lowercased extension, as the last records() pass found them (none for a CSV). */
  notImages(): Record<string, number>;
}

export interface ManifestSourceOptions {
  /** Folder local images must stay in; default: the manifest's folder, or the images folder itself. */
  filesRoot?: string | undefined;
  encoding: string;
  maxRecordBytes: number;
  /** The prompt for every image of a folder (required for a folder, refused for a manifest file). */
  prompt?: string | undefined;
  /** The manifest file's format; default: told by its name (.csv, .jsonl, .parquet, with .gz for the text ones), else CSV. */
  format?: ManifestFormat | undefined;
}

/** Columns of a folder's rows: the image's path relative to the folder is its id. */
const FOLDER_HEADER = ['id', 'image_url', 'prompt'];

/** Opens a manifest file or an images folder, failing with what to do when it cannot be used. */
export async function openManifestSource(path: string, options: ManifestSourceOptions): Promise<ManifestSource> {
  const absolute = resolve(path);
  const isFolder = await stat(absolute).then(
    (info) => info.isDirectory(),
    () => false,
  );
  if (!isFolder) {
    await checkReadable(absolute);
    if (options.prompt !== undefined) {
      throw new ConfigError(
        `--prompt is for a folder of images; ${absolute} is a manifest file: give it a prompt column (or --prompt-template "Describe the {subject}").`,
      );
    }
    return fileSource(absolute, options);
  }
  const prompt = options.prompt?.trim() ?? '';
  if (prompt === '') {
    throw new ConfigError(`${absolute} is a folder: say what to ask of every image in it with --prompt "Describe this image", or pass a CSV manifest instead.`);
  }
  // Before anything is written: a folder without images (a wrong path, or files of another kind).
  const walker = walkImages(absolute);
  const first = await walker.next();
  await walker.return(undefined);
  if (first.done) {
    throw new ManifestError(
      'MANIFEST_INVALID',
      `${absolute} holds no images (looked for ${[...IMAGE_EXTENSIONS].join(', ')} files, in every folder under it, hidden ones left out).`,
      { file: absolute },
    );
  }
  return folderSource(absolute, prompt, options);
}

function fileSource(file: string, options: ManifestSourceOptions): ManifestSource {
  return manifestBytesSource(localManifestBytes(file), options.filesRoot ? resolve(options.filesRoot) : dirname(file), options);
}

/**
 * A manifest file's source over its bytes wherever they are (a local file, an object in a
 * bucket): its format from `bytes.name` (or `options.format`), local image paths resolved against
 * `filesRoot`. `path` is `bytes.name`.
 */
export function manifestBytesSource(bytes: ManifestBytes, filesRoot: string, options: ManifestSourceOptions): ManifestSource {
  const encoding = manifestEncodingOf(bytes.name, options.format);
  return {
    kind: encoding.format,
    path: bytes.name,
    filesRoot,
    records: () => manifestRecords(bytes, encoding, { encoding: options.encoding, maxRecordBytes: options.maxRecordBytes }),
    defaultBatchName: (defaultEndpoint) => defaultBatchNameOf(bytes, defaultEndpoint, filesRoot, options.encoding),
    notImages: () => ({}),
  };
}

/**
 * Reads only a manifest file's header (its columns), so a manifest without the columns the
 * mapping needs leaves no trace in Redis; the message names the file, the missing column and the
 * columns it has.
 */
export async function checkColumns(source: ManifestSource, layout: ColumnLayout | undefined): Promise<void> {
  if (source.kind === 'folder') return;
  const records = source.records()[Symbol.asyncIterator]();
  try {
    const first = await records.next();
    if (first.done) {
      throw new ManifestError('MANIFEST_INVALID', `${source.path} is empty: expected rows with image_url and prompt columns.`, { file: source.path, line: 1 });
    }
    const record = first.value;
    if ('error' in record) {
      throw new ManifestError('MANIFEST_INVALID', `${source.path}: line ${record.line}: the header row cannot be read: ${record.error}.`, {
        file: source.path,
        line: record.line,
      });
    }
    mapColumns(record.fields, source.path, layout, headerNameOf({ format: source.kind, gzip: false }));
  } finally {
    await records.return?.(undefined);
  }
}

function folderSource(folder: string, prompt: string, options: ManifestSourceOptions): ManifestSource {
  const filesRoot = options.filesRoot ? resolve(options.filesRoot) : folder;
  let notImages = new Map<string, number>();
  return {
    kind: 'folder',
    path: folder,
    filesRoot,
    notImages: () => Object.fromEntries(notImages),
    async *records() {
      notImages = new Map();
      yield { line: 1, fields: FOLDER_HEADER };
      let line = 1;
      for await (const relative of walkImages(folder, notImages)) {
        line++;
        // The image cell is a path relative to the files root; a name with "|" would read as two images.
        const cell = filesRoot === folder ? relative : resolve(folder, relative);
        if (relative.includes('|'))
          yield { line, error: `image ${relative}: its name contains "|", which separates images in falbatch; rename the file`, leading: [relative] };
        else yield { line, fields: [relative, cell, prompt] };
      }
    },
    // Not a hash of every image (a folder of 100,000 must start at once): the folder, the prompt and
    // the settings. Re-running resumes; an image edited in place is a changed row (its id is its path).
    async defaultBatchName(defaultEndpoint) {
      const hash = createHash('sha256')
        .update(JSON.stringify([folder, prompt, defaultEndpoint, filesRoot]))
        .digest('hex');
      const stem =
        basename(folder)
          .replace(/[^A-Za-z0-9._-]+/g, '-')
          .replace(/^[^A-Za-z0-9]+/, '')
          .slice(0, 60) || 'images';
      return `${stem}-${hash.slice(0, 8)}`;
    },
  };
}
