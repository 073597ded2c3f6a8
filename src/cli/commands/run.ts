import { basename, extname, resolve } from 'node:path';
import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { runBatch } from '../../run-batch.js';
import { resolvePrice } from '../../fal/pricing.js';
import { dryRun } from '../dry-run.js';
import type { CliIo } from '../io.js';
import { captionFailures, captionsReport, enqueueReport, exportReport, progressLine, rowNotices } from '../output.js';
import { withSession } from '../session.js';
import { captionsFrom, hfMetadataFrom, withCaptionOptions, withConnectionOptions, withDatasetOptions, withFalOptions, withPriceOption, withManifestOptions, type CaptionFlags, type DatasetFlags, type RawFlags } from '../shared-options.js';

interface RunFlags extends RawFlags, CaptionFlags, DatasetFlags {
  dryRun?: boolean;
  out?: string;
  batch?: string;
  emulate?: boolean;
  strict?: boolean;
  prompt?: string;
}

export function runCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withFalOptions(
      withPriceOption(withDatasetOptions(withCaptionOptions(withManifestOptions(new Command('run').description('Enqueue a manifest, work it in this process, wait, and export the results')))))
        .option('--out <file>', 'results file, .csv, .jsonl or .parquet, with X.errors.csv and X.report.json beside it (default: <manifest name>.results.csv in the current folder)')
        .option('--emulate', 'use a built-in fal emulator instead of fal.ai (and a private Redis if none answers)'),
    ),
  ).action(async (manifest: string, flags: RunFlags) => {
    const out = flags.out ?? `${basename(manifest, extname(manifest))}.results.csv`;
    const captions = captionsFrom(flags);
    // A dry run calls nothing: it needs no key (fal's pricing API is asked only when there is one).
    await withSession(io, flags, { callsFal: !flags.dryRun, emulate: flags.emulate ?? false }, async ({ ctx, emulated, step, log }) => {
      if (flags.dryRun) {
        step(`reading ${manifest} (dry run)`);
        exit(await dryRun(io, ctx, { manifest, batch: flags.batch, prompt: flags.prompt, captions }, false));
        return;
      }
      const started = ctx.clock.now();
      let lastPrint = 0;
      let doneAtStart: number | undefined;
      const { price, note } = await resolvePrice(ctx.config, ctx.config.endpoint);
      if (note !== undefined) log.info(`cost estimate: ${note}`);
      const summary = await runBatch(ctx, {
        manifest,
        out,
        batch: flags.batch,
        prompt: flags.prompt,
        captions,
        hfMetadata: hfMetadataFrom(flags),
        ...(price ? { price } : {}),
        strict: flags.strict ?? false,
        signal: io.signal,
        onStep: step,
        onEnqueued: (enqueued) => {
          io.stdout(enqueueReport(enqueued));
          io.stderr(rowNotices(enqueued));
        },
        onStatus: (status) => {
          const now = ctx.clock.now();
          doneAtStart ??= status.ok + status.failed;
          if (now - lastPrint >= (io.interactive ? 2000 : 15_000) && !status.finished) {
            lastPrint = now;
            io.stderr(progressLine(status, now - started, doneAtStart));
          }
        },
      });
      io.stdout(exportReport(summary.export));
      if (summary.captions) io.stdout(captionsReport(summary.captions));
      if (emulated) io.stdout('(emulated: these answers come from the local fal emulator, not from fal.ai)\n');
      if (summary.stopped === 'paused') {
        io.stderr(`falbatch: the queue is paused: ${summary.status.paused ?? ''}\nNothing is lost: after fixing it, run \`falbatch resume\` and this command again.\n`);
        exit(EXIT.fatal);
        return;
      }
      if (summary.stopped === 'interrupted') {
        io.stderr(`falbatch: interrupted; rows done so far are in ${resolve(out)}. Run the same command again to finish the batch (nothing is paid twice).\n`);
        exit(EXIT.interrupted);
        return;
      }
      if (summary.captions && summary.captions.failedCount > 0) {
        io.stderr(captionFailures(summary.captions, summary.enqueue.batch, flags));
        exit(EXIT.resultsNotWritten);
        return;
      }
      exit(summary.export.failed + summary.export.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
    });
  });
}
