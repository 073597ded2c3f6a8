import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, dirname, posix, resolve } from 'node:path';
import { ConfigError, ManifestError } from '../errors.js';
import { IMAGE_EXTENSIONS, walkImages } from './image-folder.js';
import { mapColumns, type ColumnLayout } from './columns.js';
import { localManifestBytes, type ManifestBytes } from './manifest-bytes.js';
import { checkReadable, defaultBatchNameOf } from './manifest-file.js';
import { manifestEncodingOf, type ManifestFormat } from './manifest-format.js';
import { headerNameOf, manifestRecords } from './manifest-records.js';
import type { RawRecord } from './read-records.js';
import type { ObjectStore } from '../storage/object-store.js';
import { objectBytes } from '../storage/object-bytes.js';
import { formatS3Url, isS3Url, parseS3Url, type S3Location } from '../storage/s3-url.js';
import { listImages } from './s3-prefix.js';
import type { ObjectInfoMemo } from './s3-images.js';

/**
 * Where a batch's rows come from: a manifest file (CSV, JSON Lines or Parquet, the text ones maybe
 * gzip-compressed), or a folder of images (one row per image, the same prompt for all). All come
 * out as records, header first, so everything after reading (validation, ids, images, the queue)
 * is the same for all.
 */
export interface ManifestSource {
  readonly kind: ManifestFormat | 'folder' | 'prefix';
  /** Absolute path of the manifest file or the images folder, or its `s3://bucket/key` (a `prefix`: `s3://bucket/photos/`). */
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
  /** What the listing of a prefix told of each object, for its row's image (no HEAD per row). */
  objectMemo?: ObjectInfoMemo;
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
  /** The object store for s3:// manifests and prefixes, and what their listings tell of each object. */
  objects?: { store: () => ObjectStore; memo: ObjectInfoMemo } | undefined;
}

/** Columns of a folder's rows: the image's path relative to the folder is its id. */
const FOLDER_HEADER = ['id', 'image_url', 'prompt'];

/** A manifest file's format, or undefined for a folder or prefix of images (rows made from a listing). */
export function fileFormatOf(source: Pick<ManifestSource, 'kind'>): ManifestFormat | undefined {
  return source.kind === 'folder' || source.kind === 'prefix' ? undefined : source.kind;
}

/** Opens a manifest file or an images folder (local or an s3:// prefix), failing with what to do when it cannot be used. */
export async function openManifestSource(path: string, options: ManifestSourceOptions): Promise<ManifestSource> {
  if (isS3Url(path)) return openS3Source(path, options);
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
  const format = fileFormatOf(source);
  if (format === undefined) return;
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
    mapColumns(record.fields, source.path, layout, headerNameOf({ format, gzip: false }));
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

/** Names a manifest file by its extension (or --manifest-format); any other s3:// location is a prefix of images. */
const MANIFEST_FILE = /\.(csv|tsv|txt|jsonl|ndjson|parquet|pq)(\.gz)?$/i;

/** The stem of a batch name: letters, digits, ".", "_" and "-" of `name`, at most 60 characters. */
function stemOf(name: string, fallback: string): string {
  return (
    name
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 60) || fallback
  );
}

/** An s3:// manifest file (CSV, read as it streams) or a prefix of images (listed page by page). */
async function openS3Source(url: string, options: ManifestSourceOptions): Promise<ManifestSource> {
  const location = parseS3Url(url);
  const objects = options.objects;
  if (!objects) throw new ConfigError(`${url}: reading s3:// locations needs an object store (falbatch makes one from the AWS chain and --s3-endpoint).`);
  const store = objects.store();
  const filesRoot = resolve(options.filesRoot ?? '.');
  if (MANIFEST_FILE.test(location.key) || (options.format !== undefined && !location.key.endsWith('/'))) {
    if (options.prompt !== undefined) {
      throw new ConfigError(
        `--prompt is for a folder of images; ${url} is a manifest file: give it a prompt column (or --prompt-template "Describe the {subject}").`,
      );
    }
    const bytes = objectBytes(store, location);
    // Fails here, before anything is written, naming the object (or its bucket) when it is missing or denied.
    const etag = await bytes.etag();
    return {
      // CSV, JSON Lines or Parquet (by its name, or --manifest-format), read by ranges or as a stream.
      ...manifestBytesSource(bytes, filesRoot, options),
      // The ETag changes with the bytes: the same object with the same settings resumes its batch, without reading it twice.
      async defaultBatchName(defaultEndpoint) {
        const hash = createHash('sha256')
          .update(JSON.stringify([bytes.name, etag, defaultEndpoint, filesRoot, options.encoding]))
          .digest('hex');
        return `${stemOf(basename(location.key).replace(MANIFEST_FILE, ''), 'manifest')}-${hash.slice(0, 8)}`;
      },
    };
  }
  const prompt = options.prompt?.trim() ?? '';
  const prefix: S3Location = { bucket: location.bucket, key: location.key === '' || location.key.endsWith('/') ? location.key : `${location.key}/` };
  const name = formatS3Url(prefix);
  if (prompt === '') throw new ConfigError(`${name} is a prefix of images: say what to ask of every image under it with --prompt "Describe this image".`);
  // Before anything is written: the bucket and credentials answer, and the prefix holds images.
  await store.checkBucket(prefix.bucket, 'list');
  const lister = listImages(store, prefix.bucket, prefix.key);
  const first = await lister.next();
  await lister.return(undefined);
  if (first.done) {
    throw new ManifestError(
      'MANIFEST_INVALID',
      `${name} holds no images (looked for ${[...IMAGE_EXTENSIONS].join(', ')} objects under it, hidden ones left out).`,
      { file: name },
    );
  }
  let notImages = new Map<string, number>();
  return {
    kind: 'prefix',
    path: name,
    objectMemo: objects.memo,
    filesRoot,
    notImages: () => Object.fromEntries(notImages),
    async *records() {
      notImages = new Map();
      yield { line: 1, fields: FOLDER_HEADER };
      let line = 1;
      for await (const object of listImages(store, prefix.bucket, prefix.key, notImages)) {
        line++;
        const relative = object.key.slice(prefix.key.length);
        // The listing told the object's ETag and size: its row needs no HEAD.
        objects.memo.note(prefix.bucket, object);
        if (relative.includes('|'))
          yield { line, error: `image ${relative}: its key contains "|", which separates images in falbatch; rename the object`, leading: [relative] };
        else yield { line, fields: [relative, formatS3Url({ bucket: prefix.bucket, key: object.key }), prompt] };
      }
    },
    // As for a folder: the prefix, the prompt and the settings, not the listing (a prefix of a
    // million objects starts at once). An object replaced in place is a changed row (its ETag).
    async defaultBatchName(defaultEndpoint) {
      const hash = createHash('sha256')
        .update(JSON.stringify([name, prompt, defaultEndpoint]))
        .digest('hex');
      return `${stemOf(posix.basename(prefix.key) || prefix.bucket, 'images')}-${hash.slice(0, 8)}`;
    },
  };
}
