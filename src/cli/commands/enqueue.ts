import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { enqueueManifest } from '../../queue/enqueue.js';
import { dryRun } from '../dry-run.js';
import type { CliIo } from '../io.js';
import { enqueueReport, rowNotices } from '../output.js';
import { withSession } from '../session.js';
import { captionsFrom, withCaptionOptions, withConnectionOptions, withManifestOptions, withPriceOption, type CaptionFlags, type RawFlags } from '../shared-options.js';
import { batchSettingsFrom, retentionFrom, withBatchControlOptions, type BatchControlFlags } from '../shared-options.js';
import { resolvePrice } from '../../fal/pricing.js';

interface EnqueueFlags extends RawFlags, CaptionFlags, BatchControlFlags {
  batch?: string;
  strict?: boolean;
  prompt?: string;
  json?: boolean;
  dryRun?: boolean;
}

export function enqueueCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withBatchControlOptions(withPriceOption(withCaptionOptions(
      withManifestOptions(
        new Command('enqueue').description("Add a manifest's rows to a batch for workers (`falbatch work`) to process; prints the batch name"),
      ),
    ))).option('--json', 'print the summary as JSON'),
  ).action(async (manifest: string, flags: EnqueueFlags) => {
    await withSession(io, flags, {}, async ({ ctx, step }) => {
      if (flags.dryRun) {
        step(`reading ${manifest} (dry run)`);
        exit(await dryRun(io, ctx, { manifest, batch: flags.batch, prompt: flags.prompt, captions: captionsFrom(flags) }, flags.json ?? false));
        return;
      }
      // A spend cap is measured with --price, or fal's price for the endpoint.
      const price = flags.maxSpend === undefined ? undefined : (await resolvePrice(ctx.config, ctx.config.endpoint)).price;
      const settings = batchSettingsFrom(flags, price);
      step(`enqueueing ${manifest}`);
      const summary = await enqueueManifest(ctx, { manifest, batch: flags.batch, prompt: flags.prompt, captions: captionsFrom(flags), strict: flags.strict ?? false, signal: io.signal, settings, retentionMs: retentionFrom(flags) });
      if (flags.json) io.stdout(`${JSON.stringify(summary)}\n`);
      else {
        io.stdout(enqueueReport(summary));
        io.stderr(rowNotices(summary));
      }
      exit(summary.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
    });
  });
}
