import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { captionOptions, captionPath, captionText, type CaptionOptions } from '../../src/results/caption-files.js';
import { createHarness, readCsv, ROOT, runCliProcess, until } from '../helpers/harness.js';

async function image(seed: number): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: seed % 256, g: (seed * 7) % 256, b: (seed * 13) % 256 } } })
    .png()
    .toBuffer();
}

function options(mode: CaptionOptions['mode']): CaptionOptions {
  return captionOptions({ mode, prefix: 'ohwx, ', suffix: '.' });
}

describe('caption files (pure)', () => {
  it.each([
    ['skip', undefined, 'ohwx, a cat.'],
    ['skip', 'old words', undefined],
    ['overwrite', 'old words', 'ohwx, a cat.'],
    ['append', 'old words\n', 'old words ohwx, a cat.'],
    ['prepend', '  old words', 'ohwx, a cat. old words'],
    ['append', '', 'ohwx, a cat.'],
  ] as const)('mode %s over %j writes %j', (mode, existing, expected) => {
    expect(captionText(options(mode), 'a cat', existing)).toBe(expected);
  });

  it('names the caption file after the image, its extension replaced', () => {
    expect(captionPath('/d/cats/tabby.png', '.txt')).toBe('/d/cats/tabby.txt');
    expect(captionPath('/d/a.b.jpeg', '.caption')).toBe('/d/a.b.caption');
    expect(captionOptions({ ext: 'caption' }).ext).toBe('.caption');
    expect(() => captionOptions({ mode: 'merge' })).toThrow('Expected --caption-mode to be one of skip, overwrite, append, prepend, got "merge"');
  });
});

describe('caption files beside local images', () => {
  it('writes prefix + caption + suffix beside each image; skip mode costs no call for a captioned image; the other modes keep or replace it as told', async () => {
    const h = await createHarness();
    const root = join(h.dir, 'set');
    mkdirSync(join(root, 'sub'), { recursive: true });
    writeFileSync(join(root, 'cat.png'), await image(1));
    writeFileSync(join(root, 'sub', 'dog.png'), await image(2));
    writeFileSync(join(root, 'bird.png'), await image(3));
    writeFileSync(join(root, 'bird.txt'), 'a bird, by hand');
    const out = join(h.dir, 'out.csv');
    const args = ['run', root, '--prompt', 'Caption this', '--out', out, '--captions', '--caption-prefix', 'ohwx, ', '--caption-suffix', '.'];

    const first = await runCliProcess(args, h.env());
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('1 skipped (their caption files exist)');
    expect(first.stdout).toContain('2 caption files written');
    const rows = Object.fromEntries((await readCsv(out)).map((r) => [r['id'], r]));
    expect(rows['bird.png']).toMatchObject({ status: 'skipped', error: expect.stringContaining('bird.txt exists (--caption-mode skip)') });
    expect(readFileSync(join(root, 'cat.txt'), 'utf8')).toBe(`ohwx, ${rows['cat.png']?.['output']}.`);
    expect(readFileSync(join(root, 'sub', 'dog.txt'), 'utf8')).toBe(`ohwx, ${rows['sub/dog.png']?.['output']}.`);
    expect(readFileSync(join(root, 'bird.txt'), 'utf8')).toBe('a bird, by hand');
    // No call and no upload for the captioned image.
    expect(h.emulator.stats()).toMatchObject({ accepted: 2 });
    expect(readdirSync(root).filter((name) => name.includes('falbatch-tmp'))).toEqual([]);

    // append keeps what is there and adds after it; the bird is called now.
    const appended = await runCliProcess([...args, '--caption-mode', 'append'], h.env());
    expect(appended.code, appended.stderr).toBe(0);
    const bird = (await readCsv(out)).find((r) => r['id'] === 'bird.png');
    expect(bird?.['status']).toBe('ok');
    expect(readFileSync(join(root, 'bird.txt'), 'utf8')).toBe(`a bird, by hand ohwx, ${bird?.['output']}.`);
    expect(readFileSync(join(root, 'cat.txt'), 'utf8')).toBe(`ohwx, ${rows['cat.png']?.['output']}. ohwx, ${rows['cat.png']?.['output']}.`);
    expect(h.emulator.stats()).toMatchObject({ accepted: 3 });

    // prepend, then overwrite, without calling again (every row has its answer).
    const prepended = await runCliProcess(
      [
        'export',
        '--batch',
        /batch (\S+):/.exec(first.stdout)?.[1] ?? '',
        '--captions',
        '--caption-mode',
        'prepend',
        '--caption-prefix',
        '[',
        '--caption-suffix',
        ']',
      ],
      h.env(),
    );
    expect(prepended.code, prepended.stderr).toBe(0);
    expect(readFileSync(join(root, 'bird.txt'), 'utf8')).toBe(`[${bird?.['output']}] a bird, by hand ohwx, ${bird?.['output']}.`);
    const overwritten = await runCliProcess([...args, '--caption-mode', 'overwrite', '--caption-prefix', ''], h.env());
    expect(overwritten.code, overwritten.stderr).toBe(0);
    expect(readFileSync(join(root, 'bird.txt'), 'utf8')).toBe(`${bird?.['output']}.`);
    expect(h.emulator.stats()).toMatchObject({ accepted: 3 });
  }, 60_000);

  it('two images that would share one caption file (a.png, a.jpg) are both rejected, naming both', async () => {
    const h = await createHarness();
    const root = join(h.dir, 'clash');
    mkdirSync(root);
    writeFileSync(join(root, 'a.png'), await image(4));
    writeFileSync(
      join(root, 'a.jpg'),
      await sharp(await image(5))
        .jpeg()
        .toBuffer(),
    );
    writeFileSync(join(root, 'b.png'), await image(6));
    const out = join(h.dir, 'out.csv');
    const result = await runCliProcess(['run', root, '--prompt', 'Caption this', '--out', out, '--captions'], h.env());
    expect(result.code).toBe(2);
    const rows = Object.fromEntries((await readCsv(out)).map((r) => [r['id'], r]));
    for (const id of ['a.jpg', 'a.png']) {
      expect(rows[id]?.['status']).toBe('rejected');
      expect(rows[id]?.['error']).toContain(
        `${join(root, 'a.jpg')} (line 2) and ${join(root, 'a.png')} (line 3) would share one caption file, ${join(root, 'a.txt')}`,
      );
    }
    expect(rows['b.png']?.['status']).toBe('ok');
    expect(existsSync(join(root, 'a.txt'))).toBe(false);
    expect(h.emulator.stats()).toMatchObject({ accepted: 1 });
  }, 60_000);

  it('a process killed while it writes a caption leaves the old caption whole, never a part of the new one', async () => {
    const h = await createHarness();
    const target = join(h.dir, 'big.txt');
    writeFileSync(target, 'the old caption');
    // A caption large enough that the kill lands mid-write.
    const script = `import { writeFileAtomic } from ${JSON.stringify(join(ROOT, 'dist/results/caption-files.js'))};
await writeFileAtomic(${JSON.stringify(target)}, 'x'.repeat(400 * 1024 * 1024));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    const temp = (): string | undefined => readdirSync(h.dir).find((name) => name.startsWith('.big.txt.') && name.endsWith('.falbatch-tmp'));
    await until('the new caption to be half written', () => {
      const name = temp();
      return name !== undefined && statSync(join(h.dir, name)).size > 0;
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(readFileSync(target, 'utf8')).toBe('the old caption');
  }, 30_000);
});
