import { ConfigError, EXIT } from '../../errors.js';
import { pruneBatch, pruneExpired, type PruneBatchSummary, type PruneExpiredSummary } from '../../ops/prune.js';
import { formatRetention } from '../../queue/retention.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import type { PruneFlags } from '../commands/prune.js';

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function batchReport(summary: PruneBatchSummary): string {
  const { jobs } = summary;
  const removedJobs = jobs.waiting + jobs.delayed + jobs.failed;
  const lines = [
    `pruned batch ${summary.batch}: ${plural(summary.keys, 'key')} (${plural(summary.rows, 'row')}, ${plural(summary.results, 'result')}), ` +
      `${plural(removedJobs, 'queue job')} (${jobs.waiting} waiting, ${jobs.delayed} delayed, ${jobs.failed} failed)`,
    summary.ledgerDropped > 0 || summary.ledgerKept === 0
      ? `ledger: ${plural(summary.ledgerDropped, 'paid answer')} dropped`
      : `ledger: ${plural(summary.ledgerKept, 'paid answer')} kept for identical rows of other batches, until their own retention runs out (--ledger drops them)`,
  ];
  if (summary.producerStopped) lines.push('the producer that was enqueueing it stops at its next chunk');
  if (summary.inFlight > 0)
    lines.push(`${plural(summary.inFlight, 'row')} in flight left to their workers: they end without being recorded (answers they pay for go to the ledger)`);
  return `${lines.join('\n')}\n`;
}

function expiredReport(summary: PruneExpiredSummary, defaultRetention: number): string {
  const lines = [
    summary.expired.length === 0
      ? 'no expired batches on the list'
      : `${plural(summary.expired.length, 'expired batch')} off the list: ${summary.expired.join(', ')}`,
    `${plural(summary.orphanJobs, 'queue job')} of batches that are gone removed`,
  ];
  if (summary.migrated.length > 0)
    lines.push(
      `${plural(summary.migrated.length, 'batch')} from before retention now kept ${formatRetention(defaultRetention)} from now: ${summary.migrated.join(', ')}`,
    );
  if (summary.ledgerMigrated > 0)
    lines.push(`${plural(summary.ledgerMigrated, 'paid answer')} of the old ledger moved to keys that expire in ${formatRetention(defaultRetention)}`);
  return `${lines.join('\n')}\n`;
}

export async function pruneAction(io: CliIo, exit: (code: number) => void, flags: PruneFlags): Promise<void> {
  if ((flags.batch === undefined) === (flags.expired !== true))
    throw new ConfigError('Expected either --batch NAME (drop that batch now) or --expired (remove what has expired), not both or neither');
  if (flags.expired && (flags.force || flags.ledger)) throw new ConfigError('--force and --ledger only apply with --batch');
  await withSession(io, flags, {}, async ({ ctx, config }) => {
    if (flags.batch !== undefined) {
      const summary = await pruneBatch(ctx, { batch: flags.batch, force: flags.force ?? false, ledger: flags.ledger ?? false });
      io.stdout(flags.json ? `${JSON.stringify(summary)}\n` : batchReport(summary));
    } else {
      const summary = await pruneExpired(ctx);
      io.stdout(flags.json ? `${JSON.stringify(summary)}\n` : expiredReport(summary, config.retentionMs));
    }
    exit(EXIT.ok);
  });
}
