import { Command } from 'commander';
import { QUIRKS } from '../../emulator/quirks.js';
import type { CliIo } from '../io.js';

export interface EmulatorFlags {
  port?: string;
  host?: string;
  runners?: string;
  latency?: string;
  key?: string;
  seed?: string;
  fault?: string[];
  retryAfter?: string;
  locked?: boolean;
  quirk?: string[];
}

export function emulatorCommand(io: CliIo, exit: (code: number) => void): Command {
  return new Command('emulator')
    .description("Serve a local fal emulator (fal's queue protocol, llava-next and mantis) until stopped; prints its base URL")
    .option('--port <port>', 'port (0 picks a free one)', '0')
    .option('--host <host>', 'interface to bind', '127.0.0.1')
    .option('--runners <n>', "fal's per-account concurrency: requests running at once (2 for a new account, up to 40)", '2')
    .option('--latency <duration>', 'processing time per request: 800ms, or a range like 500..1500ms', '300..900ms')
    .option('--key <key>', 'require Authorization: Key <key> (default: accept any)')
    .option('--seed <n>', 'seed for latencies and faults', '1')
    .option(
      '--fault <spec>',
      'inject a fault, KIND[@OP]=RATE[xMAX], repeatable (e.g. 503@submit=0.05, model-error=0.01)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--retry-after <seconds>', 'Retry-After sent with injected 429s', '1')
    .option('--locked', 'start with the account locked (exhausted balance: submits answer 403)')
    .option(
      '--quirk <name>',
      `differ from the defaults as fal's protocol allows, repeatable: ${Object.keys(QUIRKS).join(', ')}`,
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .action(async (flags: EmulatorFlags) => (await import('../actions/emulator.js')).emulatorAction(io, exit, flags));
}
