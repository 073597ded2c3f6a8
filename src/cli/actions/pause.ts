import { EXIT } from '../../errors.js';
import { pauseBatch } from '../../ops/control.js';
import { pauseQueueByOperator, queuePause } from '../../queue/queue-pause.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import type { PauseFlags } from '../commands/pause.js';

export async function pauseAction(io: CliIo, exit: (code: number) => void, flags: PauseFlags): Promise<void> {
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
}
