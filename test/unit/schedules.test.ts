import { describe, expect, it } from 'vitest';
import type { ManifestRow } from '../../src/manifest/validate-row.js';
import { createAdmission } from '../../src/ops/schedule-tick.js';
import { checkCron, missedTicks, MISSED_RECORDS, parseEvery } from '../../src/ops/schedules.js';
import { formatDuration } from '../../src/time.js';

function rows(count: number, endpoint = 'fal-ai/llava-next', from = 0): ManifestRow[] {
  return Array.from({ length: count }, (_, i) => ({
    line: from + i + 2,
    id: `r${from + i}`,
    key: `r${from + i}`,
    fingerprint: `fp${from + i}`,
    endpoint,
    input: {},
    outputField: 'output',
    imageDisplay: '',
    prompt: '',
    extras: [],
    localImages: [],
  }));
}

describe('--every', () => {
  it.each([
    ['1s', 1000],
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1500ms', 1500],
    ['1.5h', 5_400_000],
    [' 2m ', 120_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseEvery(text)).toBe(ms);
  });

  it.each([
    ['10', 'a duration with a unit'],
    ['5x', 'a duration with a unit'],
    ['', 'a duration with a unit'],
    ['-1s', 'a duration with a unit'],
    ['500ms', 'at least 1s'],
    ['0s', 'at least 1s'],
  ])('refuses %j, saying it expects %s', (text, expected) => {
    expect(() => parseEvery(text)).toThrow(expected);
  });

  it('formats an interval as --every takes it', () => {
    expect([86_400_000, 3_600_000, 5_400_000, 90_000, 1500].map((ms) => formatDuration(ms, 'exact'))).toEqual(['1d', '1h', '90m', '90s', '1500ms']);
  });
});

describe('--cron', () => {
  it.each([
    ['0 * * * *', '0 * * * *'],
    ['  30   2 * * 1-5 ', '30 2 * * 1-5'],
    ['*/10 * * * * *', '*/10 * * * * *'],
  ])('takes %j (5 or 6 fields) as %j', (text, expression) => {
    expect(checkCron(text)).toBe(expression);
  });

  it.each([
    ['5', 1],
    ['* * *', 3],
    ['0 0 * *', 4],
    ['0 0 0 * * * *', 7],
    ['@daily', 1],
    ['', 0],
  ])('refuses %j (%d fields), showing the form expected', (text, fields) => {
    expect(() => checkCron(text)).toThrow(
      `Expected --cron to be a cron expression of 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, e.g. "0 * * * *" for every hour, got "${text}" (${fields} field${fields === 1 ? '' : 's'})`,
    );
  });
});

describe('missed ticks: those due while a late tick waited to run', () => {
  const HOUR = 3_600_000;
  const due = Date.UTC(2026, 5, 1, 10);

  it('none when the tick ran on time (the next one is due one interval later)', () => {
    expect(missedTicks({ every: HOUR }, due, due + HOUR)).toEqual({ times: [], count: 0, more: false });
    expect(missedTicks({ pattern: '0 * * * *' }, due, due + HOUR)).toEqual({ times: [], count: 0, more: false });
  });

  it('an interval: every due time between the late tick and the next one scheduled', () => {
    // Due at 10:00, run at 13:30 (Redis was down): BullMQ schedules 14:00; 11:00, 12:00, 13:00 never run.
    expect(missedTicks({ every: HOUR }, due, due + 4 * HOUR)).toEqual({ times: [due + HOUR, due + 2 * HOUR, due + 3 * HOUR], count: 3, more: false });
    const day = missedTicks({ every: 60_000 }, due, due + 24 * HOUR);
    expect(day.count).toBe(24 * 60 - 1);
    expect(day.times).toHaveLength(MISSED_RECORDS);
    expect(day.times[0]).toBe(due + 60_000);
  });

  it('a cron expression, in its time zone', () => {
    // 02:30 in Paris every day (00:30 UTC in summer): due 1 June, the next scheduled 4 June.
    const paris = Date.UTC(2026, 5, 1, 0, 30);
    const day = 24 * HOUR;
    expect(missedTicks({ pattern: '30 2 * * *', tz: 'Europe/Paris' }, paris, paris + 3 * day)).toEqual({
      times: [paris + day, paris + 2 * day],
      count: 2,
      more: false,
    });
  });

  it('stops counting a cron schedule after 100 due times, saying there were more', () => {
    const walked = missedTicks({ pattern: '* * * * * *' }, due, due + 2 * HOUR);
    expect(walked).toMatchObject({ count: 100, more: true });
    expect(walked.times).toEqual(Array.from({ length: MISSED_RECORDS }, (_, i) => due + (i + 1) * 1000));
  });
});

