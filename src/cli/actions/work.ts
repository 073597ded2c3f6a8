import { integerOption } from '../../config.js';
import { ConfigError, EXIT } from '../../errors.js';
import { startMetricsServer } from '../../metrics/start-metrics-server.js';
import { startScheduler } from '../../ops/start-scheduler.js';
import { startWorker } from '../../worker/start-worker.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import type { WorkFlags } from '../commands/work.js';

export async function workAction(io: CliIo, exit: (code: number) => void, flags: WorkFlags): Promise<void> {
  await withSession(io, flags, { callsFal: true, emulate: flags.emulate ?? false }, async ({ ctx, config, log, step }) => {
    const metricsPort = integerOption('--metrics-port', flags.metricsPort);
    if (metricsPort === undefined && flags.metricsHost !== undefined) throw new ConfigError('--metrics-host only applies with --metrics-port');
    const metrics = metricsPort === undefined ? undefined : await startMetricsServer(ctx, { port: metricsPort, host: flags.metricsHost ?? '127.0.0.1' });
    if (metrics) log.info(`metrics at ${metrics.url}`);
    const worker = await startWorker(ctx, metrics ? { onEvent: metrics.onEvent } : {}).catch(async (error: unknown) => {
      await metrics?.close();
      throw error;
    });
    const concurrency =
      config.globalConcurrency !== undefined
        ? `at most ${config.globalConcurrency} requests in flight across the queue (--global-concurrency)${config.autoConcurrency ? '' : `, ${config.concurrency} in this process`}`
        : config.autoConcurrency
          ? "concurrency auto (learning the account's fal slots from what fal says of the requests)"
          : `concurrency ${config.concurrency}`;
    log.info(`worker started: ${concurrency}, namespace ${config.prefix}`);
    // Every work process serves the schedules' ticks; BullMQ runs each tick once, in one of them.
    const scheduler =
      flags.schedules === false
        ? undefined
        : await startScheduler(ctx).catch(async (error: unknown) => {
            await worker.close();
            await metrics?.close();
            throw error;
          });
    if (scheduler) log.info('serving schedule ticks (falbatch schedule list)');
    // Every 30 s, what happened since the last report (nothing when idle).
    let reported = worker.counts();
    const progress = setInterval(() => {
      const now = worker.counts();
      const ok = now.ok - reported.ok;
      const failed = now.failed - reported.failed;
      const cached = now.fromLedger - reported.fromLedger;
      const retried = now.retried - reported.retried;
      if (ok + failed + cached + retried > 0) log.info(`last 30s: ${ok} ok, ${failed} failed, ${cached} answered from earlier paid calls, ${retried} retried`);
      reported = now;
    }, 30_000);
    progress.unref();
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve();
      io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    clearInterval(progress);
    log.info(`stopping: rows in flight get up to ${config.graceMs} ms to finish, then go back to the queue`);
    step('rows in flight finishing, or going back to the queue');
    await Promise.all([worker.close(), scheduler?.close()]);
    await metrics?.close();
    const total = worker.counts();
    log.info(`worker stopped: ${total.ok} ok, ${total.failed} failed, ${total.fromLedger} answered from earlier paid calls`);
    exit(EXIT.ok);
  });
}
