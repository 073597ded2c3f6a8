/** What a command may touch of the outside world: passed in, so tests run commands without a process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
  /** Aborted on the first SIGINT/SIGTERM: commands stop gracefully. */
  signal: AbortSignal;
  /** Whether stderr is a terminal (progress every 2 s) or a log (every 15 s). */
  interactive: boolean;
}
