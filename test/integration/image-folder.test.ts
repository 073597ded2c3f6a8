import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { walkImages } from '../../src/manifest/image-folder.js';
import { createHarness, readCsv, runCliProcess } from '../helpers/harness.js';

/** A small real image whose pixels (and so bytes) differ by `seed`. */
async function image(format: 'png' | 'jpeg' | 'webp', seed: number): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: seed % 256, g: (seed * 7) % 256, b: (seed * 13) % 256 } } })
    .toFormat(format)
    .toBuffer();
}

async function tree(root: string, files: Record<string, Buffer | string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

describe('a folder of images as the input', () => {
  it('lists images recursively in a stable order, hidden entries and other files left out', async () => {
    const h = await createHarness();
    const root = join(h.dir, 'images');
    await tree(root, {
      'b.png': await image('png', 1),
      'a/z.jpg': await image('jpeg', 2),
      'a/b/c.webp': await image('webp', 3),
      'a/B.PNG': await image('png', 4),
      'A.png': await image('png', 5),
      'notes.txt': 'not an image',
      '.hidden.png': await image('png', 6),
      '.cache/x.png': await image('png', 7),
    });
    const listed: string[] = [];
    for await (const path of walkImages(root)) listed.push(path);
    // Code-unit order in each folder, depth first: the same on every machine.
    expect(listed).toEqual(['A.png', 'a/B.PNG', 'a/b/c.webp', 'a/z.jpg', 'b.png']);
  });

  it('`run DIR --prompt` captions a nested tree: one row per image, its relative path as its id; a rerun calls nothing', async () => {
    const h = await createHarness();
    const root = join(h.dir, 'photos');
    await tree(root, {
      'cats/tabby.png': await image('png', 10),
      'cats/nested/siamese.jpg': await image('jpeg', 11),
      'dogs/lab.webp': await image('webp', 12),
      'readme.md': '# not an image',
    });
    const out = join(h.dir, 'captions.csv');
    const first = await runCliProcess(['run', root, '--prompt', 'Describe this photo', '--out', out], h.env());
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/batch photos-[0-9a-f]{8}: 3 rows read; 3 added/);
    const rows = await readCsv(out);
    expect(rows.map((r) => [r['id'], r['status'], r['prompt']])).toEqual([
      ['cats/nested/siamese.jpg', 'ok', 'Describe this photo'],
      ['cats/tabby.png', 'ok', 'Describe this photo'],
      ['dogs/lab.webp', 'ok', 'Describe this photo'],
    ]);
    expect(rows.every((r) => /^\[emulated:/.test(r['output'] ?? ''))).toBe(true);
    // Distinct images, distinct answers (the emulator answers from the image bytes).
    expect(new Set(rows.map((r) => r['output'])).size).toBe(3);
    expect(h.emulator.stats().billed).toBe(3);

    const again = await runCliProcess(['run', root, '--prompt', 'Describe this photo', '--out', out], h.env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/0 added, 3 already present/);
    expect(h.emulator.stats().billed).toBe(3);
  }, 60_000);

  it('a folder needs --prompt, a CSV refuses it, and an empty folder says what it looked for', async () => {
    const h = await createHarness();
    const root = join(h.dir, 'imgs');
    await tree(root, { 'x.png': await image('png', 20) });
    const noPrompt = await runCliProcess(['run', root, '--out', join(h.dir, 'o.csv')], h.env());
    expect(noPrompt.code).toBe(1);
    expect(noPrompt.stderr).toContain(`${root} is a folder: say what to ask of every image in it with --prompt`);
    const csv = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.jpg,describe\n');
    const refused = await runCliProcess(['enqueue', csv, '--prompt', 'x'], h.env());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--prompt is for a folder of images');
    mkdirSync(join(h.dir, 'empty'));
    const empty = await runCliProcess(['enqueue', join(h.dir, 'empty'), '--prompt', 'x'], h.env());
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('holds no images (looked for .png, .jpg, .jpeg, .webp, .gif, .bmp files');
    expect(h.emulator.stats().submits).toBe(0);
  }, 60_000);
});
