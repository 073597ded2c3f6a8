import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { getStatus, listBatches } from '../../ops/status.js';
import type { CliIo } from '../io.js';
import { statusReport } from '../output.js';
import { withSession } from '../session.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

interface StatusFlags extends RawFlags {
  batch?: string;
  json?: boolean;
}

export function statusCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('status')
      .description("Show a batch's progress, or every batch's when --batch is left out")
      .option('--batch <name>', 'the batch')
      .option('--json', 'print JSON'),
  ).action(async (flags: StatusFlags) => {
    await withSession(io, flags, {}, async ({ ctx, config }) => {
      const statuses = flags.batch !== undefined ? [await getStatus(ctx, flags.batch)] : await listBatches(ctx);
      if (flags.json) io.stdout(`${JSON.stringify(flags.batch !== undefined ? statuses[0] : statuses, null, 2)}\n`);
      else if (statuses.length === 0) io.stdout(`no batches in namespace "${config.prefix}"\n`);
      else io.stdout(statuses.map(statusReport).join('\n'));
      exit(EXIT.ok);
    });
  });
}
