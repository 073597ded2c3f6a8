import type { SingleBar } from 'cli-progress';
import { requireDependency } from '../load-dependency.js';
import type { BatchStatus } from '../ops/status.js';
import { formatDuration } from '../time.js';
import type { CliIo } from './io.js';

/**
 * How a command shows a batch's progress while it waits:
 * - `bar`: one bar per batch on stderr (a terminal), redrawn in place (cli-progress), left on the
 *   final counts; log lines written meanwhile go above the bars;
 * - `lines`: a plain line per batch every `everyMs` (a log file, CI), and the final one;
 * - `json`: a JSON snapshot per line every `everyMs`, and a final one (`"final": true`).
 */
export type ProgressMode = 'bar' | 'lines' | 'json';

export interface ProgressViewOptions {
  mode: ProgressMode;
  /** Least time between two plain lines or JSON snapshots (bars redraw whenever a figure changes). */
  everyMs: number;
  /** Where plain lines and JSON snapshots go (bars always go to stderr). */
  write: (text: string) => void;
  /** Milliseconds now (the context's clock). */
  now: () => number;
  /** Extra fields of every JSON snapshot, e.g. `{ event: 'progress' }`. */
  jsonFields?: Record<string, unknown>;
}

export interface ProgressView {
  /** A new snapshot of the batches. */
  show(statuses: readonly BatchStatus[]): void;
  /** The last snapshot (by default the last one shown): drawn or written whatever the interval, and the terminal is let go. */
  finish(statuses?: readonly BatchStatus[]): void;
  /** For the command's other stderr output (log lines): written above the bars while they are up. */
  stderr(text: string): void;
}

/** The mode a command's flags and terminal ask for. */
export function progressMode(io: Pick<CliIo, 'interactive'>, json: boolean): ProgressMode {
  if (json) return 'json';
  return io.interactive ? 'bar' : 'lines';
}

/** `12.0 rows/min, ETA 2m05s` from the batch's rate over the last minute, or what is known of it. */
function rateText(status: BatchStatus): string {
  const rate = `${status.rowsPerMinute.toFixed(1)} rows/min`;
  if (status.finished) return rate;
  if (status.etaMs !== null) return `${rate}, ETA ${status.etaMs < 1000 ? '<1s' : formatDuration(status.etaMs)}`;
  return status.pending > 0 ? `${rate}, ETA -` : rate;
}

/** What was spent so far: the estimate (`~`) when a price is known, else billed inference time. */
function spendText(status: BatchStatus): string | undefined {
  if (status.cost) return `~${status.cost.amount.toFixed(status.cost.amount < 10 ? 4 : 2)} ${status.cost.currency}`;
  if (status.billedCalls > 0) return `${status.inferenceSeconds.toFixed(1)}s billed`;
  return undefined;
}

function stateText(status: BatchStatus): string | undefined {
  if (status.cancelled !== undefined) return status.finished ? 'cancelled' : 'CANCELLED: rows ending';
  if (status.pausedBy === 'spend-cap') return 'SPEND CAP REACHED';
  if (status.paused !== undefined) return 'PAUSED';
  if (status.enqueuing) return 'enqueuing';
  return status.finished ? 'finished' : undefined;
}

/**
 * The figures, shared by the bar and the plain line, most telling first (a narrow terminal cuts
 * the end): `3/4 done, 1 failed`, the state when not running, `1 in flight, 0 waiting`, rate and
 * ETA, spend.
 */
function figures(status: BatchStatus): string[] {
  const parts = [`${status.ok + status.failed}/${status.jobs} done, ${status.failed} failed`];
  const state = stateText(status);
  if (state) parts.push(state);
  if (!status.finished) parts.push(`${status.inFlight} in flight, ${status.waiting} waiting`);
  parts.push(rateText(status));
  const spend = spendText(status);
  if (spend) parts.push(spend);
  return parts;
}

/** The bar's size for a terminal width: fixed per width, so it never jumps as the figures change. */
function barSize(width: number): number {
  if (width >= 120) return 16;
  if (width >= 90) return 12;
  return width >= 60 ? 8 : 0;
}

function shortName(name: string, max: number): string {
  return name.length <= max ? name : `${name.slice(0, max - 1)}…`;
}

/**
 * One bar line, cut to `width - 1` characters (the last column would wrap on some terminals):
 * `name [████░░░░] 3/4 done, 1 failed | 1 in flight, 0 waiting | 12.0 rows/min, ETA 5.0s | ~0.0012 USD`.
 */
