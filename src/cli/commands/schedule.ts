import { parseMaxSpend } from '../../queue/batch-control.js';
import { Command } from 'commander';
import { durationOption, integerOption } from '../../config.js';
import { ConfigError, EXIT } from '../../errors.js';
import { displayUrl, isManifestUrl } from '../../manifest/fetch-manifest.js';
import { formatBytes } from '../../manifest/format-bytes.js';
import { addSchedule, listSchedules, parseEvery, removeSchedule, SCHEDULE_SETTINGS, TICK_HISTORY, type Schedule, type ScheduleSettings, type TickRecord } from '../../ops/schedules.js';
import { formatDuration } from '../../time.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import { overridesFrom, RETENTION_OPTION, retentionFrom, withConnectionOptions, withManifestReadOptions, withPriceOption, type RawFlags } from '../shared-options.js';

interface AddFlags extends RawFlags {
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

interface ListFlags extends RawFlags {
  json?: boolean;
  ticks?: string;
}

/** A URL's query and credentials may hold a token: never printed. */
function shownManifest(schedule: Schedule): string {
  return isManifestUrl(schedule.manifest) ? displayUrl(schedule.manifest) : schedule.manifest;
}

function timingOf(schedule: Schedule): string {
  if (schedule.cron !== undefined) return `cron "${schedule.cron}"${schedule.tz ? ` (${schedule.tz})` : ' (UTC)'}`;
  return schedule.everyMs !== undefined ? `every ${formatDuration(schedule.everyMs, 'exact')}` : 'no timing';
}

function when(ms: number | undefined, now: number): string {
  if (ms === undefined) return 'none';
  const delta = ms - now;
  return `${new Date(ms).toISOString()} (${delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`})`;
}

function tickLine(record: TickRecord): string {
  const counts =
    `${record.rows} rows read, ${record.added} added, ${record.present} already present, ${record.rejected} rejected` +
    (record.changed > 0 ? `, ${record.changed} changed` : '') +
    (record.deferred > 0 && !record.reason ? `, ${record.deferred} left for later ticks` : '') +
    (record.spend ? `, forecast ${record.spend.amount} ${record.spend.currency}` : '');
  if (record.outcome === 'missed') return `${new Date(record.tick).toISOString()} MISSED: ${record.reason ?? 'not run'}`;
  const head = `${new Date(record.tick).toISOString()} ${record.outcome.toUpperCase()} (${formatDuration(record.ms)})`;
  const late = record.missed
    ? `; ran ${formatDuration(record.at - record.tick)} late, in place of ${record.missed} missed tick${record.missed === 1 ? '' : 's'}`
    : '';
  if (record.outcome === 'ok') return `${head}: ${counts}${record.reason ? `; ${record.reason}` : ''}${late}`;
  return `${head}: ${record.reason ?? ''}${late}`;
}

/** How late a due tick may be before `schedule list` says no worker seems to serve it. */
const OVERDUE_MS = 30_000;

export function scheduleReport(schedules: Schedule[], now: number, ticks: number): string {
  const lines: string[] = [];
  for (const schedule of schedules) {
    // A tick long overdue means no work process takes it.
    const overdue = schedule.next !== undefined && now - schedule.next > OVERDUE_MS ? ': overdue, is a `falbatch work` process running (same REDIS_URL, --prefix, and without --no-schedules)?' : '';
    lines.push(`schedule ${schedule.name}: ${timingOf(schedule)}, next tick ${when(schedule.next, now)}${overdue}`);
    lines.push(`  manifest   ${shownManifest(schedule)} -> batch ${schedule.batch}`);
    const caps = [
      ...(schedule.maxRows !== undefined ? [`at most ${schedule.maxRows} new rows per tick`] : []),
      ...(schedule.maxSpend !== undefined ? [`at most ${schedule.maxSpend} forecast per tick`] : []),
    ];
    if (caps.length > 0) lines.push(`  caps       ${caps.join('; ')}`);
    const [last, ...earlier] = schedule.ticks.slice(0, Math.max(1, ticks));
    lines.push(`  last tick  ${last ? tickLine(last) : 'none yet'}`);
    for (const record of earlier) lines.push(`             ${tickLine(record)}`);
  }
  return `${lines.join('\n')}\n`;
}

function addCommand(io: CliIo, exit: (code: number) => void): Command {
  const command = withConnectionOptions(
    withPriceOption(
      withManifestReadOptions(
        new Command('add')
          .description('Add (or replace) a schedule: every tick enqueues the manifest into one batch, adding only rows not there yet; every `falbatch work` process serves the ticks')
          .argument('<name>', 'the schedule\'s name (letters, digits, ".", "_", "-"); also its batch unless --batch')
          .requiredOption('--manifest <path|url>', 'CSV manifest or images folder (every work process must read it at this path), or an http(s) URL downloaded at each tick')
          .option('--cron <expr>', 'when to tick: a cron expression (5 fields, or 6 with seconds first), e.g. "0 * * * *"')
          .option('--tz <zone>', 'time zone of --cron, e.g. Europe/Paris (default UTC)')
          .option('--every <duration>', 'tick at this interval instead (ms, s, m, h or d, at least 1s), e.g. 1h; the first tick comes at once'),
      ),
    )
      .option('--strict', 'a tick that meets a bad row enqueues nothing and is recorded as failed')
      .option('--max-rows <n>', 'enqueue at most N new rows per tick (the first ones in manifest order; the rest wait for the next ticks)')
      .option('--max-spend <amount>', "stop adding rows in a tick once their forecast cost would pass this (price's currency, USD for fal); needs a price: --price, or fal's pricing API")
      .option('--fetch-timeout <duration>', 'for a URL: longest the whole download may take (default 30s)')
      .option('--max-manifest-bytes <n>', 'for a URL: largest manifest downloaded; a larger one fails the tick (default 1073741824, 1 GiB)')
      .option('--max-redirects <n>', 'for a URL: redirects followed (default 5)')
      .option(...RETENTION_OPTION)
      .option('--json', 'print the schedule as JSON'),
  );
  const batch = command.options.find((option) => option.long === '--batch');
  if (batch) batch.description = 'batch every tick enqueues into (default: the schedule name)';
  return command.action(async (name: string, flags: AddFlags) => {
    await withSession(io, flags, {}, async ({ ctx }) => {
      const overrides = overridesFrom(flags);
      const settings: ScheduleSettings = {};
      for (const key of SCHEDULE_SETTINGS) if (overrides[key] !== undefined) (settings as Record<string, unknown>)[key] = overrides[key];
      const { schedule, created } = await addSchedule(ctx, {
        name,
        manifest: flags.manifest,
        cron: flags.cron,
        tz: flags.tz,
        everyMs: flags.every === undefined ? undefined : parseEvery(flags.every),
        batch: flags.batch,
        prompt: flags.prompt,
        strict: flags.strict,
        maxRows: integerOption('--max-rows', flags.maxRows),
        maxSpend: parseMaxSpend('--max-spend', flags.maxSpend),
        retentionMs: retentionFrom(flags),
        fetch: {
          timeoutMs: durationOption('--fetch-timeout', flags.fetchTimeout),
          maxBytes: integerOption('--max-manifest-bytes', flags.maxManifestBytes),
          maxRedirects: integerOption('--max-redirects', flags.maxRedirects),
        },
        settings,
      });
      if (flags.json) io.stdout(`${JSON.stringify({ ...schedule, manifest: shownManifest(schedule), created })}\n`);
      else {
        io.stdout(
          `schedule ${schedule.name} ${created ? 'added' : 'updated'}: ${timingOf(schedule)}, manifest ${shownManifest(schedule)} -> batch ${schedule.batch}; next tick ${when(schedule.next, ctx.clock.now())}\n` +
            (isManifestUrl(schedule.manifest) ? `  downloaded at each tick: within ${formatDuration(schedule.fetch.timeoutMs)}, at most ${formatBytes(schedule.fetch.maxBytes)}, ${schedule.fetch.maxRedirects} redirects\n` : '') +
            'Ticks run in `falbatch work` processes (same REDIS_URL and --prefix); `falbatch schedule list` shows them.\n',
        );
      }
      exit(EXIT.ok);
    });
  });
}

function listCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('list')
      .description("List the schedules: timing, manifest, batch, caps, next tick, and the last ticks' outcomes")
      .option('--ticks <n>', `tick records shown per schedule (default 5; --json: all kept, up to ${TICK_HISTORY})`)
      .option('--json', 'print the schedules as JSON'),
  ).action(async (flags: ListFlags) => {
    await withSession(io, flags, {}, async ({ ctx, config }) => {
      const ticks = integerOption('--ticks', flags.ticks);
      if (ticks !== undefined && (ticks < 1 || ticks > TICK_HISTORY)) throw new ConfigError(`Expected --ticks to be an integer from 1 to ${TICK_HISTORY}, got ${ticks}`);
      const schedules = await listSchedules(ctx, { ticks: ticks ?? (flags.json ? TICK_HISTORY : 5) });
      if (flags.json) io.stdout(`${JSON.stringify(schedules.map((schedule) => ({ ...schedule, manifest: shownManifest(schedule) })))}\n`);
      else if (schedules.length === 0) io.stdout(`no schedules in namespace ${config.prefix}\n`);
      else io.stdout(scheduleReport(schedules, ctx.clock.now(), ticks ?? 5));
      exit(EXIT.ok);
    });
  });
}

function removeCommand(io: CliIo, exit: (code: number) => void): Command {
  return withConnectionOptions(
    new Command('remove')
      .description('Remove a schedule: no tick starts after this (one running finishes); its batch is kept')
      .argument('<name>', 'the schedule to remove'),
  ).action(async (name: string, flags: RawFlags) => {
    await withSession(io, flags, {}, async ({ ctx }) => {
      await removeSchedule(ctx, name);
      io.stdout(`schedule ${name} removed (its batch is kept)\n`);
      exit(EXIT.ok);
    });
  });
}

export function scheduleCommand(io: CliIo, exit: (code: number) => void): Command {
  const command = new Command('schedule').description('Enqueue a manifest on a schedule (cron or interval), served by `falbatch work` processes: add, list, remove');
  for (const sub of [addCommand, listCommand, removeCommand]) {
    command.addCommand(sub(io, exit).exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }));
  }
  return command;
}
