import { Command } from 'commander';
import { resolveConfig, secretsOf } from '../../config.js';
import { openContext } from '../../context.js';
import { ConfigError, EXIT } from '../../errors.js';
import { createLogger } from '../../log.js';
import { waitForBatch } from '../../ops/status.js';
import { exportResults } from '../../results/export.js';
import type { CliIo } from '../io.js';
import { exportReport } from '../output.js';
import { logSettings, overridesFrom, withConnectionOptions, type RawFlags } from '../shared-options.js';

interface ExportFlags extends RawFlags {
  batch?: string;
  out?: string;
  wait?: string;
}

export function exportCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('export')
      .description('Write a batch\'s results, one line per manifest row in manifest order (works on any machine)')
      .requiredOption('--batch <name>', 'the batch')
      .requiredOption('--out <file>', 'results file, .csv or .jsonl (written atomically)')
      .option('--wait', 'wait until the batch is finished first'),
  ).action(async (flags: ExportFlags) => {
    // --wait is a switch here, not the wait mode of run/work.
    const { wait, ...connection } = flags;
    const waitFirst = wait !== undefined;
    const config = resolveConfig(io.env, overridesFrom(connection));
    const log = createLogger({ ...logSettings(flags), secrets: secretsOf(config), write: io.stderr });
    const ctx = await openContext(config, { log });
    try {
      const batch = flags.batch as string;
      if (waitFirst) {
        const status = await waitForBatch(ctx, batch, { signal: io.signal, intervalMs: 500 });
        if (status.paused !== undefined) throw new ConfigError(`batch ${batch} cannot finish: the queue is paused: ${status.paused}`);
      }
      const summary = await exportResults(ctx, { batch, out: flags.out as string });
      io.stdout(exportReport(summary));
      exit(summary.failed + summary.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
    } finally {
      await ctx.close();
    }
  });
}
