import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { formatDuration } from '../../src/time.js';
import { FOREVER, formatRetention, parseRetention, retentionArg, retentionFromMeta } from '../../src/queue/retention.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;

describe('parseRetention', () => {
  it.each([
    ['30d', 30 * DAY],
    ['1.5d', 36 * HOUR],
    ['12h', 12 * HOUR],
    ['90m', 90 * 60 * SECOND],
    ['1s', SECOND],
    ['1500ms', 1500],
    [' 7D ', 7 * DAY],
    ['forever', FOREVER],
    ['Forever', FOREVER],
  ])('%s → %d ms', (text, ms) => {
    expect(parseRetention(text)).toBe(ms);
  });

  it.each([
    ['0', /at least 1s \(or forever\), got "0": to drop a batch now, use `falbatch prune --batch NAME`/],
    ['500ms', /at least 1s \(or forever\), got "500ms"$/],
    ['30 days', /a duration like 30d, 12h or 90m, or forever, got "30 days"/],
    ['-1d', /a duration like 30d/],
    ['3600', /a duration like 30d, 12h or 90m, or forever, got "3600"/],
    ['', /a duration like 30d/],
  ])('refuses %j', (text, message) => {
    expect(() => parseRetention(text)).toThrow(ConfigError);
    expect(() => parseRetention(text)).toThrow(message);
  });

  it('names the flag it reads', () => {
    expect(() => parseRetention('soon', '--keep')).toThrow('Expected --keep to be a duration');
  });
});

describe('formatRetention', () => {
  it.each([
    [30 * DAY, '30d'],
    [36 * HOUR, '36h'],
    [12 * HOUR, '12h'],
    [90 * 60 * SECOND, '90m'],
    [SECOND, '1s'],
    [1500, '1500ms'],
    [FOREVER, 'forever'],
  ])('%d ms → %s, which parses back', (ms, text) => {
    expect(formatRetention(ms)).toBe(text);
    expect(parseRetention(text)).toBe(ms);
  });

  it('time left, for people', () => {
    expect([
      formatDuration(29 * DAY + 23 * HOUR + 59 * 60 * SECOND, 'left'),
      formatDuration(5 * HOUR + 12 * 60 * SECOND, 'left'),
      formatDuration(245 * SECOND, 'left'),
      formatDuration(400, 'left'),
    ]).toEqual(['29d23h', '5h12m', '4m05s', '1s']);
  });
});

describe('retention in the batch meta and in scripts', () => {
  it('ms or forever, and nothing for a batch from before retention', () => {
    expect([retentionArg(DAY), retentionArg(FOREVER)]).toEqual(['86400000', 'forever']);
    expect([retentionFromMeta('86400000'), retentionFromMeta('forever'), retentionFromMeta(undefined), retentionFromMeta('')]).toEqual([
      DAY,
      FOREVER,
      undefined,
      undefined,
    ]);
  });
});

describe('config', () => {
  it('defaults: 30 days, and 7 days at least for an unfinished batch', () => {
    expect(resolveConfig({})).toMatchObject({ retentionMs: 30 * DAY, unfinishedRetentionMs: 7 * DAY });
  });

  it('takes forever and 1 s, and refuses less, or fractions', () => {
    expect(resolveConfig({}, { retentionMs: FOREVER }).retentionMs).toBe(FOREVER);
    expect(resolveConfig({}, { retentionMs: SECOND, unfinishedRetentionMs: 0 })).toMatchObject({ retentionMs: SECOND, unfinishedRetentionMs: 0 });
    expect(() => resolveConfig({}, { retentionMs: 999 })).toThrow(
      'Expected the retention to be a duration of at least 1s (e.g. 30d, 12h), or forever, got 999',
    );
    expect(() => resolveConfig({}, { retentionMs: 1000.5 })).toThrow(ConfigError);
    expect(() => resolveConfig({}, { unfinishedRetentionMs: -1 })).toThrow('Expected unfinishedRetentionMs to be an integer');
  });
});
