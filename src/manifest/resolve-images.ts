import { createHash } from 'node:crypto';
import { formatBytes } from './format-bytes.js';
import { ACCEPTED_IMAGE_TYPES, detectImageType } from './image-type.js';
import type { LoadedImage, LocalImageReader } from './local-image.js';
import type { S3ImageResult, S3ImageSource } from './s3-images.js';
import { createFitMemo, DownscaleError, prepareImage, type FitMemo, type PreparedImage } from './prepare-image.js';

/** A row's images as resolved: what goes to fal, and what identifies their content. */
export type ResolvedImages =
  | {
      ok: true;
      /** What fal gets for each image: an http(s) URL, a data URI, or a fal storage URL. */
      references: string[];
      /**
       * Each image's content identity, part of the row's fingerprint: `sha256:<hex>` of the bytes for
       * data URIs and local files (`sha256:<hex>@<N>px` for a local file downscaled by --max-side),
       * `url:<url>` otherwise. The same whether a local image goes inline or uploaded.
       */
      identities: string[];
      /** Absolute paths of the row's local image files, and `s3://` URLs of its images in a bucket (for caption files beside them). */
      localFiles: string[];
      /** `s3://bucket/key` of the row's images in object storage (for caption files beside them). */
      s3Objects?: string[];
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

/** What fal gets for a local image, or why the row cannot have it. */
export type LocalImageReference = { ok: true; reference: string } | { ok: false; reason: string };

/**
 * How local images reach fal: inline in the job as data URIs (`inlineLocalImages`), or uploaded to
 * fal storage with the job carrying the URL (manifest/upload-images.ts).
 */
export interface LocalImageDelivery {
  /** `cell` is the image's entry as the manifest writes it, for messages. */
  reference(image: PreparedImage, cell: string): Promise<LocalImageReference>;
}

/** Local images inside the job, as data URIs: no fal storage, but every row carries its image's bytes through Redis. */
export const inlineLocalImages: LocalImageDelivery = {
  async reference(image) {
    const { bytes, mime } = await image.content();
    return { ok: true, reference: `data:${mime};base64,${bytes.toString('base64')}` };
  },
};

export interface ImageResolverOptions {
  files: LocalImageReader;
  /** Largest data URI image, in decoded bytes (config maxInlineImageBytes, flag --max-image-bytes). */
  maxImageBytes: number;
  /** Downscale local images larger than this (px, longest side) before they go to fal (config maxImageSide, flag --max-side). */
  maxSide?: number | undefined;
  /** How local images reach fal. Default: inline, as data URIs. */
  local?: LocalImageDelivery;
  /**
   * Data URIs are images embedded in the manifest file itself (a Parquet manifest: a 🤗 `image`
   * struct's bytes): delivered like local files (uploaded to fal storage once per content, or
   * inline with --inline-images; downscaled by --max-side), rather than sent inside every job as
   * they are. Their identity is the same either way. Default false (a CSV's data URIs go as written).
   */
  embedded?: boolean | undefined;
  /** Where s3:// images are looked up (their ETag and size). Without it, an s3:// cell rejects its row. */
  s3?: S3ImageSource | undefined;
  /**
   * How an s3:// image reaches fal. Default: its location goes into the job, and the worker signs
   * a URL for it just before it submits (never at enqueue: a row may wait for hours).
   */
  s3Delivery?: S3ImageDelivery | undefined;
}

/** How an s3:// image reaches fal other than by a URL the worker signs: uploaded to fal storage (`--upload-images`). */
export interface S3ImageDelivery {
  reference(image: Extract<S3ImageResult, { ok: true }>, cell: string): Promise<LocalImageReference>;
}

/** URLs as they are, data URIs checked, local files read, checked, downscaled if asked, and delivered. */
export function createImageResolver(options: ImageResolverOptions): ImageResolver {
  const fits = createFitMemo();
  return { resolve: (cell, column) => resolveImages(cell, column, options, fits) };
}

async function resolveImages(cell: string, column: string, options: ImageResolverOptions, fits: FitMemo): Promise<ResolvedImages> {
  const { files: reader, maxImageBytes } = options;
  const parts = cell.split('|').map((p) => p.trim());
  if (parts.some((p) => p === ''))
    return { ok: false, reason: cell.trim() === '' ? `${column} is empty` : `${column} has an empty entry between "|" separators` };
  const references: string[] = [];
  const identities: string[] = [];
  const localFiles: string[] = [];
  const s3Objects: string[] = [];
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
      const type = await detectImageType(bytes);
      if (!type.ok) return { ok: false, reason: `${column} holds a data URI whose bytes are ${type.found}, not a ${ACCEPTED_IMAGE_TYPES} image` };
      const identity = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (!options.embedded) {
        references.push(part);
        identities.push(identity);
        continue;
      }
      const delivered = await deliver({ bytes, mime: type.mime, ext: type.ext, identity, path: '' }, `${column} (an image inside the manifest)`, options, fits);
      if (!delivered.ok) return delivered;
      references.push(delivered.reference);
      identities.push(delivered.identity);
      continue;
    }
    if (/^s3:\/\//i.test(part)) {
      if (!options.s3) return { ok: false, reason: `${column} "${part}" is an s3:// image, which this reader cannot look up` };
      const object = await options.s3.resolve(part, column);
      if (!object.ok) return object;
      let reference = object.reference;
      if (options.s3Delivery) {
        const delivered = await options.s3Delivery.reference(object, part);
        if (!delivered.ok) return delivered;
        reference = delivered.reference;
      }
      references.push(reference);
      identities.push(object.identity);
      s3Objects.push(object.reference);
      // Its caption file goes beside it, in the bucket.
      localFiles.push(object.reference);
      continue;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(part))
      return { ok: false, reason: `${column} "${part}" uses an unsupported scheme; use http(s), s3://, a data URI or a local path` };
    const local = await reader.load(part);
    if (!local.ok) return local;
    const delivered = await deliver(local.image, `local file "${part}"`, options, fits, part);
    if (!delivered.ok) return delivered;
    references.push(delivered.reference);
    identities.push(delivered.identity);
    localFiles.push(local.image.path);
  }
  return { ok: true, references, identities, localFiles, s3Objects };
}

/** An image read from a file or the manifest, downscaled if asked and delivered: what fal gets, and its identity. */
async function deliver(
  image: LoadedImage,
  named: string,
  options: ImageResolverOptions,
  fits: FitMemo,
  cell = named,
): Promise<{ ok: true; reference: string; identity: string } | { ok: false; reason: string }> {
  const prepared = await prepareImage(image, options.maxSide, fits);
  let delivered: LocalImageReference;
  try {
    delivered = await (options.local ?? inlineLocalImages).reference(prepared, cell);
  } catch (error) {
    // A delivery reports its own failures as reasons, and throws only what must stop the whole
    // run (no credentials, an account fal refuses), or a downscale that failed (a decompression
    // bomb, a file sharp chokes on): that one is the row's own problem.
    if (!(error instanceof DownscaleError)) throw error;
    return { ok: false, reason: `${named} could not be downscaled for --max-side: ${error.message}` };
  }
  return delivered.ok ? { ok: true, reference: delivered.reference, identity: prepared.identity } : delivered;
}
