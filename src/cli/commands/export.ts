import { Command } from 'commander';
import { ConfigError, EXIT } from '../../errors.js';
import { waitForBatch } from '../../ops/status.js';
import { exportResults } from '../../results/export.js';
import type { CliIo } from '../io.js';
import { exportReport } from '../output.js';
import { withSession } from '../session.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

interface ExportFlags extends Omit<RawFlags, 'wait'> {
  batch: string;
  out: string;
  /** A switch here, not the wait mode of run/work. */
  wait?: boolean;
}

export function exportCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('export')
      .description("Write a batch's results, one line per manifest row in manifest order (works on any machine)")
      .requiredOption('--batch <name>', 'the batch')
      .requiredOption('--out <file>', 'results file, .csv or .jsonl (written atomically)')
      .option('--wait', 'wait until the batch is finished first'),
  ).action(async ({ wait, ...flags }: ExportFlags) => {
    await withSession(io, flags, {}, async ({ ctx }) => {
      if (wait) {
        const status = await waitForBatch(ctx, flags.batch, { signal: io.signal, intervalMs: 500 });
        if (status.paused !== undefined) throw new ConfigError(`batch ${flags.batch} cannot finish: the queue is paused: ${status.paused}`);
      }
      const summary = await exportResults(ctx, { batch: flags.batch, out: flags.out });
      io.stdout(exportReport(summary));
      exit(summary.failed + summary.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
    });
  });
}
