import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

export interface PruneFlags extends RawFlags {
  batch?: string;
  expired?: boolean;
  force?: boolean;
  ledger?: boolean;
  json?: boolean;
}

export function pruneCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('prune')
      .description('Drop a batch now (--batch), or what has expired (--expired): keys, queued and failed jobs, list entries')
      .option('--batch <name>', 'the batch to drop: every key of it, its jobs in the queue (waiting, delayed, failed), its entry in the list')
      .option('--expired', 'remove what has expired: batches past their retention leave the list, and queue jobs of batches that are gone are removed')
      .option('--force', 'with --batch: drop it even while a producer enqueues it or rows of it are being called')
      .option('--ledger', 'with --batch: also drop the paid answers of its rows from the ledger (identical rows are then paid for again)')
      .option('--json', 'print the summary as JSON'),
  ).action(async (flags: PruneFlags) => (await import('../actions/prune.js')).pruneAction(io, exit, flags));
}
