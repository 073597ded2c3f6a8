import { ConfigError, FalProtocolError } from '../errors.js';
import type { Price } from './price.js';
import { createFalFetch } from './transport.js';

/**
 * `--price 0.0005/s`, `--price 0.002/call` (also `$0.0005/second`, `0.002/request`): what one
 * second of inference, or one call, costs. The currency is USD unless written after the number
 * (`0.002 EUR/call`).
 */
export function parsePrice(text: string): Price {
  const match = /^\s*\$?\s*(\d+(?:\.\d+)?(?:e-?\d+)?)\s*([A-Za-z]{3})?\s*\/\s*(s|sec|secs|second|seconds|call|calls|request|requests|req)\s*$/i.exec(text);
  if (!match) throw new ConfigError(`Expected --price to be a price per second or per call, like 0.0005/s or 0.002/call, got "${text}"`);
  const amount = Number(match[1]);
  if (!Number.isFinite(amount) || amount < 0) throw new ConfigError(`Expected --price to be a number ≥ 0 per unit, got "${text}"`);
  const unit = /^s|^sec/i.test(match[3] ?? '') ? 'second' : 'call';
  return { unit, amount, currency: (match[2] ?? 'USD').toUpperCase(), source: 'flag' };
}

export interface PricingOptions {
  credentials: string | undefined;
  baseUrl: string | undefined;
  callTimeoutMs: number;
  fetch?: typeof fetch;
  /** Gives up the question (the answer is no longer wanted). */
  signal?: AbortSignal | undefined;
}

/** fal's answer for an endpoint: a price falbatch can apply, or the unit it cannot (e.g. per megapixel). */
export type FalPrice = { ok: true; price: Price } | { ok: false; reason: string };

/**
 * Asks fal's pricing API (`GET https://api.fal.ai/v1/models/pricing?endpoint_id=…`) what an
 * endpoint costs. Per-second and per-request prices apply to a captioning batch; other units
 * (per image generated, per megapixel) do not say what a call costs here, and are reported as such.
 */
export async function fetchFalPrice(endpoint: string, options: PricingOptions): Promise<FalPrice> {
  const fetchImpl = createFalFetch({ baseUrl: options.baseUrl, callTimeoutMs: options.callTimeoutMs, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const url = `https://api.fal.ai/v1/models/pricing?endpoint_id=${encodeURIComponent(endpoint)}`;
  let body: unknown;
  try {
    const response = await fetchImpl(url, {
      headers: { accept: 'application/json', ...(options.credentials ? { authorization: `Key ${options.credentials}` } : {}) },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      body = await response.json();
    } catch {
      throw new FalProtocolError(`fal's pricing API answered something that is not JSON for ${endpoint}`);
    }
  } finally {
    // One question: its connection is not kept for a next one.
    fetchImpl.close();
  }
  const prices = (body as { prices?: unknown } | null)?.prices;
  if (!Array.isArray(prices)) throw new FalProtocolError(`fal's pricing API answered without a prices list for ${endpoint}`);
  const entry = prices.find(
    (p): p is Record<string, unknown> => typeof p === 'object' && p !== null && (p as Record<string, unknown>)['endpoint_id'] === endpoint,
  );
  if (!entry) return { ok: false, reason: `fal's pricing API has no price for ${endpoint}` };
  const amount = Number(entry['unit_price']);
  const unitWord = String(entry['unit'] ?? '').toLowerCase();
  const currency = typeof entry['currency'] === 'string' ? entry['currency'].toUpperCase() : 'USD';
  if (!Number.isFinite(amount) || amount < 0)
    return { ok: false, reason: `fal's pricing API gave ${endpoint} no usable price (${String(entry['unit_price'])})` };
  if (/second/.test(unitWord)) return { ok: true, price: { unit: 'second', amount, currency, source: 'fal' } };
  if (/^(request|call)s?$/.test(unitWord)) return { ok: true, price: { unit: 'call', amount, currency, source: 'fal' } };
  return { ok: false, reason: `fal prices ${endpoint} per ${unitWord || 'unit'}, which does not say what a call costs here; pass --price 0.002/call (or …/s)` };
}

/**
 * The price to estimate and report cost with: `--price` when given, else fal's pricing API for the
 * endpoint when falbatch can call fal (a key, or FAL_BASE_URL). Undefined, with why, otherwise:
 * a cost estimate never stops a batch.
 */
export async function resolvePrice(
  config: { price: Price | undefined; falKey: string | undefined; falBaseUrl: string | undefined; callTimeoutMs: number },
  endpoint: string,
  signal?: AbortSignal,
): Promise<{ price: Price | undefined; note: string | undefined }> {
  if (config.price) return { price: config.price, note: undefined };
  if (config.falKey === undefined && config.falBaseUrl === undefined)
    return { price: undefined, note: 'no price: pass --price 0.0005/s (or …/call), or set FAL_KEY to ask fal' };
  try {
    const answer = await fetchFalPrice(endpoint, { credentials: config.falKey, baseUrl: config.falBaseUrl, callTimeoutMs: config.callTimeoutMs, signal });
    return answer.ok ? { price: answer.price, note: undefined } : { price: undefined, note: answer.reason };
  } catch (error) {
    return { price: undefined, note: `fal's pricing API did not answer (${(error as Error).message}); pass --price to estimate the cost` };
  }
}
