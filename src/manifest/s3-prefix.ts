import { posix } from 'node:path';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';
import { IMAGE_EXTENSIONS } from './image-folder.js';

/**
 * The images under a prefix, page by page as the store lists them (never the whole listing in
 * memory): keys in the store's order (UTF-8 binary, the same on every run), with the same rules
 * as a local folder: hidden entries (a path segment starting with ".") and folder markers are left
 * out, and so is anything not named as an image, counted in `notImages` by lowercased extension.
 */
export async function* listImages(
  store: ObjectStore,
  bucket: string,
  prefix: string,
  notImages?: Map<string, number>,
  options: { pageSize?: number; signal?: AbortSignal } = {},
): AsyncGenerator<ObjectInfo> {
  for await (const page of store.list(bucket, prefix, options)) {
    for (const object of page) {
      const relative = object.key.slice(prefix.length);
      if (relative === '' || relative.endsWith('/') || relative.split('/').some((segment) => segment.startsWith('.'))) continue;
      const ext = posix.extname(relative).toLowerCase();
      if (IMAGE_EXTENSIONS.has(ext)) yield object;
      else notImages?.set(ext, (notImages.get(ext) ?? 0) + 1);
    }
  }
}
