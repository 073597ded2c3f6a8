import type { RedisClient } from './connection.js';
import { ConfigError } from '../errors.js';
import { costOf, type Price } from '../fal/price.js';
import type { KeyLayout } from './keys.js';

/**
 * What an operator (or the producer's flags) decides for a batch, kept in its meta hash beside
 * what enqueue writes (so a batch Redis lost takes its settings with it):
 *
 *   ctl_state     `paused` | `cancelled` (absent: running)
 *   ctl_reason    why, for status (`paused by an operator`)
 *   ctl_at        when (ms)
 *   priority      1..10, see BatchPriority
 *   fal_priority  `low` | `normal`: fal's own queue priority for the batch's requests
 *   max_spend     the spend cap, in spend_price's currency
 *   spend_price   the Price (JSON) the cap is measured with, fixed when the cap is set
 */
export interface BatchControl {
  state: 'running' | 'paused' | 'cancelled';
  /** Why it is paused or cancelled. */
  reason: string | undefined;
  /** When it was paused or cancelled (ms). */
  at: number | undefined;
  priority: number;
  falPriority: FalQueuePriority;
  /** The spend cap and the price it is measured with; undefined without `--max-spend`. */
  cap: SpendCap | undefined;
}

export interface SpendCap {
  /** In `price.currency`. */
  amount: number;
  price: Price;
}

/** fal's queue priority (X-Fal-Queue-Priority): `low` lets an account's interactive traffic pass first. */
export type FalQueuePriority = 'low' | 'normal';

/**
 * Batch priority, 1 (served last) to 10 (served first, the default). A row of a batch is taken
 * only when no row of a higher-priority batch waits; within a priority, first in, first out.
 * The default is the top because BullMQ serves jobs without a priority before every prioritized
 * one: batches that never say keep the queue's fastest path, and backfills are demoted.
 */
export const MAX_PRIORITY = 10;
export const MIN_PRIORITY = 1;
export const DEFAULT_PRIORITY = MAX_PRIORITY;

/** Why a batch's rows are not dispatched. */
export const OPERATOR_PAUSE = 'paused by an operator';
export const OPERATOR_CANCEL = 'cancelled by an operator';

/**
 * How long a held row (paused batch, spend cap reached) is parked in BullMQ's delayed set: out of
 * the wait list, so workers never touch it again until `resume` promotes it. A year: a row still
 * parked then comes back once, and is parked again if its batch is still held. (BullMQ scores
 * delayed jobs as ms × 4096: exact in a double until 2039.)
 */
export const PARK_MS = 365 * 24 * 3600 * 1000;
/** Delayed jobs due later than now + this are parked ones (retry backoffs and re-reads are minutes). */
export const PARKED_BEYOND_MS = 30 * 24 * 3600 * 1000;

/** BullMQ job priority for a batch priority: 0 (none: the wait list, served first) for the top, 1..9 below it. */
export function bullPriority(priority: number): number {
  return priority >= MAX_PRIORITY ? 0 : MAX_PRIORITY - priority;
}

export function parsePriority(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || value < MIN_PRIORITY || value > MAX_PRIORITY) {
    throw new ConfigError(
      `Expected ${flag} to be an integer from ${MIN_PRIORITY} (served last) to ${MAX_PRIORITY} (served first, the default), got "${text}". Give backfills a lower priority, e.g. ${flag} 1.`,
    );
  }
  return value;
}

export function parseFalPriority(flag: string, text: string | undefined): FalQueuePriority | undefined {
  if (text === undefined) return undefined;
  if (text !== 'low' && text !== 'normal') throw new ConfigError(`Expected ${flag} to be low or normal (fal's queue priority), got "${text}"`);
  return text;
}

export function parseMaxSpend(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const match = /^\s*\$?\s*(\d+(?:\.\d+)?)\s*(?:USD)?\s*$/i.exec(text);
  const value = Number(match?.[1]);
  if (!match || !Number.isFinite(value) || value <= 0)
    throw new ConfigError(`Expected ${flag} to be an amount > 0 (in the price's currency, USD for fal), like 5 or 12.50, got "${text}"`);
  return value;
}

