import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { getStatus, listBatches } from '../../ops/status.js';
import type { CliIo } from '../io.js';
import { statusReport } from '../output.js';
import { withSession } from '../session.js';
import { withConnectionOptions, withPriceOption, type RawFlags } from '../shared-options.js';
import { resolvePrice } from '../../fal/pricing.js';

interface StatusFlags extends RawFlags {
  batch?: string;
  json?: boolean;
}

export function statusCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withPriceOption(new Command('status'))
      .description("Show a batch's progress, or every batch's when --batch is left out")
      .option('--batch <name>', 'the batch')
      .option('--json', 'print JSON'),
  ).action(async (flags: StatusFlags) => {
    await withSession(io, flags, {}, async ({ ctx, config }) => {
      // Spend needs a price: --price, or fal's pricing API for the default endpoint when there is a key.
      const { price } = await resolvePrice(config, config.endpoint);
      const options = price ? { price } : {};
      const statuses = flags.batch !== undefined ? [await getStatus(ctx, flags.batch, options)] : await listBatches(ctx, options);
      if (flags.json) io.stdout(`${JSON.stringify(flags.batch !== undefined ? statuses[0] : statuses, null, 2)}\n`);
      else if (statuses.length === 0) io.stdout(`no batches in namespace "${config.prefix}"\n`);
      else io.stdout(statuses.map(statusReport).join('\n'));
      exit(EXIT.ok);
    });
  });
}