export function barLine(status: BatchStatus, width: number): string {
  const done = status.ok + status.failed;
  const size = barSize(width);
  const filled = status.jobs > 0 ? Math.min(size, Math.round((done / status.jobs) * size)) : status.finished ? size : 0;
  const bar = size > 0 ? ` [${'█'.repeat(filled)}${'░'.repeat(size - filled)}]` : '';
  return `${shortName(status.batch, 32)}${bar} ${figures(status).join(' | ')}`.slice(0, Math.max(0, width - 1));
}

/** A plain progress line: `[1m05s] B: 3/4 done, 1 failed; 1 in flight, 0 waiting; 12.0 rows/min, ETA 5.0s; ~0.0012 USD`. */
export function progressLine(status: BatchStatus, elapsedMs: number): string {
  return `[${formatDuration(elapsedMs)}] ${status.batch}: ${figures(status).join('; ')}\n`;
}

/** A JSON snapshot: one batch's status, or `batches` when several are watched. */
function snapshot(statuses: readonly BatchStatus[], final: boolean, at: number, extra: Record<string, unknown> | undefined, single: boolean): string {
  const body = single && statuses.length === 1 ? statuses[0] : { batches: statuses };
  return `${JSON.stringify({ ...extra, final, at, ...body })}\n`;
}

/**
 * Shows progress in the given mode. `single`: the view follows one batch (JSON snapshots are that
 * batch's status itself), else a list (`{"batches": [...]}`).
 */
export function createProgressView(io: CliIo, options: ProgressViewOptions, single = true): ProgressView {
  const started = options.now();
  let lastWrite: number | undefined;
  let finished = false;
  let lastShown: readonly BatchStatus[] = [];

  if (options.mode !== 'bar') {
    // The figures of the last plain lines written: a final snapshot saying the same (a rerun with
    // nothing to do is finished at its first look) is not written twice. A finished batch's rate
    // is left out of the comparison: it is over the last minute, so it moves between two looks.
    let lastFigures: string | undefined;
    const figuresOf = (statuses: readonly BatchStatus[]): string =>
      JSON.stringify(statuses.map((s) => [s.batch, figures(s.finished ? { ...s, rowsPerMinute: 0 } : s)]));
    const emit = (statuses: readonly BatchStatus[], final: boolean): void => {
      const now = options.now();
      if (options.mode === 'lines' && final && figuresOf(statuses) === lastFigures) return;
      lastFigures = figuresOf(statuses);
      lastWrite = now;
      if (options.mode === 'json') options.write(snapshot(statuses, final, now, options.jsonFields, single));
      else for (const status of statuses) options.write(progressLine(status, now - started));
    };
    return {
      show(statuses) {
        if (finished || statuses.length === 0) return;
        lastShown = statuses;
        if (lastWrite === undefined || options.now() - lastWrite >= options.everyMs) emit(statuses, false);
      },
      finish(statuses = lastShown) {
        if (finished) return;
        finished = true;
        if (statuses.length > 0) emit(statuses, true);
      },
      stderr: io.stderr,
    };
  }

  // cli-progress draws through io.stderr, as if on a terminal: runCli stays free of the process.
  const terminal = {
    isTTY: true,
    get columns(): number {
      return io.columns?.() ?? 80;
    },
    write(text: string): boolean {
      io.stderr(text);
      return true;
    },
  };
  // Required only when bars are drawn (a terminal): plain lines and JSON need no cli-progress.
  const cliProgress = requireDependency<typeof import('cli-progress')>('cli-progress', 'Progress bars');
  const bars = new cliProgress.MultiBar({
    stream: terminal as unknown as NodeJS.WritableStream,
    format: (_options, params, payload: { status?: BatchStatus }) => (payload.status ? barLine(payload.status, params.maxWidth) : ''),
    // Bars are cut to the terminal's width rather than wrapping (no escape that outlives a crash).
    linewrap: true,
    hideCursor: false,
    gracefulExit: false,
    clearOnComplete: false,
    fps: 10,
  });
  const shown = new Map<string, SingleBar>();
  const draw = (statuses: readonly BatchStatus[]): void => {
    for (const status of statuses) {
      const done = status.ok + status.failed;
      const bar = shown.get(status.batch);
      if (bar) {
        bar.setTotal(status.jobs);
        bar.update(done, { status });
      } else shown.set(status.batch, bars.create(status.jobs, done, { status }));
    }
  };
  return {
    show(statuses) {
      if (!finished) draw(statuses);
    },
    finish(statuses = []) {
      if (finished) return;
      finished = true;
      draw(statuses);
      if (shown.size === 0) return;
      // Log lines still buffered go out first, then the bars are drawn one last time and left.
      bars.update();
      bars.stop();
    },
    stderr(text) {
      if (finished || shown.size === 0) io.stderr(text);
      else bars.log(text.endsWith('\n') ? text : `${text}\n`);
    },
  };
}
