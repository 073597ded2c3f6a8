import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join, posix, resolve } from 'node:path';
import pLimit from 'p-limit';
import { ConfigError, OutputError } from '../errors.js';
import type { RowEntry } from '../queue/batch-rows.js';
import type { ObjectStore } from '../storage/object-store.js';
import { formatS3Url, isS3Url, parseS3Url } from '../storage/s3-url.js';

/**
 * What to do where an image already has a caption file:
 * - `skip` (default): keep it, and do not call fal for that image at all;
 * - `overwrite`: replace it;
 * - `append` / `prepend`: keep it and add the new caption after / before it, on the same line
 *   (trainers read the first line), separated by a space.
 */
export type CaptionMode = 'skip' | 'overwrite' | 'append' | 'prepend';

export const CAPTION_MODES: readonly CaptionMode[] = ['skip', 'overwrite', 'append', 'prepend'];

/** Caption files beside local images: `cat.png` → `cat.txt`, the convention LoRA and fine-tune trainers read. */
export interface CaptionOptions {
  /** Extension of caption files, with its dot. @default '.txt' (flag --caption-ext) */
  ext: string;
  /** @default 'skip' (flag --caption-mode) */
  mode: CaptionMode;
  /** Written before the caption, e.g. a trigger word: `"ohwx, "`. @default '' (flag --caption-prefix) */
  prefix: string;
  /** Written after the caption. @default '' (flag --caption-suffix) */
  suffix: string;
}

export const DEFAULT_CAPTIONS: CaptionOptions = { ext: '.txt', mode: 'skip', prefix: '', suffix: '' };

/** Validates caption settings, naming the flag that is wrong. */
export function captionOptions(raw: {
  ext?: string | undefined;
  mode?: string | undefined;
  prefix?: string | undefined;
  suffix?: string | undefined;
}): CaptionOptions {
  const mode = raw.mode ?? DEFAULT_CAPTIONS.mode;
  if (!(CAPTION_MODES as readonly string[]).includes(mode))
    throw new ConfigError(`Expected --caption-mode to be one of ${CAPTION_MODES.join(', ')}, got "${mode}"`);
  const rawExt = raw.ext ?? DEFAULT_CAPTIONS.ext;
  const ext = rawExt.startsWith('.') ? rawExt : `.${rawExt}`;
  if (!/^\.[A-Za-z0-9_-]{1,16}$/.test(ext)) throw new ConfigError(`Expected --caption-ext to be an extension like txt or .caption, got "${rawExt}"`);
  return { ext, mode: mode as CaptionMode, prefix: raw.prefix ?? '', suffix: raw.suffix ?? '' };
}

/** The caption file of an image: beside it, its extension replaced (`a/cat.png` → `a/cat.txt`; `s3://b/p/cat.png` → `s3://b/p/cat.txt`). */
export function captionPath(image: string, ext: string): string {
  if (isS3Url(image)) {
    const { bucket, key } = parseS3Url(image);
    const stem = posix.extname(key) === '' ? key : key.slice(0, -posix.extname(key).length);
    return formatS3Url({ bucket, key: `${stem}${ext}` });
  }
  const name = basename(image);
  const stem = extname(name) === '' ? name : name.slice(0, -extname(name).length);
  return join(dirname(image), `${stem}${ext}`);
}

/**
 * What the caption file holds after writing `caption` over `existing` (undefined: no file yet).
 * A new file, or `overwrite`, holds exactly prefix + caption + suffix. Returns undefined when the
 * file is to be left as it is (`skip` and a file exists).
 */
export function captionText(options: CaptionOptions, caption: string, existing: string | undefined): string | undefined {
  const text = `${options.prefix}${caption}${options.suffix}`;
  if (existing === undefined) return text;
  switch (options.mode) {
    case 'skip':
      return undefined;
    case 'overwrite':
      return text;
    case 'append':
      return existing.trim() === '' ? text : `${existing.trimEnd()} ${text}`;
    case 'prepend':
      return existing.trim() === '' ? text : `${text} ${existing.trimStart()}`;
  }
}

/**
 * Writes a file so that it is never seen half-written: a temp file beside it (hidden, so a
 * trainer globbing `*.txt` never picks it up), flushed to disk, then renamed over it. A crash
 * leaves the old file or the new one, never a part.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.falbatch-tmp`);
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/** The file's (or s3:// object's) text, or undefined when there is none. */
export async function readCaption(path: string, objects?: () => ObjectStore): Promise<string | undefined> {
  if (isS3Url(path) && objects) {
    const { bucket, key } = parseS3Url(path);
    const store = objects();
    if ((await store.head(bucket, key)) === undefined) return undefined;
    return Buffer.from(await store.read(bucket, key)).toString('utf8');
  }
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Caption files read at once by an export. */
const READS_AT_ONCE = 16;

/**
 * The caption file text of each row (in order) with one local image, where `wanted`: undefined
 * for the others, for rows whose file does not exist, and for all when `ext` is '' (no caption
 * files). A file that exists but cannot be read stops the export, naming it.
 */
export async function readRowCaptions(
  entries: readonly RowEntry[],
  options: { filesRoot: string; ext: string; wanted: (entry: RowEntry) => boolean; objects?: () => ObjectStore },
): Promise<Array<string | undefined>> {
  if (options.ext === '') return entries.map(() => undefined);
  const limit = pLimit(READS_AT_ONCE);
  return Promise.all(
    entries.map((entry) => {
      const [file, ...more] = entry.files ?? [];
      if (file === undefined || more.length > 0 || entry.rejected !== undefined || !options.wanted(entry)) return undefined;
      const path = captionPath(isS3Url(file) ? file : resolve(options.filesRoot, file), options.ext);
      return limit(() =>
        readCaption(path, options.objects).catch((error: unknown) => {
          const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
          throw new OutputError(`Cannot read the caption file ${path} (${reason}): make it a readable text file, or move it away, and export again.`, {
            cause: error,
          });
        }),
      );
    }),
  );
}
