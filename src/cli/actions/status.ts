import { ConfigError, EXIT } from '../../errors.js';
import { getStatus, listBatches } from '../../ops/status.js';
import { watchStatus } from '../../ops/watch-status.js';
import { durationOption } from '../../config.js';
import { createProgressView, progressMode } from '../progress.js';
import type { CliIo } from '../io.js';
import { statusReport } from '../output.js';
import { withSession } from '../session.js';
import type { StatusFlags } from '../commands/status.js';

export async function statusAction(io: CliIo, exit: (code: number) => void, flags: StatusFlags): Promise<void> {
  const intervalMs = durationOption('--interval', flags.interval) ?? 2000;
  if (flags.interval !== undefined && !flags.watch) throw new ConfigError('--interval only applies with --watch');
  if (intervalMs < 100) throw new ConfigError(`Expected --interval to be at least 100ms, got "${flags.interval ?? ''}"`);
  const mode = progressMode(io, flags.json ?? false);
  const progress = createProgressView(
    io,
    { mode, everyMs: intervalMs, write: io.stdout, now: () => Date.now(), jsonFields: { event: 'progress' } },
    flags.batch !== undefined,
  );
  await withSession({ ...io, stderr: progress.stderr }, flags, { price: true }, async ({ ctx, config, price: resolvePrice }) => {
    // Spend needs a price: --price, or fal's pricing API for the default endpoint when there is a key.
    const { price } = await resolvePrice();
    const options = price ? { price } : {};
    if (flags.watch) {
      const watched = await watchStatus(ctx, {
        ...options,
        batch: flags.batch,
        intervalMs,
        signal: io.signal,
        onSnapshot: (statuses, final) => (final ? progress.finish(statuses) : progress.show(statuses)),
      }).finally(() => progress.finish());
      if (mode !== 'json')
        io.stdout(watched.statuses.length === 0 ? `no batches in namespace "${config.prefix}"\n` : watched.statuses.map(statusReport).join('\n'));
      exit(watched.interrupted ? EXIT.interrupted : EXIT.ok);
      return;
    }
    const statuses = flags.batch !== undefined ? [await getStatus(ctx, flags.batch, options)] : await listBatches(ctx, options);
    if (flags.json) io.stdout(`${JSON.stringify(flags.batch !== undefined ? statuses[0] : statuses, null, 2)}\n`);
    else if (statuses.length === 0) io.stdout(`no batches in namespace "${config.prefix}"\n`);
    else io.stdout(statuses.map(statusReport).join('\n'));
    exit(EXIT.ok);
  });
}
