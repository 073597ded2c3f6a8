import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, withFalOptions, withPriceOption, type RawFlags } from '../shared-options.js';

export interface WorkFlags extends RawFlags {
  emulate?: boolean;
  /** false with --no-schedules. */
  schedules?: boolean;
  metricsPort?: string;
  metricsHost?: string;
}

export function workCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withFalOptions(
      withPriceOption(new Command('work'))
        .description('Process rows of every batch in the namespace until stopped (SIGINT/SIGTERM stop gracefully)')
        .option('--grace <duration>', 'on SIGTERM, how long rows in flight may finish before they are handed back (default 30s)')
        .option('--lock-duration <duration>', 'how soon another worker resumes the rows of a worker that died (default 30s)')
        .option('--emulate', 'use a built-in fal emulator instead of fal.ai')
        .option('--no-schedules', "do not serve schedule ticks (`falbatch schedule`), e.g. on a machine that cannot read the schedules' manifest files")
        .option('--metrics-port <port>', 'serve Prometheus metrics on http://HOST:PORT/metrics (0 picks a free port; the log says which)')
        .option('--metrics-host <host>', 'interface the metrics listen on (default 127.0.0.1; 0.0.0.0 for a scraper on another machine)'),
    ),
  ).action(async (flags: WorkFlags) => (await import('../actions/work.js')).workAction(io, exit, flags));
}
