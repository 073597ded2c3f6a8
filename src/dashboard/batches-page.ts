import type { Percentiles } from '../results/batch-figures.js';
import { formatDuration } from '../time.js';
import type { DashboardBatch, DashboardBatches } from './dashboard-batches.js';

/** Text for HTML, in element content and in quoted attributes alike. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface BatchesPageOptions {
  /** Key namespace shown in the header. */
  prefix: string;
  /** Redis URL, password already hidden. */
  redis: string;
  /** Where Bull Board is mounted, e.g. `/queues`. */
  queuesPath: string;
  /** Seconds between refreshes (0: none). */
  refreshSeconds: number;
  /** When set, failed rows may be retried from the page: the form's anti-forgery token. */
  retryToken: string | undefined;
  /** Rendered at (ms). */
  now: number;
  /** What the last retry did, shown once after it. */
  retried?: { batch: string; requeued: number; missing: number } | undefined;
}

const STYLE = `
:root{color-scheme:light;--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--ok:#12b76a;--failed:#f04438;--pending:#d0d5dd;--accent:#444ce7}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#f7f8fa}
header{background:#fff;border-bottom:1px solid var(--line);padding:14px 28px;display:flex;align-items:baseline;gap:24px;flex-wrap:wrap}
h1{font-size:19px;margin:0}nav a{color:var(--accent);text-decoration:none;margin-right:16px}nav a:hover{text-decoration:underline}
.meta{color:var(--muted);margin:0;font-size:12.5px;flex-basis:100%}main{padding:20px 28px;display:grid;gap:16px;max-width:1180px}
.banner{margin:0 0 12px;padding:8px 12px;border-radius:8px;background:#fef3f2;border:1px solid #fecdca;color:#b42318}.notice{background:#ecfdf3;border-color:#abefc6;color:#067647}
.batch{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px}
.batch h2{font-size:16px;margin:0 0 2px;display:flex;gap:10px;align-items:center;word-break:break-all}
.state{font-size:11.5px;font-weight:600;padding:2px 8px;border-radius:999px;background:#eef4ff;color:#3538cd;text-transform:uppercase;letter-spacing:.03em}
.state-finished{background:#ecfdf3;color:#067647}.state-paused,.state-cancelled{background:#fef3f2;color:#b42318}.state-enqueuing{background:#fffaeb;color:#b54708}
.sub{color:var(--muted);margin:0 0 12px;font-size:12.5px;word-break:break-all}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;background:var(--pending)}.bar .ok{background:var(--ok)}.bar .failed{background:var(--failed)}
.done{margin:6px 0 12px;color:var(--muted);font-size:12.5px}
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px 16px;margin:0}
dl div{min-width:0}dt{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.03em}dd{margin:0;font-size:15px;font-variant-numeric:tabular-nums;font-weight:550}
dd small{font-weight:400;color:var(--muted);font-size:12px}
form{margin-top:12px}button{font:inherit;padding:5px 12px;border-radius:6px;border:1px solid #d0d5dd;background:#fff;cursor:pointer}button:hover{background:#f2f4f7}
.empty{color:var(--muted)}code{font-size:12.5px}`;

function stateOf(batch: DashboardBatch): string {
  if (batch.cancelled !== undefined) return 'cancelled';
  if (batch.paused !== undefined) return 'paused';
  if (batch.enqueuing) return 'enqueuing';
  return batch.finished ? 'finished' : 'running';
}

function ms(value: number | undefined | null): string {
  return value === undefined || value === null ? '–' : formatDuration(value);
}

/** One figure: its value (marked `data-field`, for scripts and tests) and a smaller note after it. */
interface Figure {
  label: string;
  field: string;
  value: string | number;
  note?: string | undefined;
  title?: string | undefined;
}

function figure({ label, field, value, note, title }: Figure): string {
  return (
    `<div${title ? ` title="${escapeHtml(title)}"` : ''}><dt>${escapeHtml(label)}</dt>` +
    `<dd><span data-field="${escapeHtml(field)}">${escapeHtml(value)}</span>${note ? ` <small>${escapeHtml(note)}</small>` : ''}</dd></div>`
  );
}

function percentiles(label: string, field: string, p: Percentiles | null, title: string): Figure {
  return { label, field, value: p ? ms(p.p50Ms) : '–', note: p ? `/ ${ms(p.p95Ms)}` : undefined, title };
}

function percent(part: number, whole: number): number {
  return whole > 0 ? Math.min(100, (part / whole) * 100) : 0;
}

