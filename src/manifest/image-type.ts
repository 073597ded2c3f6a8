import { importOnce } from '../load-dependency.js';

/** file-type (and its tokenizers) is loaded by the first local image or data URI, not by a manifest of URLs. */
const loadFileType = importOnce('file-type', 'Checking the type of local images and data URIs', () => import('file-type'));

/**
 * The image types fal's vision models decode (llava's PIL loader), by the MIME type `file-type`
 * reports. Kept to the five formats fal documents for its image inputs: AVIF, HEIC, TIFF, JPEG 2000
 * and SVG are images too, but not ones fal promises to take, so they are refused here rather than
 * paid for and failed at fal. An animated PNG is a PNG (its first frame is what a model sees).
 */
const ACCEPTED: ReadonlyMap<string, { mime: string; ext: string }> = new Map([
  ['image/png', { mime: 'image/png', ext: 'png' }],
  ['image/apng', { mime: 'image/png', ext: 'png' }],
  ['image/jpeg', { mime: 'image/jpeg', ext: 'jpg' }],
  ['image/webp', { mime: 'image/webp', ext: 'webp' }],
  ['image/gif', { mime: 'image/gif', ext: 'gif' }],
  ['image/bmp', { mime: 'image/bmp', ext: 'bmp' }],
]);

/** For messages: what falbatch takes. */
export const ACCEPTED_IMAGE_TYPES = 'PNG, JPEG, WebP, GIF or BMP';

export type ImageType = { ok: true; mime: string; ext: string } | { ok: false; found: string };

/**
 * The image type the bytes announce (never the file name): one fal's models decode, or, when not,
 * what the bytes are instead ("text/plain", "application/pdf", "unrecognised binary data").
 */
export async function detectImageType(bytes: Uint8Array): Promise<ImageType> {
  const { fileTypeFromBuffer } = await loadFileType();
  const detected = await fileTypeFromBuffer(bytes);
  if (detected) {
    const accepted = ACCEPTED.get(detected.mime);
    return accepted ? { ok: true, ...accepted } : { ok: false, found: detected.mime };
  }
  if (bytes.length === 0) return { ok: false, found: 'empty' };
  return { ok: false, found: looksLikeText(bytes) ? 'text/plain' : 'unrecognised binary data' };
}

/** Valid UTF-8 without NULs in its first 4 KiB: a text file (a CSV, a note, an HTML error page saved as .jpg). */
function looksLikeText(bytes: Uint8Array): boolean {
  const head = bytes.subarray(0, 4096);
  if (head.includes(0)) return false;
  try {
    // A multi-byte character cut at the 4 KiB boundary is not a reason to call it binary.
    new TextDecoder('utf-8', { fatal: true }).decode(head.length < bytes.length ? head.subarray(0, Math.max(0, head.length - 3)) : head);
    return true;
  } catch {
    return false;
  }
}
