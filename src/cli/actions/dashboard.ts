import { openTicksQueue } from '../../ops/schedules.js';
import { integerOption } from '../../config.js';
import { startDashboard, type DashboardCredentials } from '../../dashboard/start-dashboard.js';
import { ConfigError, EXIT } from '../../errors.js';
import type { DashboardFlags } from '../commands/dashboard.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';

/** --user/--password, else FALBATCH_DASHBOARD_USER/PASSWORD; both or neither. */
function credentialsFrom(flags: DashboardFlags, env: CliIo['env']): DashboardCredentials | undefined {
  const user = flags.user ?? env['FALBATCH_DASHBOARD_USER'];
  const password = flags.password ?? env['FALBATCH_DASHBOARD_PASSWORD'];
  if (user === undefined && password === undefined) return undefined;
  if (user === undefined || password === undefined) {
    throw new ConfigError(
      `Expected a dashboard user and a password together, got only the ${user === undefined ? 'password' : 'user'} (--user/--password, or FALBATCH_DASHBOARD_USER/FALBATCH_DASHBOARD_PASSWORD)`,
    );
  }
  return { user, password };
}

export async function dashboardAction(io: CliIo, exit: (code: number) => void, flags: DashboardFlags): Promise<void> {
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
      queues: [
        { queue: ticks, displayName: `schedule ticks (${ctx.config.prefix})`, description: 'one job per due tick of each schedule (falbatch schedule add)' },
      ],
    });
    io.stdout(`${dashboard.url}\n`);
    log.info(
      `dashboard at ${dashboard.url} (Bull Board at ${dashboard.url}/queues)${credentials ? ', basic auth on' : ''}${options.allowRetry ? ', retries allowed' : ', read-only'}`,
    );
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve();
      io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    step('closing the dashboard');
    await dashboard.close();
    await ticks.close();
    exit(EXIT.ok);
  });
}
