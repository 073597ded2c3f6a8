import { describe, expect, it } from 'vitest';
import { FaultPlan, formatFaultSpec, parseFaultSpec } from '../../src/emulator/faults.js';

describe('emulator fault specs', () => {
  it.each([
    ['503@submit=0.05', { kind: '503', op: 'submit', rate: 0.05 }],
    ['429=0.1', { kind: '429', op: 'submit', rate: 0.1 }],
    ['500@status=1x2', { kind: '500', op: 'status', rate: 1, max: 2 }],
    ['model-error=0.01', { kind: 'model-error', rate: 0.01 }],
  ])('parses %s', (text, spec) => {
    expect(parseFaultSpec(text)).toEqual(spec);
    expect(formatFaultSpec(parseFaultSpec(text))).toBe(text.includes('@') || !/^\d/.test(text) ? text : text.replace('=', '@submit='));
  });

  it.each([['503@submit'], ['teapot=0.1'], ['503@nowhere=0.1'], ['503=2'], ['model-error@submit=0.1']])('rejects %s with the accepted form', (text) => {
    expect(() => parseFaultSpec(text)).toThrow(/Invalid fault/);
  });

  it('draws the same faults for the same seed and keys, whatever the order of asking', () => {
    const keys = Array.from({ length: 200 }, (_, i) => `fp${i}#1`);
    const hits = (plan: FaultPlan, order: string[]) => new Set(order.filter((key) => plan.forRequest('submit', key)));
    const forward = hits(new FaultPlan(5, [parseFaultSpec('503@submit=0.3')]), keys);
    const backward = hits(new FaultPlan(5, [parseFaultSpec('503@submit=0.3')]), [...keys].reverse());
    expect(forward).toEqual(backward);
    expect(forward.size).toBeGreaterThan(30);
    expect(forward.size).toBeLessThan(90);
    expect(hits(new FaultPlan(6, [parseFaultSpec('503@submit=0.3')]), keys)).not.toEqual(forward);
  });

  it('injects a limited fault at most its count', () => {
    const plan = new FaultPlan(1, [parseFaultSpec('503@submit=1x2')]);
    expect(['a', 'b', 'c', 'd'].map((key) => plan.forRequest('submit', key)?.kind)).toEqual(['503', '503', undefined, undefined]);
  });
});
