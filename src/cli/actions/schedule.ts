import { parseMaxSpend } from '../../queue/batch-control.js';
import { durationOption, integerOption } from '../../config.js';
import { ConfigError, EXIT } from '../../errors.js';
import { displayUrl, isManifestUrl } from '../../manifest/fetch-manifest.js';
import { formatBytes } from '../../manifest/format-bytes.js';
import {
  addSchedule,
  listSchedules,
  parseEvery,
  removeSchedule,
  SCHEDULE_SETTINGS,
  TICK_HISTORY,
  type Schedule,
  type ScheduleSettings,
  type TickRecord,
} from '../../ops/schedules.js';
import { formatDuration } from '../../time.js';
import type { AddFlags, ListFlags } from '../commands/schedule.js';
import type { CliIo } from '../io.js';
import { withSession } from '../session.js';
import { overridesFrom, retentionFrom, type RawFlags } from '../shared-options.js';

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
    const overdue =
      schedule.next !== undefined && now - schedule.next > OVERDUE_MS
        ? ': overdue, is a `falbatch work` process running (same REDIS_URL, --prefix, and without --no-schedules)?'
        : '';
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

export async function scheduleAddAction(io: CliIo, exit: (code: number) => void, name: string, flags: AddFlags): Promise<void> {
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
          (isManifestUrl(schedule.manifest)
            ? `  downloaded at each tick: within ${formatDuration(schedule.fetch.timeoutMs)}, at most ${formatBytes(schedule.fetch.maxBytes)}, ${schedule.fetch.maxRedirects} redirects\n`
            : '') +
          'Ticks run in `falbatch work` processes (same REDIS_URL and --prefix); `falbatch schedule list` shows them.\n',
      );
    }
    exit(EXIT.ok);
  });
}

export async function scheduleListAction(io: CliIo, exit: (code: number) => void, flags: ListFlags): Promise<void> {
  await withSession(io, flags, {}, async ({ ctx, config }) => {
    const ticks = integerOption('--ticks', flags.ticks);
    if (ticks !== undefined && (ticks < 1 || ticks > TICK_HISTORY))
      throw new ConfigError(`Expected --ticks to be an integer from 1 to ${TICK_HISTORY}, got ${ticks}`);
    const schedules = await listSchedules(ctx, { ticks: ticks ?? (flags.json ? TICK_HISTORY : 5) });
    if (flags.json) io.stdout(`${JSON.stringify(schedules.map((schedule) => ({ ...schedule, manifest: shownManifest(schedule) })))}\n`);
    else if (schedules.length === 0) io.stdout(`no schedules in namespace ${config.prefix}\n`);
    else io.stdout(scheduleReport(schedules, ctx.clock.now(), ticks ?? 5));
    exit(EXIT.ok);
  });
}

export async function scheduleRemoveAction(io: CliIo, exit: (code: number) => void, name: string, flags: RawFlags): Promise<void> {
  await withSession(io, flags, {}, async ({ ctx }) => {
    await removeSchedule(ctx, name);
    io.stdout(`schedule ${name} removed (its batch is kept)\n`);
    exit(EXIT.ok);
  });
}