function batchSection(batch: DashboardBatch, options: BatchesPageOptions): string {
  const state = stateOf(batch);
  const ended = batch.ok + batch.failed;
  const donePercent = percent(ended, batch.jobs);
  const cap = batch.spend ? `cap ${batch.spend.cap}` : '';
  const eta = batch.etaMs !== null ? formatDuration(batch.etaMs) : batch.pending > 0 ? '–' : 'done';
  const figures: Figure[] = [
    { label: 'ok', field: 'ok', value: batch.ok },
    { label: 'failed', field: 'failed', value: batch.failed },
    {
      label: 'pending',
      field: 'pending',
      value: batch.pending,
      note: `${batch.inFlight} in flight`,
      title: 'in flight: calling fal now; the rest wait for a worker or a retry',
    },
    { label: 'rows', field: 'rows', value: batch.rows, note: `${batch.rejected} rejected`, title: 'manifest rows, rejected ones included' },
    { label: 'calls', field: 'jobs', value: batch.jobs, title: 'distinct row keys enqueued (identical rows share one call)' },
    { label: 'rows/min', field: 'rate', value: batch.rowsPerMinute.toFixed(1), title: 'rows ended over the last minute' },
    { label: 'eta', field: 'eta', value: eta },
    percentiles('latency p50/p95', 'latency', batch.latencyMs.total, 'submit to stored result'),
    percentiles('queue p50/p95', 'queue-wait', batch.latencyMs.queueWait, 'submit to fal starting the request'),
    percentiles('inference p50/p95', 'inference', batch.latencyMs.inference, "fal's inference time"),
    {
      label: 'billed',
      field: 'billed',
      value: `${batch.inferenceSeconds.toFixed(1)} s`,
      note: `${batch.billedCalls} calls`,
      title: "sum of fal's inference time: what per-second endpoints bill",
    },
    { label: 'reused', field: 'reused', value: batch.reused, title: 'answered from identical rows already paid for (free)' },
    batch.cost
      ? {
          label: 'spend (est.)',
          field: 'cost',
          value: batch.cost.amount.toFixed(4),
          note: `${batch.cost.currency} ${cap}`.trim(),
          title: `${batch.cost.perUnit} ${batch.cost.currency} per ${batch.cost.unit} (${batch.cost.source === 'flag' ? '--price' : "fal's pricing API"}); fal's invoice decides`,
        }
      : { label: 'spend (est.)', field: 'cost', value: 'no price', note: cap, title: batch.priceNote ?? undefined },
  ];
  const retry =
    options.retryToken !== undefined && batch.failed > 0 && batch.cancelled === undefined
      ? `<form method="post" action="/batches/${escapeHtml(encodeURIComponent(batch.batch))}/retry"><input type="hidden" name="token" value="${escapeHtml(options.retryToken)}">` +
        `<button type="submit">Retry ${escapeHtml(batch.failed)} failed rows</button> <small class="sub">puts them back in the queue: workers submit them to fal again (paid)</small></form>`
      : '';
  return (
    `<section class="batch" data-batch="${escapeHtml(batch.batch)}">` +
    `<h2>${escapeHtml(batch.batch)} <span class="state state-${state}" data-field="state">${state}</span></h2>` +
    `<p class="sub">${escapeHtml(batch.manifest)} · ${escapeHtml(batch.endpoint)} · created ${escapeHtml(new Date(batch.createdAt).toISOString().replace('T', ' ').slice(0, 19))} UTC</p>` +
    (batch.cancelled !== undefined
      ? `<p class="banner" role="status">Cancelled: ${escapeHtml(batch.cancelled)}</p>`
      : batch.paused !== undefined
        ? `<p class="banner" role="status">Paused: ${escapeHtml(batch.paused)}</p>`
        : '') +
    `<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="${escapeHtml(batch.jobs)}" aria-valuenow="${escapeHtml(ended)}">` +
    `<span class="ok" style="width:${percent(batch.ok, batch.jobs).toFixed(2)}%"></span><span class="failed" style="width:${percent(batch.failed, batch.jobs).toFixed(2)}%"></span></div>` +
    `<p class="done">${escapeHtml(ended)} of ${escapeHtml(batch.jobs)} calls ended (${donePercent.toFixed(0)} %)</p>` +
    `<dl>${figures.map(figure).join('')}</dl>${retry}</section>`
  );
}

/** falbatch's own page: every batch with its progress and spend. Server-rendered; every value escaped. */
export function renderBatchesPage(list: DashboardBatches, options: BatchesPageOptions): string {
  const refresh = options.refreshSeconds > 0 ? `<meta http-equiv="refresh" content="${escapeHtml(options.refreshSeconds)}">` : '';
  const updated = new Date(options.now).toISOString().slice(11, 19);
  const parts = [
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">${refresh}`,
    // The icon Bull Board serves (else the browser asks for /favicon.ico, which is not there).
    `<title>falbatch · batches</title><link rel="icon" type="image/svg+xml" href="${escapeHtml(options.queuesPath)}/static/images/logo.svg"><style>${STYLE}</style></head><body>`,
    `<header><h1>falbatch</h1><nav><a href="/">Batches</a><a href="${escapeHtml(options.queuesPath)}">Queue (Bull Board)</a><a href="/api/batches">JSON</a></nav>`,
    `<p class="meta">namespace <code>${escapeHtml(options.prefix)}</code> · ${escapeHtml(options.redis)} · updated ${escapeHtml(updated)} UTC` +
      (options.refreshSeconds > 0 ? ` · refreshes every ${escapeHtml(options.refreshSeconds)} s` : '') +
      `</p></header><main>`,
  ];
  if (options.retried) {
    const { batch, requeued, missing } = options.retried;
    parts.push(
      `<p class="banner notice" role="status">${escapeHtml(requeued)} failed rows of ${escapeHtml(batch)} put back in the queue` +
        (missing > 0 ? `; ${escapeHtml(missing)} could not be (their queue jobs were cleaned up)` : '') +
        '.</p>',
    );
  }
  if (list.batches.length === 0)
    parts.push(
      `<p class="empty">No batches in namespace <code>${escapeHtml(options.prefix)}</code> yet: <code>falbatch enqueue manifest.csv</code> adds one.</p>`,
    );
  for (const batch of list.batches) parts.push(batchSection(batch, options));
  if (list.more > 0) parts.push(`<p class="empty">… and ${escapeHtml(list.more)} older batches (<code>falbatch status</code> lists them all).</p>`);
  parts.push('</main></body></html>');
  return parts.join('');
}
