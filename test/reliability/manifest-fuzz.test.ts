import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FalbatchError } from '../../src/errors.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { getStatus } from '../../src/ops/status.js';
import { createHarness } from '../helpers/harness.js';

describe('enqueue under fuzzing (real Redis)', () => {
  it('never crashes on arbitrary bytes after a valid header: each row is enqueued or rejected on its line', async () => {
    const h = await createHarness();
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.constantFrom('\n', '\r\n'), async (bytes, eol) => {
        const manifest = h.file(`fuzz-${run++}.csv`, Buffer.concat([Buffer.from(`id,image_url,prompt,max_tokens${eol}`), Buffer.from(bytes)]));
        try {
          const summary = await enqueueManifest(h.ctx, { manifest, batch: `fuzz-${run}` });
          // Every row read is accounted for: rejected, or added (once per distinct key) to a fresh batch.
          expect(summary.present).toBe(0);
          expect(summary.rows).toBe(summary.rejected + summary.added + summary.shared);
          for (const rejection of summary.rejections) {
            expect(rejection.line).toBeGreaterThanOrEqual(2);
            expect(rejection.reason.length).toBeGreaterThan(5);
          }
          const status = await getStatus(h.ctx, `fuzz-${run}`);
          expect(status.rows).toBe(summary.rows);
          expect(status.jobs).toBe(summary.added);
        } catch (error) {
          // Only a user error about the file itself may stop it, never a crash.
          expect(error).toBeInstanceOf(FalbatchError);
        }
      }),
      { numRuns: 40 },
    );
  });
});