describe('per-tick caps (createAdmission)', () => {
  it('--max-rows admits the first N rows in manifest order, across chunks, then none', async () => {
    const admission = createAdmission({ maxRows: 5 });
    expect(await admission.admit(rows(3))).toBe(3);
    expect(admission.capped).toBeUndefined();
    expect(await admission.admit(rows(3, undefined, 3))).toBe(2);
    expect(admission.capped).toBe('max-rows');
    expect(await admission.admit(rows(3, undefined, 6))).toBe(0);
    expect(admission.admitted).toBe(5);
  });

  it('exactly N new rows are all admitted, and nothing is capped', async () => {
    const admission = createAdmission({ maxRows: 4 });
    expect(await admission.admit(rows(4))).toBe(4);
    expect(admission.capped).toBeUndefined();
  });

  it('--max-spend admits rows while their forecast cost stays within the cap, then stops for good', async () => {
    const prices: Record<string, number> = { cheap: 0.1, dear: 0.7 };
    const asked: string[] = [];
    const admission = createAdmission({
      maxSpend: 1,
      costPerCall: async (endpoint) => {
        asked.push(endpoint);
        return { amount: prices[endpoint] ?? NaN, currency: 'USD' };
      },
    });
    // 0.1 × 3 = 0.3; + 0.7 = 1.0 (within, despite binary fractions); the next 0.1 would pass 1.
    expect(await admission.admit([...rows(3, 'cheap'), ...rows(1, 'dear', 3), ...rows(2, 'cheap', 4)])).toBe(4);
    expect(admission.capped).toBe('max-spend');
    expect(admission.spend?.amount).toBeCloseTo(1, 9);
    expect(admission.spend?.currency).toBe('USD');
    // Stopped: even a row that would fit is not admitted (a tick adds the first rows that fit, no others).
    expect(await admission.admit(rows(1, 'cheap', 10))).toBe(0);
    expect(new Set(asked)).toEqual(new Set(['cheap', 'dear']));
  });

  it('rows whose answer is already paid for (the ledger) cost nothing', async () => {
    const admission = createAdmission({
      maxSpend: 0.25,
      costPerCall: async () => ({ amount: 0.1, currency: 'USD' }),
      alreadyPaid: async (batch) => batch.map((row) => row.key === 'r0' || row.key === 'r1'),
    });
    // r0, r1 free; r2, r3 cost 0.2; r4 would make 0.3.
    expect(await admission.admit(rows(6))).toBe(4);
    expect(admission.spend?.amount).toBeCloseTo(0.2, 9);
  });

  it('both caps: whichever stops first', async () => {
    const admission = createAdmission({ maxRows: 10, maxSpend: 0.05, costPerCall: async () => ({ amount: 0.02, currency: 'USD' }) });
    expect(await admission.admit(rows(5))).toBe(2);
    expect(admission.capped).toBe('max-spend');
  });

  it('a cost that cannot be forecast fails the admission with its reason', async () => {
    const admission = createAdmission({
      maxSpend: 1,
      costPerCall: async () => {
        throw new Error('no price for fal-ai/llava-next');
      },
    });
    await expect(admission.admit(rows(1))).rejects.toThrow('no price for fal-ai/llava-next');
  });

  it('refuses to add costs in two currencies', async () => {
    const admission = createAdmission({ maxSpend: 5, costPerCall: async (endpoint) => ({ amount: 1, currency: endpoint === 'a' ? 'USD' : 'EUR' }) });
    await expect(admission.admit([...rows(1, 'a'), ...rows(1, 'b', 1)])).rejects.toThrow('priced in USD and EUR');
  });
});
