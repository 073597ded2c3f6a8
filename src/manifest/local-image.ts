import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { ACCEPTED_IMAGE_TYPES, detectImageType } from './image-type.js';

export interface LoadedImage {
  /** The file's bytes, as read. */
  bytes: Buffer;
  /** Its type, from the bytes (never the name): image/png, image/jpeg, image/webp, image/gif or image/bmp. */
  mime: string;
  /** The usual extension of that type (png, jpg, webp, gif, bmp). */
  ext: string;
  /** `sha256:<hex>` of the bytes: the image's identity for row keys. */
  identity: string;
  /** The file's absolute path as the manifest names it (a link is not resolved: a caption goes beside the link). */
  path: string;
}

export type LocalImageResult = { ok: true; image: LoadedImage } | { ok: false; reason: string };

function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** What a path that is not a regular file is, for the row's reason. */
function kindOf(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isSocket()) return 'a socket';
  if (info.isDirectory()) return 'a folder';
  return 'not a file';
}

// Never blocks: open() of a FIFO (or some devices) without O_NONBLOCK waits for a writer for ever.
// O_NOFOLLOW: the path is already resolved, so a link there now was swapped in after the check.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Reads local image files for rows, confined to one folder: `..` and symlinks that lead outside it
 * are refused, so a manifest cannot make falbatch send arbitrary files to fal.
 */
export class LocalImageReader {
  readonly #root: string;
  readonly #maxBytes: number;
  #realRoot: Promise<string> | undefined;

  constructor(root: string, maxBytes: number) {
    this.#root = resolve(root);
    this.#maxBytes = maxBytes;
  }

  get root(): string {
    return this.#root;
  }

  async load(cell: string): Promise<LocalImageResult> {
    const path = resolve(this.#root, cell);
    if (!within(this.#root, path)) {
      return { ok: false, reason: `local file "${cell}" is outside the files root ${this.#root}; keep images under it, or pass --files-root` };
    }
    this.#realRoot ??= realpath(this.#root).catch(() => this.#root);
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      return { ok: false, reason: `local file "${cell}" not found (looked for ${path})` };
    }
    if (!within(await this.#realRoot, real)) {
      return {
        ok: false,
        reason: `local file "${cell}" is a link to ${real}, outside the files root ${this.#root}; copy the file under it, or pass --files-root`,
      };
    }
    const notRegular = (info: Stats): LocalImageResult => ({
      ok: false,
      reason: `local file "${cell}" is not a regular file (${kindOf(info)}); image_url must name an image file`,
    });
    const tooLarge = (info: Stats): LocalImageResult => ({
      ok: false,
      reason: `local file "${cell}" is ${mib(info.size)}; the most falbatch reads is ${mib(this.#maxBytes)} (use a URL for larger images, or raise --max-image-bytes)`,
    });
    const unreadable = (error: unknown): LocalImageResult => ({
      ok: false,
      reason: `local file "${cell}" cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    });
    // Checked before opening: stat never blocks, open() of a FIFO does.
    try {
      const info = await stat(real);
      if (!info.isFile()) return notRegular(info);
      if (info.size > this.#maxBytes) return tooLarge(info);
    } catch (error) {
      return unreadable(error);
    }
    let handle: FileHandle;
    try {
      handle = await open(real, OPEN_FLAGS);
    } catch (error) {
      return unreadable(error);
    }
    try {
      // Again on what was opened: the path may have been swapped between the stat and the open.
      const info = await handle.stat();
      if (!info.isFile()) return notRegular(info);
      if (info.size > this.#maxBytes) return tooLarge(info);
      const bytes = await handle.readFile();
      // The type comes from the bytes, not the extension: a mislabelled file still goes out right.
      const type = await detectImageType(bytes);
      if (!type.ok) {
        return {
          ok: false,
          reason: `local file "${cell}" is not an image: its bytes are ${type.found}, not a ${ACCEPTED_IMAGE_TYPES} image (whatever its name says)`,
        };
      }
      return {
        ok: true,
        image: { bytes, mime: type.mime, ext: type.ext, identity: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, path: real },
      };
    } finally {
      await handle.close();
    }
  }
}
