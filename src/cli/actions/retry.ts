import { EXIT } from '../../errors.js';
import { retryFailed } from '../../ops/retry.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import type { RetryFlags } from '../commands/retry.js';

export async function retryAction(io: CliIo, exit: (code: number) => void, flags: RetryFlags): Promise<void> {
  await withSession(io, flags, {}, async ({ ctx }) => {
    const summary = await retryFailed(ctx, { batch: flags.batch, errorType: flags.error });
    if (flags.json) io.stdout(`${JSON.stringify(summary)}\n`);
    else {
      const which = flags.error === undefined ? 'failed rows' : `failed rows with error ${flags.error}`;
      io.stdout(
        `batch ${summary.batch}: ${summary.requeued} ${which} back in the queue` +
          (summary.rereads > 0 ? ` (${summary.rereads} of them read their paid fal request again, without paying)` : '') +
          '\n',
      );
      if (summary.missing > 0) {
        io.stderr(
          `${summary.missing} ${which} could not be requeued: their queue jobs were already cleaned up (failed jobs are kept for the batch's retention, at most the newest 10,000).\n`,
        );
      }
      if (summary.requeued > 0) io.stderr('Workers (`falbatch work`) process them; `falbatch run` on the same manifest does too.\n');
      if (summary.uncancelled) io.stderr(`Batch ${summary.batch} was cancelled: the cancel is lifted.\n`);
      if (summary.held !== undefined && summary.requeued > 0) io.stderr(`They wait: batch ${summary.batch} is held (${summary.held}).\n`);
    }
    exit(EXIT.ok);
  });
}
