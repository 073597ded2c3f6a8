import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parseEvery } from '../../src/ops/schedules.js';
import { formatRetention, parseRetention } from '../../src/queue/retention.js';
import { DAY, HOUR, MINUTE, SECOND, formatDuration, parseDuration, parseDurationRange } from '../../src/time.js';

/**
 * Every form each reader of durations accepted and each writer printed before they were made one
 * parser and one formatter (recorded against the separate ones): config timeouts and the emulator's
 * latency, --retention, --every; messages and progress, time left, retentions and intervals.
 */
const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

const read = {
  config: (text: string) => parseDuration(text),
  retention: (text: string) => parseRetention(text),
  every: (text: string) => parseEvery(text),
};
const print = {
  elapsed: (ms: number) => formatDuration(ms),
  left: (ms: number) => formatDuration(ms, 'left'),
  retention: (ms: number) => formatRetention(ms),
  every: (ms: number) => formatDuration(ms, 'exact'),
};

describe('reading durations', () => {
  it.each<[keyof typeof read, string, number]>([
    ['config', '800ms', 800],
    ['config', '1.5s', 1500],
    ['config', '2m', 2 * M],
    ['config', '1h', H],
    ['config', '1.25h', 75 * M],
    ['config', '250', 250],
    ['config', '0', 0],
    ['config', '0.5', 1],
    ['config', '1.0005s', 1001],
    ['config', ' 3 s ', 3 * S],
    ['config', '0s', 0],
    ['retention', '30d', 30 * D],
    ['retention', '1.5d', 36 * H],
    ['retention', '1 d', D],
    ['retention', ' 7D ', 7 * D],
    ['retention', '12h', 12 * H],
    ['retention', '12H', 12 * H],
    ['retention', '90m', 90 * M],
    ['retention', '90M', 90 * M],
    ['retention', '500s', 500 * S],
    ['retention', '1s', S],
    ['retention', '1500ms', 1500],
    ['retention', '1500MS', 1500],
    ['retention', 'forever', Number.POSITIVE_INFINITY],
    ['retention', ' FOREVER ', Number.POSITIVE_INFINITY],
    ['every', '90s', 90 * S],
    ['every', '15m', 15 * M],
    ['every', '1h', H],
    ['every', '1d', D],
    ['every', '1.5d', 36 * H],
    ['every', '1000ms', S],
    ['every', '1.5h', 90 * M],
    ['every', ' 2 m ', 2 * M],
  ])('%s reads %j as %d ms', (reader, text, ms) => {
    expect(read[reader](text)).toBe(ms);
  });

  it.each<['config', string]>([
    ['config', '1d'],
    ['config', '1S'],
    ['config', '1H'],
    ['config', '-1s'],
    ['config', '1h 2m'],
    ['config', ''],
    ['config', 's'],
    ['config', '.5s'],
    ['config', '1.s'],
    ['config', '1e3'],
    ['config', '1sec'],
    ['config', 'forever'],
  ])('%s does not read %j', (reader, text) => {
    expect(read[reader](text)).toBeUndefined();
  });

  it.each<['retention' | 'every', string, string]>([
    ['retention', '30', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "30"'],
    ['retention', '0.0', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "0.0"'],
    ['retention', '30 days', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "30 days"'],
    ['retention', '1w', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "1w"'],
    ['retention', '-1d', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "-1d"'],
    ['retention', 'never', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "never"'],
    ['retention', '', 'Expected --retention to be a duration like 30d, 12h or 90m, or forever, got ""'],
    ['retention', '0', 'Expected --retention to be at least 1s (or forever), got "0": to drop a batch now, use `falbatch prune --batch NAME`'],
    ['retention', '0s', 'Expected --retention to be at least 1s (or forever), got "0s": to drop a batch now, use `falbatch prune --batch NAME`'],
    ['retention', '0d', 'Expected --retention to be at least 1s (or forever), got "0d": to drop a batch now, use `falbatch prune --batch NAME`'],
    ['retention', '500ms', 'Expected --retention to be at least 1s (or forever), got "500ms"'],
    ['every', '10', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "10"'],
    ['every', '15M', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "15M"'],
    ['every', '1D', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "1D"'],
    ['every', '1w', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "1w"'],
    ['every', '-1s', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "-1s"'],
    ['every', 'forever', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "forever"'],
    ['every', '', 'Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got ""'],
    ['every', '500ms', 'Expected --every to be at least 1s, got "500ms"'],
    ['every', '0s', 'Expected --every to be at least 1s, got "0s"'],
    ['every', `1${'0'.repeat(400)}s`, `Expected --every to be a duration with a unit (ms, s, m, h or d), like 15m or 1d, got "1${'0'.repeat(400)}s"`],
    ['retention', `1${'0'.repeat(400)}d`, `Expected --retention to be a duration like 30d, 12h or 90m, or forever, got "1${'0'.repeat(400)}d"`],
  ])('%s refuses %j: %s', (reader, text, message) => {
    let thrown: unknown;
    try {
      read[reader](text);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toBe(message);
  });

  it.each<[string, { min: number; max: number } | undefined]>([
    ['800ms', { min: 800, max: 800 }],
    ['800', { min: 800, max: 800 }],
    ['500..1500ms', { min: 500, max: 1500 }],
    ['500..1500', { min: 500, max: 1500 }],
    ['1..2s', { min: S, max: 2 * S }],
    ['1 ..2 s', { min: S, max: 2 * S }],
    ['500ms..2s', { min: 500, max: 2 * S }],
    ['1.5..2m', { min: 90 * S, max: 2 * M }],
    ['1s..1s', { min: S, max: S }],
    ['2s..1s', undefined],
    ['1s..2', undefined],
    ['1..2..3', undefined],
    ['..2s', undefined],
    ['1..', undefined],
    ['1d..2d', undefined],
    ['1..2d', undefined],
    ['1x..2s', undefined],
  ])('the emulator latency %j is %j', (text, range) => {
    expect(parseDurationRange(text)).toEqual(range);
  });
});

describe('one unit table', () => {
  it('is the one in time.ts, days included', () => {
    expect([SECOND, MINUTE, HOUR, DAY]).toEqual([S, M, H, D]);
  });

  it('reads back what it prints exactly, with the grammar of retentions and intervals', () => {
    for (const ms of [1500, S, 90 * S, 90 * M, 36 * H, 30 * D]) {
      expect(parseDuration(formatDuration(ms, 'exact'), { days: true, bareMilliseconds: false })).toBe(ms);
    }
  });
});

describe('printing durations', () => {
  it.each<[keyof typeof print, number, string]>([
    ['elapsed', 0, '0ms'],
    ['elapsed', 350, '350ms'],
    ['elapsed', 999.4, '999ms'],
    ['elapsed', 999.6, '1000ms'],
    ['elapsed', -5, '-5ms'],
    ['elapsed', S, '1.0s'],
    ['elapsed', 1234, '1.2s'],
    ['elapsed', 9999, '10.0s'],
    ['elapsed', 10 * S, '10s'],
    ['elapsed', 45_400, '45s'],
    ['elapsed', 59_600, '60s'],
    ['elapsed', M, '1m00s'],
    ['elapsed', 245 * S, '4m05s'],
    ['elapsed', 245_600, '4m06s'],
    ['elapsed', 299_600, '4m60s'],
    ['elapsed', 59 * M + 59 * S, '59m59s'],
    ['elapsed', H, '1h00m'],
    ['elapsed', H + 5 * M + 59 * S, '1h05m'],
    ['elapsed', 96 * H, '96h00m'],
    ['elapsed', 30 * D + 90 * M, '721h30m'],
    ['left', -5 * S, '0s'],
    ['left', 0, '0s'],
    ['left', 400, '1s'],
    ['left', 40 * S, '40s'],
    ['left', 59_001, '60s'],
    ['left', M, '1m00s'],
    ['left', 245 * S, '4m05s'],
    ['left', 245_999, '4m05s'],
    ['left', H, '1h00m'],
    ['left', 5 * H + 12 * M + 59 * S, '5h12m'],
    ['left', D, '1d00h'],
    ['left', 96 * H, '4d00h'],
    ['left', 29 * D + 23 * H + 59 * M, '29d23h'],
    ['left', 400 * D, '400d00h'],
    ['retention', 30 * D, '30d'],
    ['retention', 7 * D, '7d'],
    ['retention', 36 * H, '36h'],
    ['retention', 12 * H, '12h'],
    ['retention', 90 * M, '90m'],
    ['retention', 500 * S, '500s'],
    ['retention', S, '1s'],
    ['retention', 1500, '1500ms'],
    ['retention', 0, '0ms'],
    ['retention', Number.POSITIVE_INFINITY, 'forever'],
    ['every', D, '1d'],
    ['every', 14 * D, '14d'],
    ['every', H, '1h'],
    ['every', 90 * M, '90m'],
    ['every', 90 * S, '90s'],
    ['every', S, '1s'],
    ['every', 1500, '1500ms'],
  ])('%s prints %d ms as %j', (printer, ms, text) => {
    expect(print[printer](ms)).toBe(text);
  });
});
