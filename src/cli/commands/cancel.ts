import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

export interface CancelFlags extends RawFlags {
  batch: string;
  json?: boolean;
}

export function cancelCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('cancel')
      .description(
        'Cancel a batch: rows not yet called end as cancelled, its fal requests in flight are cancelled at fal (a row fal already answered keeps its answer)',
      )
      .requiredOption('--batch <name>', 'the batch')
      .option('--json', 'print the summary as JSON'),
  ).action(async (flags: CancelFlags) => (await import('../actions/cancel.js')).cancelAction(io, exit, flags));
}
