import { describe, expect, it } from 'vitest';
import { bullPriority, controlFrom, formatSpend, holdOf, parseFalPriority, parseMaxSpend, parsePriority, spendOf } from '../../src/queue/batch-control.js';
import type { Price } from '../../src/fal/price.js';

const perCall: Price = { unit: 'call', amount: 1, currency: 'USD', source: 'flag' };
const perSecond: Price = { unit: 'second', amount: 0.0005, currency: 'USD', source: 'fal' };

describe('batch control', () => {
  it('maps the priority scale onto BullMQ: the top (default) has none, lower ones are served after, in order', () => {
    expect([10, 9, 5, 1].map(bullPriority)).toEqual([0, 1, 5, 9]);
  });

  it('parses and checks the flags, naming them', () => {
    expect(parsePriority('--priority', '3')).toBe(3);
    expect(parsePriority('--priority', undefined)).toBeUndefined();
    for (const bad of ['0', '11', '2.5', 'high', '-1'])
      expect(() => parsePriority('--priority', bad)).toThrow(/--priority to be an integer from 1 \(served last\) to 10/);
    expect(parseFalPriority('--fal-priority', 'low')).toBe('low');
    expect(() => parseFalPriority('--fal-priority', 'high')).toThrow('Expected --fal-priority to be low or normal');
    expect(parseMaxSpend('--max-spend', '$12.50')).toBe(12.5);
    expect(parseMaxSpend('--max-spend', '5 USD')).toBe(5);
    for (const bad of ['0', '-3', 'lots', '']) expect(() => parseMaxSpend('--max-spend', bad)).toThrow(/--max-spend to be an amount > 0/);
  });

  it('reads the stored fields, with defaults', () => {
    expect(controlFrom([])).toEqual({ state: 'running', reason: undefined, at: undefined, priority: 10, falPriority: 'normal', cap: undefined });
    expect(controlFrom(['paused', 'paused by an operator', '17', '2', 'low', '5', JSON.stringify(perCall)])).toEqual({
      state: 'paused',
      reason: 'paused by an operator',
      at: 17,
      priority: 2,
      falPriority: 'low',
      cap: { amount: 5, price: perCall },
    });
  });

  it('measures spend by the cap price, and holds a batch from the moment its spend reaches the cap', () => {
    expect(spendOf(perCall, '6', '1234')).toBe(6);
    expect(spendOf(perSecond, '6', '2000')).toBeCloseTo(0.001);
    const control = controlFrom([null, null, null, null, null, '5', JSON.stringify(perCall)]);
    expect(holdOf('b', control, 4)).toBeUndefined();
    expect(holdOf('b', control, 5)).toEqual({
      kind: 'capped',
      reason: 'spend cap reached: 5.00 of 5.00 USD; raise it with `falbatch resume --batch b --max-spend N`',
    });
    expect(holdOf('b', { ...control, state: 'cancelled', reason: undefined }, 9)).toEqual({ kind: 'cancelled', reason: 'cancelled by an operator' });
    expect(formatSpend(0.01234, { amount: 0.5, price: perSecond })).toBe('0.0123 of 0.5000 USD');
  });
});
