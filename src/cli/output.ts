import type { EnqueuePlan, EnqueueSummary } from '../queue/enqueue.js';
import type { BatchStatus } from '../ops/status.js';
import type { ExportSummary } from '../results/export.js';
import type { CostForecast } from '../ops/estimate.js';
import type { Price } from '../fal/price.js';
import type { HfMetadataSummary } from '../results/hf-metadata.js';
import type { CaptionsSummary } from '../results/write-captions.js';
import type { CaptionFlags } from './shared-options.js';
import { formatDuration } from '../time.js';
import { formatRetention } from '../queue/retention.js';

const MAX_LISTED = 20;

export function enqueueReport(summary: EnqueueSummary): string {
  const lines = [
    `batch ${summary.batch}: ${summary.rows} rows read; ${summary.added} added` +
      (summary.changedRows > 0 ? ` (${summary.changedRows} of them changed since they were enqueued: called again)` : '') +
      `, ${summary.present} already present, ${summary.rejected} rejected` +
      (summary.skipped > 0 ? `, ${summary.skipped} skipped (their caption files exist)` : '') +
      (summary.shared > 0 ? `, ${summary.shared} identical to another row (answered once)` : '') +
      (summary.stored > 0 ? `; ${summary.stored} of the rows to call wait in Redis as compact rows, and become jobs as workers drain the queue` : ''),
  ];
  const leftOut = notImagesLine(summary.notImages);
  if (leftOut !== undefined) lines.push(leftOut);
  return `${lines.join('\n')}\n`;
}

/** A folder's files that are not images, counted by extension: said by enqueue and by the dry run alike. */
function notImagesLine(notImages: Record<string, number>): string | undefined {
  const kinds = Object.entries(notImages);
  if (kinds.length === 0) return undefined;
  const count = kinds.reduce((sum, [, n]) => sum + n, 0);
  return `  ${count} other ${count === 1 ? 'file' : 'files'} in the folder left out, not images (${kinds.map(([ext, n]) => `${n} ${ext === '' ? 'without an extension' : ext}`).join(', ')})`;
}

/**
 * Rejected rows and other row notices, for stderr: `line N: reason` (`row N` of a Parquet manifest;
 * a folder's or prefix's files by the reason alone, which names the file: their numbers mean nothing).
 */
