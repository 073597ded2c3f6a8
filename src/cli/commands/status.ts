import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, withPriceOption, type RawFlags } from '../shared-options.js';

export interface StatusFlags extends RawFlags {
  batch?: string;
  json?: boolean;
  watch?: boolean;
  interval?: string;
}

export function statusCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withPriceOption(new Command('status'))
      .description("Show a batch's progress, or every batch's when --batch is left out")
      .option('--batch <name>', 'the batch')
      .option('--json', 'print JSON (with --watch: one snapshot per line, the last with "final": true)')
      .option('--watch', 'follow the batch (or every unfinished batch) until it has finished: a live bar on a terminal, else a line per interval')
      .option('--interval <duration>', 'with --watch: how often to look (default 2s)'),
  ).action(async (flags: StatusFlags) => (await import('../actions/status.js')).statusAction(io, exit, flags));
}
