import { Command } from 'commander';
import type { CliIo } from '../io.js';
import {
  withCaptionOptions,
  withConnectionOptions,
  withDatasetOptions,
  withPriceOption,
  type CaptionFlags,
  type DatasetFlags,
  type RawFlags,
} from '../shared-options.js';

export interface ExportFlags extends Omit<RawFlags, 'wait'>, CaptionFlags, DatasetFlags {
  batch: string;
  out?: string;
  /** A switch here, not the wait mode of run/work. */
  wait?: boolean;
}

export function exportCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withPriceOption(withDatasetOptions(withCaptionOptions(new Command('export'))))
      .description("Write a batch's results, one line per manifest row in manifest order (works on any machine)")
      .requiredOption('--batch <name>', 'the batch')
      .option(
        '--out <file>',
        'results file, .csv, .jsonl or .parquet (written atomically, with X.errors.csv and X.report.json beside it); needed unless --captions',
      )
      .option('--wait', 'wait until the batch is finished first'),
  ).action(async (flags: ExportFlags) => (await import('../actions/export.js')).exportAction(io, exit, flags));
}
