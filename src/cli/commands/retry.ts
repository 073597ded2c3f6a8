import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

export interface RetryFlags extends RawFlags {
  batch: string;
  error?: string;
  json?: boolean;
}

export function retryCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('retry')
      .description("Put a batch's failed rows back in the queue for workers (`falbatch work`, or `run` again) to process")
      .requiredOption('--batch <name>', 'the batch')
      .option('--error <class>', 'only rows whose error class (error_type) is this, e.g. result_unavailable')
      .option('--json', 'print the summary as JSON'),
  ).action(async (flags: RetryFlags) => (await import('../actions/retry.js')).retryAction(io, exit, flags));
}
