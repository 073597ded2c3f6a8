/** What a command may touch of the outside world: passed in, so tests run commands without a process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
  /** Aborted on the first SIGINT/SIGTERM: commands stop gracefully. */
  signal: AbortSignal;
  /** Whether stderr is a terminal (a progress bar redrawn in place) or a log (a plain line every 15 s). */
  interactive: boolean;
  /** The terminal's width in columns, when stderr is one (progress bars fit it; 80 when unknown). */
  columns?(): number | undefined;
  /** Told how long a graceful stop may take and what the command waits for (absent without a process). */
  stop?: StopReport;
  /** Told when the command reaches a phase (started, connected, enqueued, exported): FALBATCH_TIMING=1 prints them. */
  mark?(phase: string): void;
}

/**
 * What a command tells the process about stopping. After a signal, a stop that outlasts the grace
 * period is forced, and the forced exit says what the command was still waiting for.
 */
export interface StopReport {
  /** The command's grace period (its --grace, or config.graceMs). */
  grace(ms: number): void;
  /** What the command is doing or waiting for now, e.g. "enqueueing m.csv (Redis at redis://127.0.0.1:6379)". */
  waitingFor(what: string): void;
}
