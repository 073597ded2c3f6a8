import { StorageError } from '../errors.js';
import type { ObjectStore } from '../storage/object-store.js';
import { formatBytes } from './format-bytes.js';
import { ACCEPTED_IMAGE_TYPES, detectImageType } from './image-type.js';
import type { ImageContent, PreparedImage } from './prepare-image.js';
import type { LocalImageDelivery, LocalImageReference, S3ImageDelivery } from './resolve-images.js';

/** An object that is not an image after all (its bytes say so), or vanished since it was listed: its row's reason. */
export class ObjectImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ObjectImageError';
  }
}

/**
 * `--upload-images` for s3:// images: each goes into fal storage through the same delivery, and
 * the same upload cache, as local images, under its identity `s3etag:<ETag>:<size>`. That identity
 * comes from the listing, so an image already uploaded (by this run, an earlier one, another
 * batch) is found in the cache without reading a byte of it; only one to upload is read, whole, from
 * the bucket (up to --max-image-bytes), and then uploaded.
 */
export function s3ImagesThrough(delivery: LocalImageDelivery, store: () => ObjectStore, maxBytes: number): S3ImageDelivery {
  return {
    async reference(object, cell): Promise<LocalImageReference> {
      if (object.info.size > maxBytes) {
        return {
          ok: false,
          reason: `${cell} is ${formatBytes(object.info.size)}; the most falbatch uploads is ${formatBytes(maxBytes)} (--max-image-bytes); raise it, or leave out --upload-images (fal then reads a signed URL)`,
        };
      }
      let made: Promise<ImageContent> | undefined;
      const read = async (): Promise<ImageContent> => {
        let bytes: Buffer;
        try {
          bytes = Buffer.from(await store().read(object.location.bucket, object.location.key));
        } catch (error) {
          if (error instanceof StorageError && error.code === 'STORAGE_NOT_FOUND')
            throw new ObjectImageError(`${cell} is gone from the bucket since it was listed`);
          throw error;
        }
        const type = await detectImageType(bytes);
        if (!type.ok) throw new ObjectImageError(`${cell} is not an image: its bytes are ${type.found}, not a ${ACCEPTED_IMAGE_TYPES} image`);
        return { bytes, mime: type.mime, ext: type.ext };
      };
      const image: PreparedImage = { identity: object.identity, path: object.reference, downscaled: false, content: () => (made ??= read()) };
      try {
        return await delivery.reference(image, cell);
      } catch (error) {
        if (error instanceof ObjectImageError) return { ok: false, reason: error.message };
        throw error;
      }
    },
  };
}
