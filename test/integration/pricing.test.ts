import { describe, expect, it } from 'vitest';
import { createFalEmulator } from '../../src/emulator/create-fal-emulator.js';
import { fetchFalPrice, resolvePrice } from '../../src/fal/pricing.js';

describe("fal's pricing API, as the emulator serves it", () => {
  it('gives a per-second price for a seeded endpoint, none for an unknown one, and says when the unit does not apply', async () => {
    const emulator = await createFalEmulator({
      key: 'k',
      prices: {
        'fal-ai/llava-next': { unit_price: 0.0007, unit: 'seconds', currency: 'USD' },
        'acme/gen': { unit_price: 0.04, unit: 'images', currency: 'USD' },
      },
    });
    try {
      const options = { credentials: 'k', baseUrl: emulator.url, callTimeoutMs: 2000 };
      expect(await fetchFalPrice('fal-ai/llava-next', options)).toEqual({
        ok: true,
        price: { unit: 'second', amount: 0.0007, currency: 'USD', source: 'fal' },
      });
      expect(await fetchFalPrice('fal-ai/nothing-here', options)).toEqual({ ok: false, reason: "fal's pricing API has no price for fal-ai/nothing-here" });
      expect(await fetchFalPrice('acme/gen', options)).toMatchObject({
        ok: false,
        reason: expect.stringContaining('fal prices acme/gen per images, which does not say what a call costs here; pass --price'),
      });
      // A bad key: no price, and the batch goes on (a cost estimate never stops it).
      const refused = await resolvePrice({ price: undefined, falKey: 'wrong', falBaseUrl: emulator.url, callTimeoutMs: 2000 }, 'fal-ai/llava-next');
      expect(refused.price).toBeUndefined();
      expect(refused.note).toMatch(/^fal's pricing API did not answer \(.*401.*\); pass --price/);
      expect(refused.note).not.toContain('wrong');
      // --price wins without asking.
      const flag = { unit: 'call', amount: 0.01, currency: 'USD', source: 'flag' } as const;
      expect(await resolvePrice({ price: flag, falKey: 'k', falBaseUrl: emulator.url, callTimeoutMs: 2000 }, 'fal-ai/llava-next')).toEqual({
        price: flag,
        note: undefined,
      });
    } finally {
      await emulator.close();
    }
  });
});
