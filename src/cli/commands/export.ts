import { Command } from 'commander';
import { ConfigError, EXIT } from '../../errors.js';
import { waitForBatch } from '../../ops/status.js';
import { exportResults } from '../../results/export.js';
import { writeCaptions } from '../../results/write-captions.js';
import type { CliIo } from '../io.js';
import { captionFailures, captionsReport, exportReport } from '../output.js';
import { withSession } from '../session.js';
import { captionsFrom, withCaptionOptions, withConnectionOptions, type CaptionFlags, type RawFlags } from '../shared-options.js';

interface ExportFlags extends Omit<RawFlags, 'wait'>, CaptionFlags {
  batch: string;
  out?: string;
  /** A switch here, not the wait mode of run/work. */
  wait?: boolean;
}

export function exportCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withCaptionOptions(new Command('export'))
      .description("Write a batch's results, one line per manifest row in manifest order (works on any machine)")
      .requiredOption('--batch <name>', 'the batch')
      .option('--out <file>', 'results file, .csv or .jsonl (written atomically); needed unless --captions')
      .option('--wait', 'wait until the batch is finished first'),
  ).action(async ({ wait, ...flags }: ExportFlags) => {
    const captions = captionsFrom(flags);
    if (flags.out === undefined && !captions) throw new ConfigError('export needs --out FILE (.csv or .jsonl), or --captions to write caption files beside the images, or both');
    await withSession(io, flags, {}, async ({ ctx }) => {
      if (wait) {
        const status = await waitForBatch(ctx, flags.batch, { signal: io.signal, intervalMs: 500 });
        if (status.paused !== undefined) throw new ConfigError(`batch ${flags.batch} cannot finish: the queue is paused: ${status.paused}`);
      }
      const summary = flags.out === undefined ? undefined : await exportResults(ctx, { batch: flags.batch, out: flags.out });
      if (summary) io.stdout(exportReport(summary));
      if (captions) {
        const written = await writeCaptions(ctx, { batch: flags.batch, captions });
        io.stdout(captionsReport(written));
        if (written.failedCount > 0) {
          io.stderr(captionFailures(written, flags.batch, flags));
          exit(EXIT.resultsNotWritten);
          return;
        }
      }
      exit(summary && summary.failed + summary.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
    });
  });
}