export function rowNotices(summary: Pick<EnqueueSummary, 'rejections' | 'rejected' | 'changed' | 'records'>): string {
  const out: string[] = [];
  const where = (line: number): string => (summary.records === 'file' ? '' : `${summary.records} ${line}: `);
  const rows = summary.records === 'file' ? 'files' : 'rows';
  for (const r of summary.rejections.slice(0, MAX_LISTED)) out.push(`  ${where(r.line)}${r.reason}`);
  if (summary.rejected > MAX_LISTED) out.push(`  … and ${summary.rejected - MAX_LISTED} more rejected ${rows} (all are in the export, status "rejected")`);
  for (const c of summary.changed.slice(0, MAX_LISTED)) out.push(`  ${where(c.line)}${c.reason}`);
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

export function statusReport(status: BatchStatus): string {
  const state =
    status.cancelled !== undefined
      ? status.finished
        ? 'cancelled'
        : 'CANCELLED: rows ending'
      : status.pausedBy === 'spend-cap'
        ? 'SPEND CAP REACHED'
        : status.paused !== undefined
          ? 'PAUSED'
          : status.enqueuing
            ? 'enqueuing'
            : status.finished
              ? 'finished'
              : 'running';
  const lines = [
    `batch ${status.batch} (${state})`,
    `  manifest  ${status.manifest}`,
    `  rows      ${status.rows} (${status.rejected} rejected${status.skipped > 0 ? `, ${status.skipped} skipped` : ''})`,
    `  calls     ${status.jobs} distinct: ${status.ok} ok, ${status.failed} failed, ${status.pending} pending` +
      (status.pending > 0
        ? ` (${status.inFlight} in flight, ${status.waiting} waiting${status.backlog > 0 ? `, ${status.backlog} of them ${backlogWhy(status)}` : ''})`
        : ''),
  ];
  if (status.concurrency) {
    const c = status.concurrency;
    lines.push(
      c.mode === 'auto'
        ? `  fal       ${c.slots === undefined ? 'slots not learned yet' : `${c.slots} slots learned`}, ${c.target} requests kept in flight (auto: ${c.reason})`
        : `  fal       ${c.target} requests in flight at most (${c.reason})`,
    );
  }
  if (status.paused !== undefined) lines.push(`  paused    ${status.paused}`);
  if (status.cancelled !== undefined)
    lines.push(`  cancelled ${status.cancelled} (\`falbatch retry --batch ${status.batch} --error cancelled\` runs its cancelled rows again)`);
  lines.push(...controlLines(status));
  lines.push(...figureLines(status));
  lines.push(
    status.retentionMs === null
      ? '  kept      until pruned (--retention forever)'
      : `  kept      ${formatRetention(status.retentionMs)} after its last write${status.expiresAt !== null ? ` (expires in ${formatDuration(status.expiresAt - Date.now(), 'left')} unless written to)` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

/** Why rows of the batch wait in its backlog: a held batch's rows become jobs once it is resumed (see queue/backlog.ts). */
function backlogWhy(status: BatchStatus): string {
  if (status.pausedBy === 'spend-cap') return 'not yet jobs: the batch is at its spend cap';
  if (status.paused !== undefined) return 'not yet jobs while it is paused';
  return 'not yet jobs: the queue holds --max-waiting jobs';
}

/** A batch's priority, fal priority and spend cap, when not the defaults. */
function controlLines(status: BatchStatus): string[] {
  const parts: string[] = [];
  if (status.priority !== 10) parts.push(`priority ${status.priority} of 10`);
  if (status.falPriority !== 'normal') parts.push(`fal queue priority ${status.falPriority}`);
  if (status.spend) {
    const digits = status.spend.cap >= 1 ? 2 : 4;
    parts.push(`spend cap ${status.spend.cap.toFixed(digits)} ${status.spend.currency} (spent ${status.spend.amount.toFixed(digits)})`);
  }
  return parts.length === 0 ? [] : [`  control   ${parts.join(', ')}`];
}

/** `1.2s`, or `-` when nothing was measured. */
function ms(value: number | undefined): string {
  return value === undefined ? '-' : formatDuration(value);
}

/** The figures of a batch's ended rows (BatchStatus), one line each, only those it has. */
function figureLines(status: BatchStatus): string[] {
  const lines: string[] = [];
  if (status.rowsPerMinute > 0 || status.pending > 0) {
    const eta = status.etaMs !== null ? `, ~${formatDuration(status.etaMs)} left` : status.pending > 0 ? ', nothing ended in the last minute' : '';
    lines.push(`  rate      ${status.rowsPerMinute.toFixed(1)} rows/min over the last minute${eta}`);
  }
  const { total, queueWait, inference } = status.latencyMs;
  if (total) {
    const at = (pick: 'p50Ms' | 'p95Ms'): string => `${ms(total[pick])} (queue ${ms(queueWait?.[pick])}, inference ${ms(inference?.[pick])})`;
    lines.push(`  latency   p50 ${at('p50Ms')}, p95 ${at('p95Ms')} over ${total.count} answers`);
  }
  if (status.billedCalls > 0 || status.reused > 0) {
    const cost = status.cost ? `, est. ${status.cost.amount.toFixed(4)} ${status.cost.currency}` : '';
    const reused = status.reused > 0 ? ` (${status.reused} answers reused, free)` : '';
    lines.push(`  billed    ${status.inferenceSeconds.toFixed(1)} s of inference over ${status.billedCalls} calls${reused}${cost}`);
  }
  if (status.partial > 0) lines.push(`  partial   ${status.partial} answers cut at max_tokens`);
  return lines;
}

export function captionsReport(summary: CaptionsSummary): string {
  const parts = [`${summary.written} caption files written`];
  if (summary.kept > 0) parts.push(`${summary.kept} kept as they were (--caption-mode skip)`);
  if (summary.notLocal > 0) parts.push(`${summary.notLocal} rows without one local image to caption`);
  if (summary.failedCount > 0) parts.push(`${summary.failedCount} could not be written`);
  return `${parts.join(', ')}\n`;
}

/** Why caption files failed, and the command that writes them again once fixed (the results are in Redis). */
export function captionFailures(
  summary: CaptionsSummary,
  batch: string,
  flags: CaptionFlags & { prefix?: string | undefined; queue?: string | undefined; redisCluster?: boolean | undefined },
): string {
  const lines = summary.failed.map((f) => `  ${f.path}: ${f.reason}`);
  if (summary.failedCount > summary.failed.length) lines.push(`  … and ${summary.failedCount - summary.failed.length} more`);
  const words = ['falbatch', 'export', '--batch', batch, '--captions'];
  if (flags.prefix !== undefined) words.push('--prefix', flags.prefix);
  if (flags.queue !== undefined) words.push('--queue', flags.queue);
  if (flags.redisCluster) words.push('--redis-cluster');
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

/** `--dry-run`: what enqueueing (or running) would do, and cost. */
export function planReport(plan: EnqueuePlan, forecast: CostForecast, price: Price | undefined, priceNote: string | undefined): string {
  const lines = [
    `dry run of batch ${plan.batch}: nothing enqueued, uploaded or called`,
    `  rows      ${plan.rows} (${plan.rejected} rejected${plan.skipped > 0 ? `, ${plan.skipped} skipped: their caption files exist` : ''})`,
    `  calls     ${plan.calls} distinct: ${plan.done} already done in this batch, ${plan.answered} answered by earlier paid calls, ${plan.toCall} to call` +
      (plan.shared > 0
        ? `; ${plan.shared} more ${plan.shared === 1 ? 'row identical to one of these shares its answer' : 'rows identical to these share their answers'}`
        : ''),
    `  images    ${plan.localImages} distinct local images: ${plan.uploads} to upload${plan.expired > 0 ? ` (${plan.expired} cached but no longer served by fal storage)` : ''}, ${plan.localImages - plan.uploads} already in fal storage`,
  ];
  lines.push(
    forecast.inferenceSeconds === undefined
      ? `  fal time  unknown: no call measured in this namespace yet (run a sample first, e.g. the first 50 rows)`
      : `  fal time  ~${formatDuration(forecast.inferenceSeconds * 1000)} of inference (${(forecast.secondsPerCall ?? 0).toFixed(2)} s per call, measured over ${forecast.measuredCalls} earlier calls)`,
  );
  const per = price ? `${price.amount} ${price.currency}/${price.unit}${price.source === 'fal' ? ", fal's price" : ''}` : undefined;
  lines.push(
    forecast.cost !== undefined
      ? `  cost      ~${forecast.cost.amount.toFixed(forecast.cost.amount < 10 ? 4 : 2)} ${forecast.cost.currency} (at ${per}; an estimate: fal's invoice decides)`
      : `  cost      unknown: ${price === undefined ? (priceNote ?? 'no price') : 'no call measured yet to price per second'}`,
  );
  const leftOut = notImagesLine(plan.notImages);
  if (leftOut !== undefined) lines.push(leftOut);
  return `${lines.join('\n')}\n`;
}

export function exportReport(summary: ExportSummary): string {
  const lines = [
    `wrote ${summary.rows} rows to ${summary.out}: ${summary.ok} ok, ${summary.failed} failed, ${summary.rejected} rejected` +
      (summary.skipped > 0 ? `, ${summary.skipped} skipped` : '') +
      (summary.pending > 0 ? `, ${summary.pending} pending` : ''),
    `  errors  ${summary.errorsFile} (${summary.failed + summary.rejected} ${summary.failed + summary.rejected === 1 ? 'row' : 'rows'})`,
    `  report  ${summary.reportFile}`,
  ];
  const metadata = summary.hfMetadata;
  if (metadata) {
    const leftOut = Object.entries(metadata.leftOut)
      .filter(([, n]) => n > 0)
      .map(([why, n]) => `${n} ${HF_LEFT_OUT[why as keyof typeof metadata.leftOut]}`);
    lines.push(`  hf metadata  ${metadata.path}: ${metadata.written} images captioned${leftOut.length > 0 ? `; rows left out: ${leftOut.join(', ')}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

const HF_LEFT_OUT: Record<keyof HfMetadataSummary['leftOut'], string> = {
  notAnswered: 'not answered (failed, rejected or pending) and without a caption file',
  skipped: 'skipped, enqueued by an older falbatch that did not keep their images (enqueue again)',
  noCaptionFile: 'without a caption file yet (write them: export --captions)',
  notLocal: 'whose image is not a local file',
  severalImages: 'with several images',
  outsideFolder: 'whose image is outside the metadata folder',
};
