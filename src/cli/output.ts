import type { EnqueueSummary } from '../queue/enqueue.js';
import type { BatchStatus } from '../ops/status.js';
import type { ExportSummary } from '../results/export.js';
import type { CaptionsSummary } from '../results/write-captions.js';
import type { CaptionFlags } from './shared-options.js';
import { formatDuration } from '../time.js';

const MAX_LISTED = 20;

export function enqueueReport(summary: EnqueueSummary): string {
  const lines = [
    `batch ${summary.batch}: ${summary.rows} rows read; ${summary.added} added` +
      (summary.changedRows > 0 ? ` (${summary.changedRows} of them changed since they were enqueued: called again)` : '') +
      `, ${summary.present} already present, ${summary.rejected} rejected` +
      (summary.skipped > 0 ? `, ${summary.skipped} skipped (their caption files exist)` : '') +
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

export function captionsReport(summary: CaptionsSummary): string {
  const parts = [`${summary.written} caption files written`];
  if (summary.kept > 0) parts.push(`${summary.kept} kept as they were (--caption-mode skip)`);
  if (summary.notLocal > 0) parts.push(`${summary.notLocal} rows without one local image to caption`);
  if (summary.failedCount > 0) parts.push(`${summary.failedCount} could not be written`);
  return `${parts.join(', ')}\n`;
}

/** Why caption files failed, and the command that writes them again once fixed (the results are in Redis). */
export function captionFailures(summary: CaptionsSummary, batch: string, flags: CaptionFlags & { prefix?: string | undefined }): string {
  const lines = summary.failed.map((f) => `  ${f.path}: ${f.reason}`);
  if (summary.failedCount > summary.failed.length) lines.push(`  … and ${summary.failedCount - summary.failed.length} more`);
  const words = ['falbatch', 'export', '--batch', batch, '--captions'];
  if (flags.prefix !== undefined) words.push('--prefix', flags.prefix);
  if (flags.captionExt !== undefined) words.push('--caption-ext', flags.captionExt);
  if (flags.captionMode !== undefined) words.push('--caption-mode', flags.captionMode);
  if (flags.captionPrefix !== undefined) words.push('--caption-prefix', flags.captionPrefix);
  if (flags.captionSuffix !== undefined) words.push('--caption-suffix', flags.captionSuffix);
  const quoted = words.map((w) => (/^[\w./:=@%+,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
  return (
    `falbatch: ${summary.failedCount} caption files could not be written:\n${lines.join('\n')}\n` +
    `The answers are kept in Redis: once the folders take files, write the captions with:\n  ${quoted}\n`
  );
}

export function exportReport(summary: ExportSummary): string {
  return (
    `wrote ${summary.rows} rows to ${summary.out}: ${summary.ok} ok, ${summary.failed} failed, ${summary.rejected} rejected` +
    (summary.pending > 0 ? `, ${summary.pending} pending` : '') +
    '\n'
  );
}
