import { EXIT } from '../../errors.js';
import { enqueueManifest } from '../../queue/enqueue.js';
import { dryRun } from '../dry-run.js';
import type { CliIo } from '../io.js';
import { enqueueReport, rowNotices } from '../output.js';
import { withSession } from '../session.js';
import { batchSettingsFrom, captionsFrom, retentionFrom } from '../shared-options.js';
import { resolvePrice } from '../../fal/pricing.js';
import type { EnqueueFlags } from '../commands/enqueue.js';

export async function enqueueAction(io: CliIo, exit: (code: number) => void, manifest: string, flags: EnqueueFlags): Promise<void> {
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
    const summary = await enqueueManifest(ctx, {
      manifest,
      batch: flags.batch,
      prompt: flags.prompt,
      captions: captionsFrom(flags),
      strict: flags.strict ?? false,
      signal: io.signal,
      settings,
      retentionMs: retentionFrom(flags),
    });
    if (flags.json) io.stdout(`${JSON.stringify(summary)}\n`);
    else {
      io.stdout(enqueueReport(summary));
      io.stderr(rowNotices(summary));
    }
    exit(summary.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
  });
}
