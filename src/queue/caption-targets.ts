import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { FalbatchContext } from '../context.js';
import type { ColumnLayout, ColumnMap } from '../manifest/columns.js';
import type { ManifestSource } from '../manifest/manifest-source.js';
import { mapColumns } from '../manifest/columns.js';
import { captionPath, type CaptionOptions } from '../results/caption-files.js';
import type { ObjectStore } from '../storage/object-store.js';
import { isS3Url, parseS3Url } from '../storage/s3-url.js';
import { SECOND } from '../time.js';

/**
 * The one local image a record names in its image column (image_url, or the one image column of
 * an --input template), as an absolute path, or undefined (a URL, a data URI, several images or
 * image columns). Read from the cell alone: nothing is opened, so a row can be skipped before its
 * image is read or uploaded.
 */
export function localImageOf(fields: readonly string[], columns: ColumnMap, filesRoot: string): string | undefined {
  const index = columns.images.length === 1 ? columns.images[0] : undefined;
  const cell = index === undefined ? undefined : fields[index]?.trim();
  // An image in a bucket: its caption goes beside it, in the bucket.
  if (cell && isS3Url(cell) && !cell.includes('|')) return cell;
  if (!cell || cell.includes('|') || /^(https?:|data:)/i.test(cell) || /^[a-z][a-z0-9+.-]*:\/\//i.test(cell)) return undefined;
  return resolve(filesRoot, cell);
}

/** Whether a file exists (any kind), or an object for an s3:// path (one HEAD; a refusal stops the run). */
export async function exists(path: string, objects?: () => ObjectStore): Promise<boolean> {
  if (isS3Url(path) && objects) {
    const { bucket, key } = parseS3Url(path);
    return (await objects().head(bucket, key)) !== undefined;
  }
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Reads the source once, before anything is enqueued, and finds rows whose images would share one
 * caption file (`a.png` and `a.jpg` both → `a.txt`). Each such row gets its reason, naming both
 * images, in the hash `clashKey` (line → reason): the main pass rejects them all, so neither
 * writes over the other. Memory stays flat: the targets seen live in Redis for the run.
 */
export async function findCaptionClashes(
  ctx: FalbatchContext,
  source: ManifestSource,
  layout: ColumnLayout,
  captions: CaptionOptions,
  seenKey: string,
  clashKey: string,
): Promise<number> {
  let columns: ColumnMap | undefined;
  let batch: Array<{ line: number; image: string; target: string }> = [];
  let clashes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const pipeline = ctx.redis.pipeline();
    for (const { line, image, target } of batch) {
      pipeline.hsetnx(seenKey, target, JSON.stringify([line, image]));
      pipeline.hget(seenKey, target);
    }
    pipeline.pexpire(seenKey, 24 * 3600 * SECOND);
    const replies = (await pipeline.exec()) ?? [];
    const reasons = new Map<number, string>();
    batch.forEach(({ line, image, target }, n) => {
      const [firstLine, firstImage] = JSON.parse(String(replies[2 * n + 1]?.[1])) as [number, string];
      if (firstLine === line) return;
      const reason = `${firstImage} (line ${firstLine}) and ${image} (line ${line}) would share one caption file, ${target}: rename one of them, or pick another --caption-ext`;
      reasons.set(firstLine, reason);
      reasons.set(line, reason);
    });
    batch = [];
    if (reasons.size === 0) return;
    clashes += reasons.size;
    await ctx.redis
      .multi()
      .hset(clashKey, Object.fromEntries(reasons))
      .pexpire(clashKey, 24 * 3600 * SECOND)
      .exec();
  };
  for await (const record of source.records()) {
    if ('error' in record) continue;
    if (!columns) {
      columns = mapColumns(record.fields, source.path, layout);
      continue;
    }
    const image = localImageOf(record.fields, columns, source.filesRoot);
    if (image === undefined) continue;
    batch.push({ line: record.line, image, target: captionPath(image, captions.ext) });
    if (batch.length >= 1000) await flush();
  }
  await flush();
  return clashes;
}
