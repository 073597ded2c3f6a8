import type { FalbatchContext } from '../context.js';
import { ConfigError } from '../errors.js';
import type { Price } from '../fal/price.js';
import {
  CONTROL_FIELDS,
  controlFrom,
  holdOf,
  readBatchControl,
  settingFields,
  spendOf,
  type BatchControl,
  type BatchHold,
  type FalQueuePriority,
} from './batch-control.js';
import { wakeBatch } from './parked-jobs.js';
import { runTogether } from './run-together.js';

// A batch's settings (priority, fal's priority, spend cap) as the producer stores them, and its
// control and spend as they stand: what enqueue, run, status and the operator commands read.

/** A batch's control, its spend by its cap's price (when it has a cap), and what holds it now. */
export interface BatchControlState {
  control: BatchControl;
  /** Spend so far by the cap's price; undefined without a cap. */
  spent: number | undefined;
  hold: BatchHold | undefined;
}

/** Reads a batch's control and spend in one round trip (no check that the batch exists). */
export async function batchControlState(ctx: FalbatchContext, batch: string): Promise<BatchControlState> {
  const keys = ctx.keys.batch(batch);
  const replies = await runTogether(ctx.redis, (commands) => commands.hmget(keys.meta, ...CONTROL_FIELDS).hmget(keys.stats, 'billed', 'inference_ms'));
  const control = controlFrom((replies[0]?.[1] as Array<string | null>) ?? []);
  const [billed, inferenceMs] = (replies[1]?.[1] as Array<string | null>) ?? [];
  const spent = control.cap ? spendOf(control.cap.price, billed, inferenceMs) : undefined;
  return { control, spent, hold: holdOf(batch, control, spent) };
}

/** The message for a spend cap without a price to measure it. */
export function spendPriceMissing(): string {
  return "--max-spend needs a price to measure spend with: pass --price 0.002/call (or 0.0005/s), or set FAL_KEY so falbatch asks fal's pricing API for the endpoint's price";
}

/** A batch's settings, as `enqueue` and `run` take them (`--priority`, `--fal-priority`, `--max-spend`). */
export interface BatchSettings {
  /** 1 (served last) to 10 (served first, the default): see DEFAULT_PRIORITY. */
  priority?: number | undefined;
  /** fal's own queue priority for the batch's requests. */
  falPriority?: FalQueuePriority | undefined;
  /** The batch's spend cap, measured with `price`. */
  maxSpend?: number | undefined;
  /** The price the cap is measured with (needed with maxSpend). */
  price?: Price | undefined;
}

/** Throws when the settings cannot work (a spend cap without a price), before anything is written. */
export function checkBatchSettings(settings: BatchSettings): void {
  if (settings.maxSpend !== undefined && settings.price === undefined) throw new ConfigError(spendPriceMissing());
}

/**
 * Stores the settings given on the batch (those not given stay as they were: an enqueue without
 * `--priority` keeps the batch's), and returns its control after.
 */
export async function applyBatchSettings(ctx: FalbatchContext, batch: string, settings: BatchSettings): Promise<BatchControl> {
  checkBatchSettings(settings);
  const fields = settingFields({
    priority: settings.priority,
    falPriority: settings.falPriority,
    cap: settings.maxSpend !== undefined && settings.price !== undefined ? { amount: settings.maxSpend, price: settings.price } : undefined,
  });
  if (Object.keys(fields).length > 0) await ctx.redis.hset(ctx.keys.batch(batch).meta, fields);
  if (settings.maxSpend === undefined) return readBatchControl(ctx.redis, ctx.keys, batch);
  // A new cap may free rows parked by the old one (a `run` again with a higher --max-spend).
  const { control, hold } = await batchControlState(ctx, batch);
  if (hold === undefined) await wakeBatch(ctx, batch, 'parked');
  return control;
}
