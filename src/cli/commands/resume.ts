import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { withConnectionOptions, withPriceOption, type RawFlags } from '../shared-options.js';

export interface ResumeFlags extends RawFlags {
  batch?: string;
  maxSpend?: string;
  json?: boolean;
}

export function resumeCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    withPriceOption(
      new Command('resume')
        .description(
          'Let a paused, capped or cancelled batch go on (--batch), or the whole queue after `falbatch pause` or an account-level fal error (bad key, no balance)',
        )
        .option('--batch <name>', 'only this batch: lifts its pause or cancel, and puts its parked rows back in the queue')
        .option('--max-spend <usd>', "with --batch: the batch's new spend cap (none: no cap)")
        .option('--json', 'print the summary as JSON'),
    ),
  ).action(async (flags: ResumeFlags) => (await import('../actions/resume.js')).resumeAction(io, exit, flags));
}
