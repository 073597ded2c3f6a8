import { createHash } from 'node:crypto';
import { open, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

const SIGNATURES: Array<[string, number[]]> = [
  ['image/png', [0x89, 0x50, 0x4e, 0x47]],
  ['image/jpeg', [0xff, 0xd8, 0xff]],
  ['image/gif', [0x47, 0x49, 0x46, 0x38]],
  ['image/webp', [0x52, 0x49, 0x46, 0x46]],
  ['image/bmp', [0x42, 0x4d]],
];

/** The image type the bytes announce, or undefined when they are no image fal's models decode. */
export function sniffImageType(bytes: Uint8Array): string | undefined {
  return SIGNATURES.find(([, signature]) => signature.every((byte, i) => bytes[i] === byte))?.[0];
}

export interface LoadedImage {
  /** What goes to fal: a data URI (uploads with a cache come later). */
  reference: string;
  /** sha256 of the bytes: the image's identity for row keys. */
  identity: string;
}

export type LocalImageResult = { ok: true; image: LoadedImage } | { ok: false; reason: string };

function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

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
      return { ok: false, reason: `local file "${cell}" is a link to ${real}, outside the files root ${this.#root}; copy the file under it, or pass --files-root` };
    }
    let handle;
    try {
      handle = await open(real, 'r');
    } catch (error) {
      return { ok: false, reason: `local file "${cell}" cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})` };
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) return { ok: false, reason: `local file "${cell}" is not a regular file` };
      if (info.size > this.#maxBytes) {
        return { ok: false, reason: `local file "${cell}" is ${mib(info.size)}; the most falbatch inlines is ${mib(this.#maxBytes)} (use a URL for larger images)` };
      }
      const bytes = await handle.readFile();
      // The type comes from the bytes, not the extension: a mislabelled file still goes out right.
      const mime = sniffImageType(bytes);
      if (!mime) return { ok: false, reason: `local file "${cell}" is not a PNG, JPEG, WebP, GIF or BMP image` };
      return {
        ok: true,
        image: { reference: `data:${mime};base64,${bytes.toString('base64')}`, identity: `sha256:${createHash('sha256').update(bytes).digest('hex')}` },
      };
    } finally {
      await handle.close();
    }
  }
}
