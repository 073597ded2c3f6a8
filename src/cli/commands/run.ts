import { Command } from 'commander';
import type { CliIo } from '../io.js';
import {
  withBatchControlOptions,
  withCaptionOptions,
  withConnectionOptions,
  withDatasetOptions,
  withFalOptions,
  withPriceOption,
  withManifestOptions,
  type BatchControlFlags,
  type CaptionFlags,
  type DatasetFlags,
  type RawFlags,
} from '../shared-options.js';

export interface RunFlags extends RawFlags, CaptionFlags, DatasetFlags, BatchControlFlags {
  dryRun?: boolean;
  out?: string;
  batch?: string;
  emulate?: boolean;
  strict?: boolean;
  prompt?: string;
  json?: boolean;
}

export function runCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withFalOptions(
      withBatchControlOptions(
        withPriceOption(
          withDatasetOptions(
            withCaptionOptions(
              withManifestOptions(new Command('run').description('Enqueue a manifest, work it in this process, wait, and export the results')),
            ),
          ),
        ),
      )
        .option(
          '--out <file>',
          'results file, .csv, .jsonl or .parquet, with X.errors.csv and X.report.json beside it (default: <manifest name>.results.csv in the current folder)',
        )
        .option('--emulate', 'use a built-in fal emulator instead of fal.ai (and a private Redis if none answers)')
        .option('--json', 'print JSON lines on stdout: the enqueue summary, progress snapshots (every 2 s, and a final one), the export summary'),
    ),
  ).action(async (manifest: string, flags: RunFlags) => (await import('../actions/run.js')).runAction(io, exit, manifest, flags));
}
