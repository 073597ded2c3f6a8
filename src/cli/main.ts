import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { DEFAULT_CONFIG, redisPasswords } from '../config.js';
import { EXIT, FalbatchError, RedisOutOfMemoryError, isRedisOutOfMemory } from '../errors.js';
import { createScrubber } from '../log.js';
import { clusterFailure } from '../queue/cluster-errors.js';
import { isConnectionLost } from '../queue/redis-outage.js';
import { formatDuration, SECOND } from '../time.js';
import { dashboardCommand } from './commands/dashboard.js';
import { emulatorCommand } from './commands/emulator.js';
import { enqueueCommand } from './commands/enqueue.js';
import { exportCommand } from './commands/export.js';
import { resumeCommand } from './commands/resume.js';
import { pauseCommand } from './commands/pause.js';
import { cancelCommand } from './commands/cancel.js';
import { retryCommand } from './commands/retry.js';
import { pruneCommand } from './commands/prune.js';
import { runCommand } from './commands/run.js';
import { scheduleCommand } from './commands/schedule.js';
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
    .description('Run a fal.ai vision-language model over a whole CSV manifest or folder of images: durable, resumable, never pays twice.')
    .version(version())
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  for (const command of [
    runCommand,
    enqueueCommand,
    workCommand,
    statusCommand,
    exportCommand,
    pauseCommand,
    resumeCommand,
    cancelCommand,
    retryCommand,
    pruneCommand,
    scheduleCommand,
    dashboardCommand,
    emulatorCommand,
  ]) {
    program.addCommand(command(io, exit).exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }));
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (thrown) {
    if (thrown instanceof CommanderError) {
      // Help and version exit 0; a usage mistake is a bad configuration (commander printed why).
      return thrown.exitCode === 0 ? EXIT.ok : EXIT.fatal;
    }
    // A Redis Cluster that stayed down past falbatch's wait is a Redis outage, not a bug.
    let error: unknown = clusterFailure(thrown) ?? thrown;
    // Last line of defence: whatever is printed here passes the secret scrubber too.
    const scrub = createScrubber([io.env['FAL_KEY'], ...redisPasswords(io.env['REDIS_URL'] ?? '')]);
    // A full Redis refuses writes wherever a command meets it: one plain message, whatever the command.
    if (isRedisOutOfMemory(error) && !(error instanceof FalbatchError)) error = new RedisOutOfMemoryError(error);
    if (error instanceof FalbatchError) {
      io.stderr(`falbatch: ${scrub(error.message)}\n`);
      return error.code === 'RESULTS_NOT_WRITTEN' ? EXIT.resultsNotWritten : EXIT.fatal;
    }
    if (io.signal.aborted) {
      io.stderr('falbatch: interrupted\n');
      return EXIT.interrupted;
    }
    io.stderr(`falbatch: unexpected error (this is a bug; please report it with the lines below)\n${scrub((error as Error)?.stack ?? String(error))}\n`);
    return EXIT.fatal;
  }
}

/** How long past its grace period a stopping command may take to hand rows back and close connections. */
const CLOSE_MS = 5 * SECOND;

/** What the event loop still waits on, in words ("2 network connections, 1 file operation"). */
function pendingResources(): string {
  const names: Record<string, string> = {
    TCPSocketWrap: 'network connection',
    TLSWrap: 'network connection',
    FSReqCallback: 'file operation',
    FSReqPromise: 'file operation',
    GetAddrInfoReqWrap: 'DNS lookup',
    ProcessWrap: 'child process',
  };
  const counts = new Map<string, number>();
  for (const resource of process.getActiveResourcesInfo()) {
    const name = names[resource];
    if (name) counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => `${n} ${name}${n === 1 ? '' : 's'}`).join(', ');
}

/**
 * Exits at once with 130. Node's exit first joins its thread pool, and a pool thread stuck in a
 * file system call (a FIFO's open, a hung network mount) never returns: then the process ends by
 * the signal itself, its default action, which the shell reports as 128 + its number (130 for
 * SIGINT, 143 for SIGTERM).
 */
function exitInterrupted(signal: NodeJS.Signals): void {
  if (process.getActiveResourcesInfo().some((name) => name.startsWith('FSReq'))) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(EXIT.interrupted);
}

/**
 * The process: argv, signals, exit. The first SIGINT/SIGTERM asks the command to stop gracefully,
 * within its grace period (and a few seconds to close): past that, whatever the command still waits
 * for (Redis that stopped answering, a stuck file), the process says what it was and exits 130. A
 * second signal exits at once. Rows in flight keep their saved fal request ids and are resumed by
 * the next worker; what was enqueued or done is kept in Redis.
 */
export async function main(): Promise<void> {
  const controller = new AbortController();
  let graceMs: number = DEFAULT_CONFIG.graceMs;
  let waitingFor = 'starting';
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      const boundMs = graceMs + CLOSE_MS;
      process.stderr.write(`\nfalbatch: ${signal}: stopping gracefully, within ${formatDuration(boundMs)} (send it again to exit at once)\n`);
      controller.abort(new Error(signal));
      setTimeout(() => {
        const pending = pendingResources();
        process.stderr.write(
          `falbatch: still not stopped ${formatDuration(boundMs)} after ${signal}: ${waitingFor}${pending ? `; pending: ${pending}` : ''}. ` +
            'Exiting now; what was done is kept in Redis: run the same command again to continue.\n',
        );
        exitInterrupted(signal);
      }, boundMs).unref();
      return;
    }
    process.stderr.write(`falbatch: ${signal} again: exiting now; rows in flight will be resumed by the next worker\n`);
    exitInterrupted(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // BullMQ 6.7's addBulk leaves one promise per job unhandled, and a Redis connection lost during
  // it rejects them all, although the caller gets the same failure from the pipeline (and a
  // top-up is safe to redo). That is a Redis outage being waited out, not a crash; anything else is.
  process.on('unhandledRejection', (reason) => {
    if (reason instanceof Error && isConnectionLost(reason)) return;
    throw reason;
  });
  const timing = process.env['FALBATCH_TIMING'] === '1';
  const mark = (phase: string, more = ''): void =>
    void process.stderr.write(`falbatch timing: ${phase} at ${(performance.timeOrigin + performance.now()).toFixed(1)} ms since the epoch${more}\n`);
  if (timing) process.once('exit', () => mark('exit', `, peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MB`));
  const code = await runCli(process.argv.slice(2), {
    ...(timing ? { mark } : {}),
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    signal: controller.signal,
    interactive: process.stderr.isTTY === true,
    columns: () => process.stderr.columns,
    stop: {
      grace: (ms) => {
        if (signals === 0) graceMs = ms;
      },
      waitingFor: (what) => {
        waitingFor = what;
      },
    },
  });
  process.exitCode = code;
  // Everything should be closed by now; if a handle lingers, say so and leave anyway.
  setTimeout(() => {
    process.stderr.write('falbatch: some connection did not close in time; exiting anyway\n');
    process.exit(code);
  }, 10_000).unref();
}
