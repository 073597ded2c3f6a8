/**
 * fal's pricing API as the emulator serves it: `GET https://api.fal.ai/v1/models/pricing?endpoint_id=…`
 * (repeatable) → `{prices: [{endpoint_id, unit_price, unit, currency}]}`. The prices are the
 * emulator's own, made up: set them with the `prices` option.
 */
export interface EmulatedPrice {
  unit_price: number;
  /** fal's unit words, e.g. `second`, `request`, `image`. */
  unit: string;
  currency: string;
}

export const API_HOST = 'api.fal.ai';

/** The emulator's default price list (per second of inference, like GPU-billed endpoints). */
export const DEFAULT_PRICES: Readonly<Record<string, EmulatedPrice>> = {
  'fal-ai/llava-next': { unit_price: 0.0005, unit: 'second', currency: 'USD' },
  'fal-ai/mantis-llava-7b-v11': { unit_price: 0.0003, unit: 'second', currency: 'USD' },
};

/** The pricing API's answer for the endpoint ids asked for; unknown ids are left out, as fal does. */
export function pricingAnswer(
  query: URLSearchParams,
  prices: Readonly<Record<string, EmulatedPrice>>,
): { prices: Array<EmulatedPrice & { endpoint_id: string }> } {
  const asked = query
    .getAll('endpoint_id')
    .flatMap((value) => value.split(','))
    .map((id) => id.trim())
    .filter(Boolean);
  return { prices: asked.flatMap((id) => (prices[id] ? [{ endpoint_id: id, ...prices[id] }] : [])) };
}
