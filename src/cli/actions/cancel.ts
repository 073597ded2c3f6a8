import { EXIT } from '../../errors.js';
import { cancelBatch } from '../../ops/control.js';
import type { CancelFlags } from '../commands/cancel.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';

export async function cancelAction(io: CliIo, exit: (code: number) => void, flags: CancelFlags): Promise<void> {
  await withSession(io, flags, {}, async ({ ctx }) => {
    const summary = await cancelBatch(ctx, flags.batch);
    const { batch } = summary;
    if (flags.json) io.stdout(`${JSON.stringify(summary)}\n`);
    else {
      io.stdout(
        `batch ${batch} cancelled: ${summary.pending} of its ${summary.jobs} distinct calls had not ended (${summary.ok} had ended ok, ${summary.failed} failed); ` +
          'they end as failed, error class cancelled, as soon as a worker takes them (without calling fal); ' +
          'its requests in flight are cancelled at fal within a second (an answer fal already gave is kept: it was paid, and its row ends ok).' +
          (summary.enqueuing ? ` A producer is enqueuing ${batch} now: the rows it adds end cancelled too.` : '') +
          '\n',
      );
      io.stderr(
        `Rows enqueued into ${batch} from now on are cancelled too, until \`falbatch resume --batch ${batch}\`. ` +
          `\`falbatch retry --batch ${batch} --error cancelled\` runs the cancelled rows again.\n`,
      );
    }
    exit(EXIT.ok);
  });
}
