import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createHarness, runCliProcess } from '../helpers/harness.js';

async function image(seed: number): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: seed % 256, g: (seed * 7) % 256, b: (seed * 13) % 256 } } })
    .png()
    .toBuffer();
}

describe('--dry-run: what a run would call, upload and cost, before it does', () => {
  it('counts rows, rejections, calls left, distinct images and uploads needed; changes nothing; then reflects what was done and what it cost', async () => {
    const h = await createHarness({ emulator: { latency: '200ms', runners: 4 } });
    h.file('a.png', await image(1));
    h.file('b.png', await image(2));
    h.file('c.png', await image(3));
    const manifest = h.file(
      'm.csv',
      [
        'id,image_url,prompt',
        'r1,a.png,describe',
        'r2,a.png,count the colours',
        'r3,b.png,describe',
        'r4,c.png,describe',
        'r5,https://example.com/x.jpg,describe',
        'r6,,describe',
      ].join('\n'),
    );
    const before = await runCliProcess(['enqueue', manifest, '--dry-run', '--price', '0.002/call'], h.env());
    expect(before.code, before.stderr).toBe(2);
    expect(before.stdout).toContain('nothing enqueued, uploaded or called');
    expect(before.stdout).toContain('rows      6 (1 rejected)');
    expect(before.stdout).toContain('calls     5 distinct: 0 already done in this batch, 0 answered by earlier paid calls, 5 to call');
    expect(before.stdout).toContain('images    3 distinct local images: 3 to upload, 0 already in fal storage');
    expect(before.stdout).toContain('fal time  unknown: no call measured in this namespace yet');
    expect(before.stdout).toContain('cost      ~0.0100 USD (at 0.002 USD/call');
    expect(before.stderr).toContain('line 7: image_url is empty');
    expect(h.emulator.stats()).toMatchObject({ submits: 0, uploads: 0 });
    expect(await h.ctx.redis.zcard(h.ctx.keys.batches)).toBe(0);
    // (BullMQ's queue meta aside, which opening the queue writes.)
    expect((await h.ctx.redis.keys(`${h.prefix}:*`)).filter((key) => !key.endsWith(':{jobs}:meta'))).toEqual([]);

    const ran = await runCliProcess(['run', manifest, '--out', join(h.dir, 'out.csv')], h.env());
    expect(ran.code, ran.stderr).toBe(2);

    // Now the cache knows the images, the batch knows its answers, and calls were measured.
    h.file('d.png', await image(4));
    const grown = h.file('grown.csv', `id,image_url,prompt\nr1,a.png,describe\nr7,d.png,describe\nr8,b.png,a new question\n`);
    const after = await runCliProcess(['enqueue', grown, '--dry-run', '--json'], h.env());
    expect(after.code, after.stderr).toBe(0);
    const plan = JSON.parse(after.stdout) as Record<string, unknown> & { forecast: Record<string, unknown>; price: Record<string, unknown> };
    expect(plan).toMatchObject({ rows: 3, rejected: 0, calls: 3, done: 0, answered: 1, toCall: 2, localImages: 3, uploads: 1 });
    // fal's pricing API (the emulator's: 0.0005 USD per second) prices the measured inference time.
    expect(plan.price).toMatchObject({ unit: 'second', amount: 0.0005, source: 'fal' });
    expect(plan.forecast['measuredCalls']).toBe(5);
    expect(plan.forecast['secondsPerCall']).toBeCloseTo(0.2, 1);
    expect((plan.forecast['cost'] as { amount: number }).amount).toBeCloseTo(2 * 0.2 * 0.0005, 6);
    expect(h.emulator.stats()).toMatchObject({ accepted: 5 });
  }, 60_000);

  it('forecasts what the run then does: a duplicate image is one call, and cached uploads fal no longer serves are uploads', async () => {
    const h = await createHarness({ emulator: { latency: '5..20ms', runners: 4 } });
    const folder = join(h.dir, 'images');
    mkdirSync(folder);
    for (let i = 0; i < 6; i++) writeFileSync(join(folder, `img${i}.png`), await image(i + 10));
    // The same content under another name: the run calls it once, for both rows.
    copyFileSync(join(folder, 'img0.png'), join(folder, 'copy-of-img0.png'));
    // Not an image: the dry run says it is left out, as enqueue does.
    writeFileSync(join(folder, 'notes.txt'), 'shot list');
    const args = [folder, '--prompt', 'describe', '--price', '0.002/call'];
    const plan = async (): Promise<Record<string, unknown>> => {
      const dry = await runCliProcess(['run', ...args, '--dry-run', '--json'], h.env());
      expect(dry.code, dry.stderr).toBe(0);
      return JSON.parse(dry.stdout) as Record<string, unknown>;
    };

    const text = await runCliProcess(['run', ...args, '--dry-run'], h.env());
    expect(text.stdout).toContain(
      'calls     6 distinct: 0 already done in this batch, 0 answered by earlier paid calls, 6 to call; 1 more row identical to one of these shares its answer',
    );
    expect(text.stdout).toContain('images    6 distinct local images: 6 to upload, 0 already in fal storage');
    expect(text.stdout).toContain('cost      ~0.0120 USD');
    expect(text.stdout).toContain('1 other file in the folder left out, not images (1 .txt)');
    expect(await plan()).toMatchObject({ rows: 7, calls: 6, toCall: 6, shared: 1, localImages: 6, uploads: 6, expired: 0, notImages: { '.txt': 1 } });
    const first = await runCliProcess(['run', ...args, '--out', join(h.dir, 'out.csv')], h.env());
    expect(first.code, first.stderr).toBe(0);
    expect(h.emulator.stats()).toMatchObject({ accepted: 6, uploads: 6 });

    // fal storage forgot the uploads: the forecast says every image is uploaded again, and the run
    // (of another batch, answered from the paid calls) does it.
    h.emulator.expireFiles();
    const fileReads = h.emulator.stats().fileReads;
    const again = await runCliProcess(['run', ...args, '--batch', 'again', '--dry-run'], h.env());
    expect(again.stdout).toContain('images    6 distinct local images: 6 to upload (6 cached but no longer served by fal storage), 0 already in fal storage');
    expect(again.stdout).toContain(
      'calls     6 distinct: 0 already done in this batch, 6 answered by earlier paid calls, 0 to call; 1 more row identical to one of these shares its answer',
    );
    // A dry run checks each cached URL as the run does (a HEAD), and uploads nothing.
    expect(h.emulator.stats()).toMatchObject({ uploads: 6, fileReads: fileReads + 6 });
    const result = await runCliProcess(['run', ...args, '--batch', 'again', '--out', join(h.dir, 'again.csv')], h.env());
    expect(result.code, result.stderr).toBe(0);
    expect(h.emulator.stats()).toMatchObject({ accepted: 6, uploads: 12 });
  }, 90_000);
});
