import { describe, expect, it } from 'vitest';
import { parsePrice } from '../../src/fal/pricing.js';
import { costOf } from '../../src/fal/price.js';

describe('--price', () => {
  it.each([
    ['0.0005/s', { unit: 'second', amount: 0.0005, currency: 'USD' }],
    ['$0.0005/second', { unit: 'second', amount: 0.0005, currency: 'USD' }],
    ['0.002/call', { unit: 'call', amount: 0.002, currency: 'USD' }],
    ['0.002 eur/request', { unit: 'call', amount: 0.002, currency: 'EUR' }],
    [' 1e-4 / secs ', { unit: 'second', amount: 0.0001, currency: 'USD' }],
  ])('%j reads as %j', (text, expected) => {
    expect(parsePrice(text)).toEqual({ ...expected, source: 'flag' });
  });

  it.each(['0.002', '/s', '-1/s', '0.002/image', 'abc/call'])('refuses %j, saying what it takes', (text) => {
    expect(() => parsePrice(text)).toThrow(`Expected --price to be a price per second or per call, like 0.0005/s or 0.002/call, got "${text}"`);
  });

  it('costs per second of inference, or per call', () => {
    expect(costOf(parsePrice('0.5/s'), { calls: 10, inferenceSeconds: 3 })).toBe(1.5);
    expect(costOf(parsePrice('0.5/call'), { calls: 10, inferenceSeconds: 3 })).toBe(5);
  });
});
