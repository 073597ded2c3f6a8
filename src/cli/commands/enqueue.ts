import { Command } from 'commander';
import type { CliIo } from '../io.js';
import {
  withBatchControlOptions,
  withCaptionOptions,
  withConnectionOptions,
  withManifestOptions,
  withPriceOption,
  type BatchControlFlags,
  type CaptionFlags,
  type RawFlags,
} from '../shared-options.js';

export interface EnqueueFlags extends RawFlags, CaptionFlags, BatchControlFlags {
  batch?: string;
  strict?: boolean;
  prompt?: string;
  json?: boolean;
  dryRun?: boolean;
}

export function enqueueCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withBatchControlOptions(
      withPriceOption(
        withCaptionOptions(
          withManifestOptions(
            new Command('enqueue').description("Add a manifest's rows to a batch for workers (`falbatch work`) to process; prints the batch name"),
          ),
        ),
      ),
    ).option('--json', 'print the summary as JSON'),
  ).action(async (manifest: string, flags: EnqueueFlags) => (await import('../actions/enqueue.js')).enqueueAction(io, exit, manifest, flags));
}
