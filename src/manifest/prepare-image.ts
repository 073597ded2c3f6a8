import { importOnce } from '../load-dependency.js';
import type { LoadedImage } from './local-image.js';

/** sharp (libvips, ~25 MB) is loaded by the first image --max-side looks at, not by every producer. */
const loadSharp = importOnce('sharp', 'Downscaling local images (--max-side)', async () => (await import('sharp')).default);

/** Bytes as fal gets them, with their type. */
export interface ImageContent {
  bytes: Buffer;
  mime: string;
  /** The usual extension of `mime` (png, jpg, webp, gif, bmp). */
  ext: string;
}

/** A local image as fal will get it: the file as it is, or downscaled to fit `--max-side`. */
export interface PreparedImage {
  /**
   * The identity of what fal gets, part of the row's fingerprint and the upload cache key: the
   * file's `sha256:<hex>` when it goes as it is, `sha256:<hex>@<N>px` when it is downscaled to fit
   * N×N. It names the original bytes and the setting, not the downscaled bytes, so it is known
   * from the file's header alone (a rerun finds its answers and uploads without resizing
   * anything) and does not change when a sharp upgrade encodes the same image a little differently.
   */
  identity: string;
  /** The file's absolute path. */
  path: string;
  /** True when the bytes are a downscaled copy (the file itself is never modified). */
  downscaled: boolean;
  /** The bytes fal gets: made on the first call (resizing costs time), then kept. Rejects with DownscaleError. */
  content(): Promise<ImageContent>;
}

/**
 * What fal gets for a local image. Without `maxSide`, the file as it is. With it, an image larger
 * than maxSide×maxSide is scaled down to fit inside it (aspect kept, EXIF orientation applied, never
 * enlarged) and re-encoded in its own format (JPEG and WebP at quality 90); a GIF becomes a PNG (a
 * 256-colour palette would blur the downscaled copy; models read only the first frame anyway). An
 * image that already fits, or that sharp cannot decode (BMP; a damaged file, which fal then judges),
 * goes as it is, under its plain identity.
 */
export async function prepareImage(image: LoadedImage, maxSide: number | undefined, fits?: FitMemo): Promise<PreparedImage> {
  const original: ImageContent = { bytes: image.bytes, mime: image.mime, ext: image.ext };
  const asIs: PreparedImage = { identity: image.identity, path: image.path, downscaled: false, content: () => Promise.resolve(original) };
  if (maxSide === undefined) return asIs;
  let goesAsIs = fits?.get(image.identity);
  if (goesAsIs === undefined) {
    goesAsIs = await fitsAsIs(image.bytes, maxSide);
    fits?.set(image.identity, goesAsIs);
  }
  if (goesAsIs) return asIs;
  let made: Promise<ImageContent> | undefined;
  return {
    identity: `${image.identity}@${maxSide}px`,
    path: image.path,
    downscaled: true,
    content: () => (made ??= downscale(original, maxSide)),
  };
}

/** Whether an image (by identity) goes as it is: rows sharing an image read its header once. */
export interface FitMemo {
  get(identity: string): boolean | undefined;
  set(identity: string, fits: boolean): void;
}

/** A bounded FitMemo: a run remembers its last `size` images. */
export function createFitMemo(size = 10_000): FitMemo {
  const known = new Map<string, boolean>();
  return {
    get: (identity) => known.get(identity),
    set(identity, fits) {
      known.set(identity, fits);
      if (known.size > size) known.delete(known.keys().next().value as string);
    },
  };
}

/** True when the image fits maxSide×maxSide, or sharp cannot read its header (it then goes as it is). */
async function fitsAsIs(bytes: Buffer, maxSide: number): Promise<boolean> {
  // Outside the try: a sharp that cannot be loaded stops the run, it does not pass every image as it is.
  const sharp = await loadSharp();
  try {
    // The header only: cheap, and enough to know whether the image fits.
    const { width, height } = await sharp(bytes).metadata();
    return width === undefined || height === undefined || Math.max(width, height) <= maxSide;
  } catch {
    return true;
  }
}

/** sharp could not make the downscaled copy (a decompression bomb, pixel data it cannot decode). */
export class DownscaleError extends Error {
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'DownscaleError';
  }
}

async function downscale(original: ImageContent, maxSide: number): Promise<ImageContent> {
  // Outside the try: a sharp that cannot be loaded is not the row's DownscaleError.
  const sharp = await loadSharp();
  try {
    // rotate(): the copy carries no EXIF, so the orientation is applied to its pixels.
    const resized = sharp(original.bytes).rotate().resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true });
    switch (original.mime) {
      case 'image/jpeg':
        return { bytes: await resized.jpeg({ quality: 90 }).toBuffer(), mime: 'image/jpeg', ext: 'jpg' };
      case 'image/webp':
        return { bytes: await resized.webp({ quality: 90 }).toBuffer(), mime: 'image/webp', ext: 'webp' };
      default:
        return { bytes: await resized.png().toBuffer(), mime: 'image/png', ext: 'png' };
    }
  } catch (error) {
    throw new DownscaleError((error as Error).message, { cause: error });
  }
}
