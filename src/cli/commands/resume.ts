import { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { pausedReason, resumeQueue } from '../../ops/control.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import { withConnectionOptions, type RawFlags } from '../shared-options.js';

export function resumeCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('resume').description('Resume a queue that falbatch paused on an account-level fal error (bad key, no balance)'),
  ).action(async (flags: RawFlags) => {
    await withSession(io, flags, {}, async ({ ctx }) => {
      const reason = await pausedReason(ctx);
      await resumeQueue(ctx);
      io.stdout(reason === undefined ? 'the queue was not paused\n' : `resumed (it was paused: ${reason})\n`);
      exit(EXIT.ok);
    });
  });
}
