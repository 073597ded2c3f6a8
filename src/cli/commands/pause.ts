import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { pauseBatch } from '../../ops/control.js';
import { pauseQueueByOperator, queuePause } from '../../queue/queue-pause.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

interface PauseFlags extends RawFlags {
  batch?: string;
  json?: boolean;
}

export function pauseCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('pause')
      .description('Stop calling fal for a batch (--batch), or for every batch: rows in flight finish, the others wait until `falbatch resume`')
      .option('--batch <name>', 'only this batch (default: the whole queue)')
      .option('--json', 'print the summary as JSON'),
  ).action(async (flags: PauseFlags) => {
    await withSession(io, flags, {}, async ({ ctx }) => {
      if (flags.batch === undefined) {
        const before = await queuePause(ctx);
        if (before === undefined) await pauseQueueByOperator(ctx);
        if (flags.json) io.stdout(`${JSON.stringify({ queue: 'paused', previous: before ?? null })}\n`);
        else if (before !== undefined) io.stdout(`the queue was already paused: ${before.reason}\n`);
        else io.stdout('paused the queue: no row of any batch is called now; rows in flight finish. `falbatch resume` lets them go on.\n');
        exit(EXIT.ok);
        return;
      }
      const summary = await pauseBatch(ctx, flags.batch);
      const { batch } = summary;
      if (flags.json) io.stdout(`${JSON.stringify(summary)}\n`);
      else if (summary.previous === 'cancelled') {
        io.stdout(`batch ${batch} is cancelled: nothing to pause. \`falbatch retry --batch ${batch} --error cancelled\` runs its cancelled rows again.\n`);
      } else {
        io.stdout(
          `batch ${batch} ${summary.previous === 'paused' ? 'was already paused' : 'paused'}: its rows are not called now (rows in flight finish; other batches go on). ` +
            `\`falbatch resume --batch ${batch}\` lets it go on.\n`,
        );
      }
      exit(EXIT.ok);
    });
  });
}
