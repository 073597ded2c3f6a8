import { basename, extname, resolve } from 'node:path';
import { Command } from 'commander';
import { resolveConfig, secretsOf } from '../../config.js';
import { openContext } from '../../context.js';
import { EXIT, MissingCredentialsError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { runBatch } from '../../run-batch.js';
import { startEmulation, type Emulation } from '../emulate.js';
import type { CliIo } from '../io.js';
import { enqueueReport, exportReport, progressLine, rowNotices } from '../output.js';
import { logSettings, overridesFrom, withConnectionOptions, type RawFlags } from '../shared-options.js';

interface RunFlags extends RawFlags {
  out?: string;
  batch?: string;
  emulate?: boolean;
  strict?: boolean;
}

export function runCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('run')
      .description('Enqueue a manifest, work it in this process, wait, and export the results')
      .argument('<manifest>', 'CSV manifest (image_url, prompt, optional id, endpoint, max_tokens, temperature, top_p, other columns)')
      .option('--out <file>', 'results file, .csv or .jsonl (default: <manifest name>.results.csv in the current folder)')
      .option('--endpoint <id>', 'endpoint for rows without an endpoint value (default fal-ai/llava-next)')
      .option('--batch <name>', 'batch name (default: manifest name + hash of its content; the same manifest resumes)')
      .option('--concurrency <n>', 'fal requests in flight in this process (default 8)')
      .option('--global-concurrency <n>', 'cap on fal requests in flight across all workers')
      .option('--attempts <n>', 'attempts per row for retryable failures (default 5)')
      .option('--wait <mode>', 'how to wait for fal: stream or poll (default stream)')
      .option('--start-timeout <duration>', "fal's start timeout: fal gives up on a request not started by then (default: none)")
      .option('--wait-budget <duration>', 'longest a row waits for its fal request before it is cancelled and retried (default 15m)')
      .option('--call-timeout <duration>', 'deadline of one HTTP call to fal (default 30s)')
      .option('--files-root <dir>', 'folder local image paths must stay in (default: the manifest folder)')
      .option('--strict', 'abort on the first bad row, before enqueueing anything')
      .option('--emulate', 'use a built-in fal emulator instead of fal.ai (and a private Redis if none answers)'),
  ).action(async (manifest: string, flags: RunFlags) => {
    const { level, format } = logSettings(flags);
    let config = resolveConfig(io.env, overridesFrom(flags));
    const log = createLogger({ level, format, secrets: secretsOf(config), write: io.stderr });
    let emulation: Emulation | undefined;
    if (flags.emulate) {
      emulation = await startEmulation(config, log);
      config = resolveConfig(io.env, { ...overridesFrom(flags), ...emulation.overrides });
    } else if (config.falKey === undefined && config.falBaseUrl === undefined) {
      throw new MissingCredentialsError();
    }
    const out = flags.out ?? `${basename(manifest, extname(manifest))}.results.csv`;
    try {
      const ctx = await openContext(config, { log });
      try {
        const started = ctx.clock.now();
        let lastPrint = 0;
        let doneAtStart: number | undefined;
        const summary = await runBatch(ctx, {
          manifest,
          out,
          batch: flags.batch,
          strict: flags.strict ?? false,
          signal: io.signal,
          onEnqueued: (enqueued) => {
            io.stdout(enqueueReport(enqueued));
            io.stderr(rowNotices(enqueued));
          },
          onStatus: (status) => {
            const now = ctx.clock.now();
            doneAtStart ??= status.ok + status.failed;
            if (now - lastPrint >= (io.interactive ? 2000 : 15_000) && !status.finished) {
              lastPrint = now;
              io.stderr(progressLine(status, now - started, doneAtStart));
            }
          },
        });
        io.stdout(exportReport(summary.export));
        if (emulation) io.stdout('(emulated: these answers come from the local fal emulator, not from fal.ai)\n');
        if (summary.stopped === 'paused') {
          io.stderr(`falbatch: the queue is paused: ${summary.status.paused ?? ''}\nNothing is lost: after fixing it, run \`falbatch resume\` and this command again.\n`);
          exit(EXIT.fatal);
          return;
        }
        if (summary.stopped === 'interrupted') {
          io.stderr(`falbatch: interrupted; rows done so far are in ${resolve(out)}. Run the same command again to finish the batch (nothing is paid twice).\n`);
          exit(EXIT.interrupted);
          return;
        }
        exit(summary.export.failed + summary.export.rejected > 0 ? EXIT.rowsFailed : EXIT.ok);
      } finally {
        await ctx.close();
      }
    } finally {
      await emulation?.close();
    }
  });
}
