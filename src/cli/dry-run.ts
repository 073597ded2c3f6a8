import type { FalbatchContext } from '../context.js';
import { EXIT } from '../errors.js';
import { resolvePrice } from '../fal/pricing.js';
import { forecastCost } from '../ops/estimate.js';
import { planEnqueue, type EnqueueOptions } from '../queue/enqueue.js';
import type { CliIo } from './io.js';
import { planReport, rowNotices } from './output.js';

/**
 * `--dry-run` of run and enqueue: reads the manifest (or folder), prints what would be called,
 * uploaded and paid, and changes nothing. Exits 2 when rows would be rejected, like enqueue.
 */
export async function dryRun(io: CliIo, ctx: FalbatchContext, options: EnqueueOptions, json: boolean): Promise<number> {
  const plan = await planEnqueue(ctx, options);
  const { price, note } = await resolvePrice(ctx.config, ctx.config.endpoint);
  const forecast = await forecastCost(ctx, plan.toCall, price);
  if (json) io.stdout(`${JSON.stringify({ ...plan, forecast, price: price ?? null }, null, 2)}\n`);
  else {
    io.stdout(planReport(plan, forecast, price, note));
    io.stderr(rowNotices({ ...plan, changed: [] }));
  }
  return plan.rejected > 0 ? EXIT.rowsFailed : EXIT.ok;
}
