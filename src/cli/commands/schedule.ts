import { Command } from 'commander';
import { TICK_HISTORY } from '../../ops/tick-history.js';
import type { CliIo } from '../io.js';
import { RETENTION_OPTION, withConnectionOptions, withManifestReadOptions, withPriceOption, type RawFlags } from '../shared-options.js';

export interface AddFlags extends RawFlags {
  retention?: string;
  manifest: string;
  cron?: string;
  tz?: string;
  every?: string;
  batch?: string;
  prompt?: string;
  strict?: boolean;
  maxRows?: string;
  maxSpend?: string;
  fetchTimeout?: string;
  maxManifestBytes?: string;
  maxRedirects?: string;
  json?: boolean;
}

export interface ListFlags extends RawFlags {
  json?: boolean;
  ticks?: string;
}

function addCommand(io: CliIo, exit: (code: number) => void): Command {
  const command = withConnectionOptions(
    withPriceOption(
      withManifestReadOptions(
        new Command('add')
          .description(
            'Add (or replace) a schedule: every tick enqueues the manifest into one batch, adding only rows not there yet; every `falbatch work` process serves the ticks',
          )
          .argument('<name>', 'the schedule\'s name (letters, digits, ".", "_", "-"); also its batch unless --batch')
          .requiredOption(
            '--manifest <path|url>',
            'CSV manifest or images folder (every work process must read it at this path), or an http(s) URL downloaded at each tick',
          )
          .option('--cron <expr>', 'when to tick: a cron expression (5 fields, or 6 with seconds first), e.g. "0 * * * *"')
          .option('--tz <zone>', 'time zone of --cron, e.g. Europe/Paris (default UTC)')
          .option('--every <duration>', 'tick at this interval instead (ms, s, m, h or d, at least 1s), e.g. 1h; the first tick comes at once'),
      ),
    )
      .option('--strict', 'a tick that meets a bad row enqueues nothing and is recorded as failed')
      .option('--max-rows <n>', 'enqueue at most N new rows per tick (the first ones in manifest order; the rest wait for the next ticks)')
      .option(
        '--max-spend <amount>',
        "stop adding rows in a tick once their forecast cost would pass this (price's currency, USD for fal); needs a price: --price, or fal's pricing API",
      )
      .option('--fetch-timeout <duration>', 'for a URL: longest the whole download may take (default 30s)')
      .option('--max-manifest-bytes <n>', 'for a URL: largest manifest downloaded; a larger one fails the tick (default 1073741824, 1 GiB)')
      .option('--max-redirects <n>', 'for a URL: redirects followed (default 5)')
      .option(...RETENTION_OPTION)
      .option('--json', 'print the schedule as JSON'),
  );
  const batch = command.options.find((option) => option.long === '--batch');
  if (batch) batch.description = 'batch every tick enqueues into (default: the schedule name)';
  return command.action(async (name: string, flags: AddFlags) => (await import('../actions/schedule.js')).scheduleAddAction(io, exit, name, flags));
}

function listCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('list')
      .description("List the schedules: timing, manifest, batch, caps, next tick, and the last ticks' outcomes")
      .option('--ticks <n>', `tick records shown per schedule (default 5; --json: all kept, up to ${TICK_HISTORY})`)
      .option('--json', 'print the schedules as JSON'),
  ).action(async (flags: ListFlags) => (await import('../actions/schedule.js')).scheduleListAction(io, exit, flags));
}

function removeCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('remove')
      .description('Remove a schedule: no tick starts after this (one running finishes); its batch is kept')
      .argument('<name>', 'the schedule to remove'),
  ).action(async (name: string, flags: RawFlags) => (await import('../actions/schedule.js')).scheduleRemoveAction(io, exit, name, flags));
}

export function scheduleCommand(io: CliIo, exit: (code: number) => void): Command {
  const command = new Command('schedule').description(
    'Enqueue a manifest on a schedule (cron or interval), served by `falbatch work` processes: add, list, remove',
  );
  for (const sub of [addCommand, listCommand, removeCommand]) {
    command.addCommand(sub(io, exit).exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }));
  }
  return command;
}
