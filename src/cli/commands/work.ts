import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { startWorker } from '../../worker/start-worker.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import { withConnectionOptions, withFalOptions, type RawFlags } from '../shared-options.js';

interface WorkFlags extends RawFlags {
  emulate?: boolean;
}

export function workCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withFalOptions(
      new Command('work')
        .description('Process rows of every batch in the namespace until stopped (SIGINT/SIGTERM stop gracefully)')
        .option('--grace <duration>', 'on SIGTERM, how long rows in flight may finish before they are handed back (default 30s)')
        .option('--lock-duration <duration>', 'how soon another worker resumes the rows of a worker that died (default 30s)')
        .option('--emulate', 'use a built-in fal emulator instead of fal.ai'),
    ),
  ).action(async (flags: WorkFlags) => {
    await withSession(io, flags, { callsFal: true, emulate: flags.emulate ?? false }, async ({ ctx, config, log, step }) => {
      const worker = await startWorker(ctx);
      log.info(`worker started: concurrency ${config.concurrency}${config.globalConcurrency ? `, global cap ${config.globalConcurrency}` : ''}, namespace ${config.prefix}`);
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
      await worker.close();
      const total = worker.counts();
      log.info(`worker stopped: ${total.ok} ok, ${total.failed} failed, ${total.fromLedger} answered from earlier paid calls`);
      exit(EXIT.ok);
    });
  });
}
