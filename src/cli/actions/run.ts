import { isS3Url } from '../../storage/s3-url.js';
import { basename, extname, resolve } from 'node:path';
import { EXIT } from '../../errors.js';
import { runBatch } from '../../run-batch.js';
import { dryRun } from '../dry-run.js';
import type { CliIo } from '../io.js';
import { captionFailures, captionsReport, enqueueReport, exportReport, rowNotices } from '../output.js';
import { createProgressView, progressMode } from '../progress.js';
import { withSession } from '../session.js';
import { checkBatchSettings } from '../../queue/batch-settings.js';
import { batchSettingsFrom, captionsFrom, hfMetadataFrom, retentionFrom } from '../shared-options.js';
import type { RunFlags } from '../commands/run.js';

/** Plain progress lines (no terminal) this often; JSON snapshots (--json) every 2 s. */
const LINE_EVERY_MS = 15_000;
const JSON_EVERY_MS = 2000;

export async function runAction(io: CliIo, exit: (code: number) => void, manifest: string, flags: RunFlags): Promise<void> {
  // rows.jsonl.gz -> rows.results.csv, as rows.jsonl and rows.csv.
  const unzipped = manifest.replace(/\.gz$/i, '');
  const out = flags.out ?? `${basename(unzipped, extname(unzipped))}.results.csv`;
  const captions = captionsFrom(flags);
  const json = (flags.json ?? false) && !flags.dryRun;
  const mode = progressMode(io, json);
  const progress = createProgressView(io, {
    mode,
    everyMs: mode === 'json' ? JSON_EVERY_MS : LINE_EVERY_MS,
    write: mode === 'json' ? io.stdout : io.stderr,
    now: () => Date.now(),
    jsonFields: { event: 'progress' },
  });
  const print = (event: string, value: object, text: string): void => io.stdout(json ? `${JSON.stringify({ event, ...value })}\n` : text);
  // A dry run calls nothing: it needs no key (fal's pricing API is asked only when there is one).
  // Log lines go through the progress view: above the bar while it is drawn.
  await withSession(
    { ...io, stderr: progress.stderr },
    flags,
    { callsFal: !flags.dryRun, emulate: flags.emulate ?? false, price: !flags.dryRun },
    async ({ ctx, emulated, step, log, price: resolvePrice }) => {
      if (flags.dryRun) {
        step(`reading ${manifest} (dry run)`);
        exit(await dryRun(io, ctx, { manifest, batch: flags.batch, prompt: flags.prompt, captions }, flags.json ?? false));
        return;
      }
      const { price, note } = await resolvePrice();
      if (note !== undefined) log.info(`cost estimate: ${note}`);
      // --priority, --fal-priority, --max-spend (measured with the same price as the report's cost).
      const settings = batchSettingsFrom(flags, price);
      checkBatchSettings(settings);
      const summary = await runBatch(ctx, {
        settings,
        retentionMs: retentionFrom(flags),
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
          io.mark?.('enqueued');
          print('enqueued', enqueued, enqueueReport(enqueued));
          io.stderr(rowNotices(enqueued));
        },
        onStatus: (status) => progress.show([status]),
      }).catch((error: unknown) => {
        progress.finish();
        throw error;
      });
      io.mark?.('exported');
      progress.finish([summary.status]);
      print('exported', summary.export, exportReport(summary.export));
      if (summary.captions) print('captions', summary.captions, captionsReport(summary.captions));
      if (emulated) (json ? io.stderr : io.stdout)('(emulated: these answers come from the local fal emulator, not from fal.ai)\n');
      if (summary.stopped === 'paused' && summary.status.pausedBy === 'spend-cap') {
        io.stderr(
          `falbatch: batch ${summary.enqueue.batch} stopped: ${summary.status.paused ?? ''}, then run this command again to finish it (nothing is paid twice).\n`,
        );
        exit(EXIT.fatal);
        return;
      }
      if (summary.stopped === 'paused') {
        io.stderr(
          `falbatch: the queue is paused: ${summary.status.paused ?? ''}\nNothing is lost: after fixing it, run \`falbatch resume\` and this command again.\n`,
        );
        exit(EXIT.fatal);
        return;
      }
      if (summary.stopped === 'interrupted') {
        io.stderr(
          `falbatch: interrupted; rows done so far are in ${isS3Url(out) ? out : resolve(out)}. Run the same command again to finish the batch (nothing is paid twice).\n`,
        );
        exit(EXIT.interrupted);
        return;
      }
      if (summary.captions && summary.captions.failedCount > 0) {
        io.stderr(captionFailures(summary.captions, summary.enqueue.batch, flags));
        exit(EXIT.resultsNotWritten);
        return;
      }
      exit(summary.export.failed + summary.export.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
    },
  );
}
