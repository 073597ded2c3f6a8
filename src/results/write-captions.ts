import { resolve } from 'node:path';
import pLimit from 'p-limit';
import type { FalbatchContext } from '../context.js';
import { batchNotFound, readBatchMeta } from '../queue/batch-meta.js';
import { rowEntryPages } from '../queue/batch-rows.js';
import { isS3Url, parseS3Url } from '../storage/s3-url.js';
import { captionPath, captionText, readCaption, writeFileAtomic, type CaptionOptions } from './caption-files.js';

export interface WriteCaptionsOptions {
  batch: string;
  captions: CaptionOptions;
}

export interface CaptionsSummary {
  /** Caption files written (new, overwritten, appended to or prepended to). */
  written: number;
  /** Caption files that existed and were left as they were (`skip`). */
  kept: number;
  /** ok rows that have no caption file to write: their image is not a local file, or they have several. */
  notLocal: number;
  /** Caption files that could not be written, with why (the first 20). */
  failed: Array<{ path: string; reason: string }>;
  failedCount: number;
}

const WRITES_AT_ONCE = 16;

/**
 * Writes each ok row's answer into a caption file beside its local image (`cat.png` → `cat.txt`),
 * as the caption options say, from what Redis holds: the process that has the images writes them
 * (`run`, or `export --captions` after a separate enqueue and work). Each file is written
 * atomically. A file that cannot be written is reported, and the rest go on.
 */
export async function writeCaptions(ctx: FalbatchContext, options: WriteCaptionsOptions): Promise<CaptionsSummary> {
  const meta = await readBatchMeta(ctx.redis, ctx.keys, options.batch);
  if (!meta) throw await batchNotFound(ctx.redis, options.batch, ctx.keys);
  const keys = ctx.keys.batch(options.batch);
  const limit = pLimit(WRITES_AT_ONCE);
  const summary: CaptionsSummary = { written: 0, kept: 0, notLocal: 0, failed: [], failedCount: 0 };
  for await (const page of rowEntryPages(ctx.redis, keys.rows)) {
    const called = page.filter((entry) => entry.rejected === undefined && entry.skipped === undefined);
    const results = await ctx.store.getMany(
      options.batch,
      called.map((entry) => entry.key),
    );
    await Promise.all(
      called.map((entry, i) =>
        limit(async () => {
          const result = results[i];
          if (result?.status !== 'ok' || result.output === undefined) return;
          const [file, ...more] = entry.files ?? [];
          if (file === undefined || more.length > 0) {
            summary.notLocal++;
            return;
          }
          const inBucket = isS3Url(file);
          const path = captionPath(inBucket ? file : resolve(meta.filesRoot, file), options.captions.ext);
          try {
            // overwrite needs nothing of what is there; the other modes read it (one HEAD, one GET in a bucket).
            const existing = options.captions.mode === 'overwrite' && inBucket ? undefined : await readCaption(path, ctx.objects);
            const text = captionText(options.captions, result.output, existing);
            if (text === undefined) {
              summary.kept++;
              return;
            }
            if (inBucket) {
              // One PUT: the object appears whole or not at all.
              const { bucket, key } = parseS3Url(path);
              await ctx.objects().put(bucket, key, text, 'text/plain; charset=utf-8');
            } else await writeFileAtomic(path, text);
            summary.written++;
          } catch (error) {
            summary.failedCount++;
            if (summary.failed.length < 20) summary.failed.push({ path, reason: (error as NodeJS.ErrnoException).code ?? (error as Error).message });
          }
        }),
      ),
    );
  }
  return summary;
}
