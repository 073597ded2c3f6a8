import { Command } from 'commander';
import { resolveConfig, secretsOf } from '../../config.js';
import { openContext } from '../../context.js';
import { EXIT } from '../../errors.js';
import { createLogger } from '../../log.js';
import { pausedReason, resumeQueue } from '../../ops/control.js';
import type { CliIo } from '../io.js';
import { logSettings, overridesFrom, withConnectionOptions, type RawFlags } from '../shared-options.js';

export function resumeCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('resume').description('Resume a queue that falbatch paused on an account-level fal error (bad key, no balance)'),
  ).action(async (flags: RawFlags) => {
    const config = resolveConfig(io.env, overridesFrom(flags));
    const log = createLogger({ ...logSettings(flags), secrets: secretsOf(config), write: io.stderr });
    const ctx = await openContext(config, { log });
    try {
      const reason = await pausedReason(ctx);
      await resumeQueue(ctx);
      io.stdout(reason === undefined ? 'the queue was not paused\n' : `resumed (it was paused: ${reason})\n`);
      exit(EXIT.ok);
    } finally {
      await ctx.close();
    }
  });
}
