import { ConfigError, EXIT } from '../../errors.js';
import { waitForBatch } from '../../ops/status.js';
import { exportResults } from '../../results/export.js';
import { resolvePrice } from '../../fal/pricing.js';
import { readBatchMeta } from '../../queue/batch-meta.js';
import { captionOptions } from '../../results/caption-files.js';
import { writeCaptions } from '../../results/write-captions.js';
import type { CliIo } from '../io.js';
import { captionFailures, captionsReport, exportReport } from '../output.js';
import { withSession } from '../session.js';
import { captionsFrom, hfMetadataFrom } from '../shared-options.js';
import type { ExportFlags } from '../commands/export.js';

export async function exportAction(io: CliIo, exit: (code: number) => void, { wait, ...flags }: ExportFlags): Promise<void> {
  if (flags.out === undefined && !captionsFrom(flags))
    throw new ConfigError('export needs --out FILE (.csv, .jsonl or .parquet), or --captions to write caption files beside the images, or both');
  const hfMetadata = hfMetadataFrom(flags);
  if (hfMetadata && flags.out === undefined) throw new ConfigError('--hf-metadata goes with --out FILE: the report beside it says what metadata.jsonl holds');
  await withSession(io, flags, {}, async ({ ctx }) => {
    if (wait) {
      const status = await waitForBatch(ctx, flags.batch, { signal: io.signal, intervalMs: 500 });
      if (status.paused !== undefined)
        throw new ConfigError(`batch ${flags.batch} cannot finish: ${status.pausedBy === 'spend-cap' ? '' : 'the queue is paused: '}${status.paused}`);
    }
    const meta = await readBatchMeta(ctx.redis, ctx.keys, flags.batch);
    const { price } = await resolvePrice(ctx.config, meta?.defaultEndpoint || ctx.config.endpoint);
    // Caption flags not given here are the batch's last enqueue's (--caption-ext, a trigger word).
    const captions = flags.captions
      ? captionOptions({
          ext: flags.captionExt ?? (meta?.captionExt || undefined),
          mode: flags.captionMode,
          prefix: flags.captionPrefix ?? meta?.captionPrefix,
          suffix: flags.captionSuffix ?? meta?.captionSuffix,
        })
      : undefined;
    // Caption files first: metadata.jsonl and skipped rows' captions are read from them.
    const written = captions ? await writeCaptions(ctx, { batch: flags.batch, captions }) : undefined;
    const summary =
      flags.out === undefined
        ? undefined
        : await exportResults(ctx, {
            batch: flags.batch,
            out: flags.out,
            ...(hfMetadata ? { hfMetadata } : {}),
            ...(price ? { price } : {}),
            ...(captions ? { captionExt: captions.ext } : {}),
          });
    if (summary) io.stdout(exportReport(summary));
    if (written) {
      io.stdout(captionsReport(written));
      if (written.failedCount > 0) {
        io.stderr(captionFailures(written, flags.batch, flags));
        exit(EXIT.resultsNotWritten);
        return;
      }
    }
    exit(summary && summary.failed + summary.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
  });
}
