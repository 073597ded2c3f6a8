import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';

/** File extensions taken as images in a folder (the types fal's vision models read). */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.bmp']);

function byName(a: Dirent, b: Dirent): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The images under a folder, as paths relative to it with `/` separators, depth first, each
 * folder's entries in code-unit order of their names: the same tree always gives the same order,
 * on any machine. Streams: one folder's listing at a time, nothing else is read. Hidden entries
 * (names starting with ".") are left out, and so are links to folders (no cycles); a link to a
 * file is listed (the image reader keeps it inside the folder). So is anything else named as an
 * image (a FIFO, a socket, a device): its row is rejected saying what it is, and counted, rather
 * than left out unseen. `notImages`, when given, counts the other entries left out (files of other
 * types: captions, a .heic photo), by lowercased extension ('' for none).
 */
export async function* walkImages(root: string, notImages?: Map<string, number>, relative = ''): AsyncGenerator<string> {
  const entries = await readdir(relative === '' ? root : join(root, relative), { withFileTypes: true });
  entries.sort(byName);
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
    const ext = extname(entry.name).toLowerCase();
    if (entry.isDirectory()) yield* walkImages(root, notImages, path);
    else if (IMAGE_EXTENSIONS.has(ext)) yield path;
    else notImages?.set(ext, (notImages.get(ext) ?? 0) + 1);
  }
}
