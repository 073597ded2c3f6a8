import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, withPriceOption, type RawFlags } from '../shared-options.js';

export interface DashboardFlags extends RawFlags {
  port?: string;
  host?: string;
  user?: string;
  password?: string;
  allowRetry?: boolean;
  refresh?: string;
}

export function dashboardCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withPriceOption(new Command('dashboard'))
      .description("Serve a web dashboard until stopped: every batch's progress and spend, and Bull Board over the queue; prints its URL")
      .option('--port <port>', 'port (0 picks a free one)', '3000')
      .option('--host <host>', 'interface to bind; anything but loopback needs --user and --password', '127.0.0.1')
      .option('--user <name>', 'HTTP basic auth user (env FALBATCH_DASHBOARD_USER)')
      .option(
        '--password <password>',
        'HTTP basic auth password (env FALBATCH_DASHBOARD_PASSWORD, which other users of the machine cannot see in the process list)',
      )
      .option('--allow-retry', 'show a "Retry failed rows" button on batches with failed rows (submits them to fal again: paid)')
      .option('--refresh <seconds>', 'seconds between refreshes of the batches page (0: never)', '5'),
  ).action(async (flags: DashboardFlags) => (await import('../actions/dashboard.js')).dashboardAction(io, exit, flags));
}
