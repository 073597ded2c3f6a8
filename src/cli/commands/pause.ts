import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

export interface PauseFlags extends RawFlags {
  batch?: string;
  json?: boolean;
}

export function pauseCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('pause')
      .description('Stop calling fal for a batch (--batch), or for every batch: rows in flight finish, the others wait until `falbatch resume`')
      .option('--batch <name>', 'only this batch (default: the whole queue)')
      .option('--json', 'print the summary as JSON'),
  ).action(async (flags: PauseFlags) => (await import('../actions/pause.js')).pauseAction(io, exit, flags));
}
