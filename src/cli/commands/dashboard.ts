import { openTicksQueue } from '../../ops/schedules.js';
import { Command } from 'commander';
import { integerOption } from '../../config.js';
import { startDashboard, type DashboardCredentials } from '../../dashboard/start-dashboard.js';
import { ConfigError, EXIT } from '../../errors.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import { withConnectionOptions, withPriceOption, type RawFlags } from '../shared-options.js';

interface DashboardFlags extends RawFlags {
  port?: string;
  host?: string;
  user?: string;
  password?: string;
  allowRetry?: boolean;
  refresh?: string;
}

/** --user/--password, else FALBATCH_DASHBOARD_USER/PASSWORD; both or neither. */
function credentialsFrom(flags: DashboardFlags, env: CliIo['env']): DashboardCredentials | undefined {
  const user = flags.user ?? env['FALBATCH_DASHBOARD_USER'];
  const password = flags.password ?? env['FALBATCH_DASHBOARD_PASSWORD'];
  if (user === undefined && password === undefined) return undefined;
  if (user === undefined || password === undefined) {
    throw new ConfigError(`Expected a dashboard user and a password together, got only the ${user === undefined ? 'password' : 'user'} (--user/--password, or FALBATCH_DASHBOARD_USER/FALBATCH_DASHBOARD_PASSWORD)`);
  }
  return { user, password };
}

export function dashboardCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withPriceOption(new Command('dashboard'))
      .description("Serve a web dashboard until stopped: every batch's progress and spend, and Bull Board over the queue; prints its URL")
      .option('--port <port>', 'port (0 picks a free one)', '3000')
      .option('--host <host>', 'interface to bind; anything but loopback needs --user and --password', '127.0.0.1')
      .option('--user <name>', 'HTTP basic auth user (env FALBATCH_DASHBOARD_USER)')
      .option('--password <password>', 'HTTP basic auth password (env FALBATCH_DASHBOARD_PASSWORD, which other users of the machine cannot see in the process list)')
      .option('--allow-retry', 'show a "Retry failed rows" button on batches with failed rows (submits them to fal again: paid)')
      .option('--refresh <seconds>', 'seconds between refreshes of the batches page (0: never)', '5'),
  ).action(async (flags: DashboardFlags) => {
    const credentials = credentialsFrom(flags, io.env);
    const options = {
      port: integerOption('--port', flags.port) ?? 3000,
      host: flags.host ?? '127.0.0.1',
      credentials,
      allowRetry: flags.allowRetry ?? false,
      refreshSeconds: integerOption('--refresh', flags.refresh) ?? 5,
    };
    await withSession(io, flags, { secrets: [credentials?.password] }, async ({ ctx, log, step }) => {
      // The schedule ticks' queue beside the rows' one, so a tick and its outcome show there too.
      const ticks = openTicksQueue(ctx);
      const dashboard = await startDashboard(ctx, {
        ...options,
        queues: [{ queue: ticks, displayName: `schedule ticks (${ctx.config.prefix})`, description: 'one job per due tick of each schedule (falbatch schedule add)' }],
      });
      io.stdout(`${dashboard.url}\n`);
      log.info(`dashboard at ${dashboard.url} (Bull Board at ${dashboard.url}/queues)${credentials ? ', basic auth on' : ''}${options.allowRetry ? ', retries allowed' : ', read-only'}`);
      await new Promise<void>((resolve) => {
        if (io.signal.aborted) resolve();
        io.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      step('closing the dashboard');
      await dashboard.close();
      await ticks.close();
      exit(EXIT.ok);
    });
  });
}
