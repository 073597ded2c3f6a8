import type { EnqueueSummary } from '../queue/enqueue.js';
import type { BatchStatus } from '../ops/status.js';
import type { ExportSummary } from '../results/export.js';
import { formatDuration } from '../time.js';

const MAX_LISTED = 20;

export function enqueueReport(summary: EnqueueSummary): string {
  const lines = [
    `batch ${summary.batch}: ${summary.rows} rows read; ${summary.added} added` +
      (summary.changedRows > 0 ? ` (${summary.changedRows} of them changed since they were enqueued: called again)` : '') +
      `, ${summary.present} already present, ${summary.rejected} rejected` +
      (summary.shared > 0 ? `, ${summary.shared} identical to another row (answered once)` : ''),
  ];
  return `${lines.join('\n')}\n`;
}

/** Rejected rows and other row notices, for stderr: `line N: reason`. */
export function rowNotices(summary: EnqueueSummary): string {
  const out: string[] = [];
  for (const r of summary.rejections.slice(0, MAX_LISTED)) out.push(`  line ${r.line}: ${r.reason}`);
  if (summary.rejected > MAX_LISTED) out.push(`  … and ${summary.rejected - MAX_LISTED} more rejected rows (all are in the export, status "rejected")`);
  for (const c of summary.changed.slice(0, MAX_LISTED)) out.push(`  line ${c.line}: ${c.reason}`);
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

export function progressLine(status: BatchStatus, elapsedMs: number, doneAtStart: number): string {
  const done = status.ok + status.failed;
  const rate = elapsedMs > 0 ? ((done - doneAtStart) * 1000) / elapsedMs : 0;
  const eta = rate > 0 && status.pending > 0 ? `, ~${formatDuration((status.pending / rate) * 1000)} left` : '';
  return `[${formatDuration(elapsedMs)}] ${done}/${status.jobs} done: ${status.ok} ok, ${status.failed} failed, ${status.pending} pending (${rate.toFixed(1)} rows/s${eta})\n`;
}

export function statusReport(status: BatchStatus): string {
  const state = status.paused !== undefined ? 'PAUSED' : status.enqueuing ? 'enqueuing' : status.finished ? 'finished' : 'running';
  const lines = [
    `batch ${status.batch} (${state})`,
    `  manifest  ${status.manifest}`,
    `  rows      ${status.rows} (${status.rejected} rejected)`,
    `  calls     ${status.jobs} distinct: ${status.ok} ok, ${status.failed} failed, ${status.pending} pending`,
  ];
  if (status.paused !== undefined) lines.push(`  paused    ${status.paused}`);
  return `${lines.join('\n')}\n`;
}

export function exportReport(summary: ExportSummary): string {
  return (
    `wrote ${summary.rows} rows to ${summary.out}: ${summary.ok} ok, ${summary.failed} failed, ${summary.rejected} rejected` +
    (summary.pending > 0 ? `, ${summary.pending} pending` : '') +
    '\n'
  );
}
