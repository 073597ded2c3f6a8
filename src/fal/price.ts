/**
 * What a fal endpoint costs: per second of inference (fal's `metrics.inference_time`, what
 * per-second endpoints bill) or per call. From `--price 0.0005/s` / `--price 0.002/call`, or from
 * fal's pricing API.
 */
export interface Price {
  unit: 'second' | 'call';
  /** Per unit, in `currency`. */
  amount: number;
  currency: string;
  /** Where the price came from: the user's flag, or fal's pricing API for the endpoint. */
  source: 'flag' | 'fal';
}

/** Cost of `calls` calls that billed `inferenceSeconds` seconds in total. */
export function costOf(price: Price, usage: { calls: number; inferenceSeconds: number }): number {
  return price.unit === 'call' ? price.amount * usage.calls : price.amount * usage.inferenceSeconds;
}