const FIELDS = ['ctl_state', 'ctl_reason', 'ctl_at', 'priority', 'fal_priority', 'max_spend', 'spend_price'] as const;

/** A batch's control from the values of its meta fields (FIELDS order). */
export function controlFrom(values: ReadonlyArray<string | null | undefined>): BatchControl {
  const [state, reason, at, priority, falPriority, maxSpend, spendPrice] = values;
  let price: Price | undefined;
  try {
    price = spendPrice ? (JSON.parse(spendPrice) as Price) : undefined;
  } catch {
    price = undefined;
  }
  const amount = Number(maxSpend);
  return {
    state: state === 'paused' || state === 'cancelled' ? state : 'running',
    reason: reason ?? undefined,
    at: at ? Number(at) : undefined,
    priority: priority ? Number(priority) : DEFAULT_PRIORITY,
    falPriority: falPriority === 'low' ? 'low' : 'normal',
    cap: maxSpend && Number.isFinite(amount) && price ? { amount, price } : undefined,
  };
}

export async function readBatchControl(redis: RedisClient, keys: KeyLayout, batch: string): Promise<BatchControl> {
  return controlFrom(await redis.hmget(keys.batch(batch).meta, ...FIELDS));
}

/** The meta fields that hold a batch's control, to read with HMGET (controlFrom takes the values in this order). */
export const CONTROL_FIELDS: readonly string[] = FIELDS;

/** Meta fields for the settings given (the others are left as they are). */
export function settingFields(settings: {
  priority?: number | undefined;
  falPriority?: FalQueuePriority | undefined;
  cap?: SpendCap | undefined;
}): Record<string, string> {
  const fields: Record<string, string> = {};
  if (settings.priority !== undefined) fields['priority'] = String(settings.priority);
  if (settings.falPriority !== undefined) fields['fal_priority'] = settings.falPriority;
  if (settings.cap !== undefined) {
    fields['max_spend'] = String(settings.cap.amount);
    fields['spend_price'] = JSON.stringify(settings.cap.price);
  }
  return fields;
}

/** A batch's spend so far by its cap's price, from its stats hash's `billed` and `inference_ms`. */
export function spendOf(price: Price, billed: string | null | undefined, inferenceMs: string | null | undefined): number {
  return costOf(price, { calls: Number(billed ?? 0) || 0, inferenceSeconds: (Number(inferenceMs ?? 0) || 0) / 1000 });
}

/** `1.02 of 1.00 USD`: cents for caps from 1, more digits below (per-second prices make small sums). */
export function formatSpend(spent: number, cap: SpendCap): string {
  const digits = cap.amount >= 1 ? 2 : 4;
  return `${spent.toFixed(digits)} of ${formatCap(cap)}`;
}

/** `5.00 USD`. */
export function formatCap(cap: SpendCap): string {
  return `${cap.amount.toFixed(cap.amount >= 1 ? 2 : 4)} ${cap.price.currency}`;
}

export function spendCapReason(batch: string, spent: number, cap: SpendCap): string {
  return `spend cap reached: ${formatSpend(spent, cap)}; raise it with \`falbatch resume --batch ${batch} --max-spend N\``;
}

/** Why a batch's rows are held, if they are: `paused` (an operator) or `capped` (its spend reached the cap). */
export type BatchHold = { kind: 'paused'; reason: string } | { kind: 'capped'; reason: string } | { kind: 'cancelled'; reason: string };

export function holdOf(batch: string, control: BatchControl, spent: number | undefined): BatchHold | undefined {
  if (control.state === 'cancelled') return { kind: 'cancelled', reason: control.reason ?? OPERATOR_CANCEL };
  if (control.state === 'paused') return { kind: 'paused', reason: control.reason ?? OPERATOR_PAUSE };
  if (control.cap && spent !== undefined && spent >= control.cap.amount) return { kind: 'capped', reason: spendCapReason(batch, spent, control.cap) };
  return undefined;
}
