import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { redisPassword } from '../config.js';
import { EXIT, FalbatchError } from '../errors.js';
import { createScrubber } from '../log.js';
import { emulatorCommand } from './commands/emulator.js';
import { enqueueCommand } from './commands/enqueue.js';
import { exportCommand } from './commands/export.js';
import { resumeCommand } from './commands/resume.js';
import { retryCommand } from './commands/retry.js';
import { runCommand } from './commands/run.js';
import { statusCommand } from './commands/status.js';
import { workCommand } from './commands/work.js';
import type { CliIo } from './io.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * Runs one CLI invocation with the given arguments and world, and returns its exit status.
 * Nothing here touches the process: tests call it directly.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code: number = EXIT.ok;
  const exit = (value: number): void => {
    code = value;
  };
  const program = new Command('falbatch')
    .description('Run a fal.ai vision-language model over a whole CSV manifest: durable, resumable, never pays twice.')
    .version(version())
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  for (const command of [runCommand, enqueueCommand, workCommand, statusCommand, exportCommand, resumeCommand, retryCommand, emulatorCommand]) {
    program.addCommand(command(io, exit).exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }));
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; a usage mistake is a bad configuration (commander printed why).
      return error.exitCode === 0 ? EXIT.ok : EXIT.fatal;
    }
    // Last line of defence: whatever is printed here passes the secret scrubber too.
    const scrub = createScrubber([io.env['FAL_KEY'], redisPassword(io.env['REDIS_URL'] ?? '')]);
    if (error instanceof FalbatchError) {
      io.stderr(`falbatch: ${scrub(error.message)}\n`);
      return error.code === 'INTERRUPTED' ? EXIT.interrupted : EXIT.fatal;
    }
    if (io.signal.aborted) {
      io.stderr('falbatch: interrupted\n');
      return EXIT.interrupted;
    }
    io.stderr(`falbatch: unexpected error (this is a bug; please report it with the lines below)\n${scrub((error as Error)?.stack ?? String(error))}\n`);
    return EXIT.fatal;
  }
}

/**
 * The process: argv, signals, exit. The first SIGINT/SIGTERM asks the command to stop gracefully;
 * a second one exits at once (rows in flight keep their saved fal request ids and are resumed by
 * the next worker).
 */
export async function main(): Promise<void> {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      process.stderr.write(`\nfalbatch: ${signal}: stopping gracefully (send it again to exit at once)\n`);
      controller.abort(new Error(signal));
      return;
    }
    process.stderr.write(`falbatch: ${signal} again: exiting now; rows in flight will be resumed by the next worker\n`);
    process.exit(EXIT.interrupted);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const code = await runCli(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    signal: controller.signal,
    interactive: process.stderr.isTTY === true,
  });
  process.exitCode = code;
  // Everything should be closed by now; if a handle lingers, say so and leave anyway.
  setTimeout(() => {
    process.stderr.write('falbatch: some connection did not close in time; exiting anyway\n');
    process.exit(code);
  }, 10_000).unref();
}
