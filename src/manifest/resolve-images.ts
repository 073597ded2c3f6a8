import { createHash } from 'node:crypto';
import { formatBytes } from './format-bytes.js';
import { sniffImageType, type LocalImageReader } from './local-image.js';

/** A row's images as resolved: what goes to fal, and what identifies their content. */
export type ResolvedImages =
  | {
      ok: true;
      /** What fal gets for each image: an http(s) URL, a data URI, or a fal storage URL. */
      references: string[];
      /** Each image's content identity (bytes for local files and data URIs, the URL otherwise): part of the row's fingerprint. */
      identities: string[];
      /** Absolute paths of the row's local image files (for caption files beside them). */
      localFiles: string[];
    }
  | { ok: false; reason: string };

/**
 * Where a row's images come from: local files, URLs, data URIs (object stores later), behind one
 * small interface, so that every source goes through the same checks (and, for uploads, the same
 * cache).
 */
export interface ImageResolver {
  /** Resolves an image cell (several images separated by "|"); `column` names it in messages. */
  resolve(cell: string, column: string): Promise<ResolvedImages>;
}

export interface ImageResolverOptions {
  files: LocalImageReader;
  /** Largest data URI image, in decoded bytes (config maxInlineImageBytes, flag --max-image-bytes). */
  maxImageBytes: number;
}

/** Today's resolver: URLs as they are, data URIs checked, local files read and sent inline. */
export function createImageResolver(options: ImageResolverOptions): ImageResolver {
  return { resolve: (cell, column) => resolveImages(cell, column, options.files, options.maxImageBytes) };
}

async function resolveImages(cell: string, column: string, reader: LocalImageReader, maxImageBytes: number): Promise<ResolvedImages> {
  const parts = cell.split('|').map((p) => p.trim());
  if (parts.some((p) => p === '')) return { ok: false, reason: cell.trim() === '' ? `${column} is empty` : `${column} has an empty entry between "|" separators` };
  const references: string[] = [];
  const identities: string[] = [];
  const localFiles: string[] = [];
  for (const part of parts) {
    if (/^https?:\/\//i.test(part)) {
      try {
        new URL(part);
      } catch {
        return { ok: false, reason: `${column} "${part}" is not a valid URL` };
      }
      references.push(part);
      identities.push(`url:${part}`);
      continue;
    }
    if (part.startsWith('data:')) {
      const match = /^data:([\w.+-]+\/[\w.+-]+)?(;[\w-]+=[\w.-]+)*;base64,([A-Za-z0-9+/]*={0,2})$/.exec(part);
      if (!match) return { ok: false, reason: `${column} holds a data URI that is not base64 image data (expected data:image/<type>;base64,<data>)` };
      const base64 = match[3] ?? '';
      // The limit counts decoded bytes, as a local file's size does; known before decoding.
      const size = Math.floor(((base64.length - (base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0)) * 3) / 4);
      if (size > maxImageBytes) {
        return {
          ok: false,
          reason: `${column} holds a data URI of ${formatBytes(size)} of image data; the most falbatch sends inline is ${formatBytes(maxImageBytes)} (--max-image-bytes); use a URL for larger images`,
        };
      }
      const bytes = Buffer.from(base64, 'base64');
      if (!sniffImageType(bytes)) return { ok: false, reason: `${column} holds a data URI whose bytes are not a PNG, JPEG, WebP, GIF or BMP image` };
      references.push(part);
      identities.push(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
      continue;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(part)) return { ok: false, reason: `${column} "${part}" uses an unsupported scheme; use http(s), a data URI or a local path` };
    const local = await reader.load(part);
    if (!local.ok) return local;
    references.push(local.image.reference);
    identities.push(local.image.identity);
    localFiles.push(local.image.path);
  }
  return { ok: true, references, identities, localFiles };
}

