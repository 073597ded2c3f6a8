import { ConfigError, EXIT } from '../../errors.js';
import { resolvePrice } from '../../fal/pricing.js';
import { batchControlState } from '../../queue/batch-settings.js';
import { queuePause, resumeQueue } from '../../queue/queue-pause.js';
import { resumeBatch } from '../../ops/control.js';
import { readBatchMeta } from '../../queue/batch-meta.js';
import { formatCap, parseMaxSpend } from '../../queue/batch-control.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import type { ResumeFlags } from '../commands/resume.js';

export async function resumeAction(io: CliIo, exit: (code: number) => void, flags: ResumeFlags): Promise<void> {
  const maxSpend =
    flags.maxSpend === undefined ? undefined : flags.maxSpend.trim() === 'none' ? ('none' as const) : parseMaxSpend('--max-spend', flags.maxSpend);
  if (flags.batch === undefined && maxSpend !== undefined) throw new ConfigError('--max-spend applies to a batch: add --batch NAME');
  await withSession(io, flags, {}, async ({ ctx, config }) => {
    if (flags.batch === undefined) {
      const before = await queuePause(ctx);
      await resumeQueue(ctx);
      if (flags.json) io.stdout(`${JSON.stringify({ queue: 'running', previous: before ?? null })}\n`);
      else io.stdout(before === undefined ? 'the queue was not paused\n' : `resumed (it was paused: ${before.reason})\n`);
      exit(EXIT.ok);
      return;
    }
    const batch = flags.batch;
    // A new cap is measured with --price, else the cap's earlier price, else fal's price for the batch's endpoint.
    let price = config.price;
    if (typeof maxSpend === 'number' && price === undefined && (await batchControlState(ctx, batch)).control.cap === undefined) {
      const meta = await readBatchMeta(ctx.redis, ctx.keys, batch);
      price = (await resolvePrice(config, meta?.defaultEndpoint || config.endpoint)).price;
    }
    const summary = await resumeBatch(ctx, batch, { maxSpend, ...(price ? { price } : {}) });
    const queue = await queuePause(ctx);
    if (flags.json) io.stdout(`${JSON.stringify({ ...summary, queuePaused: queue?.reason ?? null })}\n`);
    else {
      const was = summary.previous === 'running' ? '' : summary.previous === 'cancelled' ? ' (cancel lifted: rows not yet ended go on)' : ' (pause lifted)';
      const cap = summary.cap ? `; spend cap ${formatCap(summary.cap)}` : maxSpend === 'none' ? '; no spend cap' : '';
      io.stdout(`batch ${batch}${was}: ${summary.woken} parked rows back in the queue${cap}\n`);
      if (summary.previous === 'cancelled')
        io.stderr(`Rows already cancelled stay so: \`falbatch retry --batch ${batch} --error cancelled\` runs them again.\n`);
      if (summary.held) io.stderr(`falbatch: batch ${batch} is still held: ${summary.held.reason}\n`);
      if (queue) io.stderr(`falbatch: the whole queue is paused too (${queue.reason}): \`falbatch resume\` lifts that.\n`);
    }
    exit(summary.held ? EXIT.fatal : EXIT.ok);
  });
}
