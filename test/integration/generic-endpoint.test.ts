import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createFalClient } from '@fal-ai/client';
import { describe, expect, it } from 'vitest';
import { fingerprintOf } from '../../src/emulator/routes.js';
import { createRoutedFetch } from '../../src/fal/routing.js';
import { runBatch } from '../../src/run-batch.js';
import { createHarness, FAL_KEY, readCsv, runCliProcess, type Harness } from '../helpers/harness.js';
import { pngBytes, pngDataUri } from '../helpers/images.js';

/** Served by the emulator's generic vision model: input image/question/seed, output description/confidence. */
const GENERIC = 'acme/describe-anything';
const LLAVA = 'fal-ai/llava-next';

/** What the emulator answers for exactly this input (deterministic): proves falbatch sent the same content. */
async function directOutput(h: Harness, endpoint: string, input: Record<string, unknown>): Promise<Record<string, unknown>> {
  const fal = createFalClient({ credentials: FAL_KEY, fetch: createRoutedFetch(h.emulator.url) });
  const { data } = await fal.run(endpoint, { input });
  return data as Record<string, unknown>;
}

async function redisKeys(h: Harness): Promise<string[]> {
  return h.ctx.redis.keys(`${h.prefix}*`);
}

describe('any fal endpoint through --input and --output-field', () => {
  it("maps manifest columns into a generic endpoint's input, reads the answer from --output-field, and rejects an empty required cell on its line", async () => {
    const h = await createHarness({ emulator: { runners: 3 } });
    mkdirSync(join(h.dir, 'photos'));
    h.file('photos/cat.png', pngBytes('cat'));
    h.file('photos/dog.png', pngBytes('dog'));
    const manifest = h.file(
      'photos/jobs.csv',
      [
        'id,img,q,note', // 1
        'cat,cat.png,What animal is this?,first', // 2
        'dog,dog.png,"Which breed, roughly?",second', // 3
        'web,https://example.com/bird.png,What bird?,third', // 4
        'blank,cat.png,   ,fourth', // 5
      ].join('\n'),
    );
    const out = join(h.dir, 'out.csv');
    const input = '{"image":"{img}","question":"{q}","seed":42}';
    const flags = ['--endpoint', GENERIC, '--input', input, '--image-columns', 'img', '--output-field', 'description'];
    const run = await runCliProcess(['run', manifest, '--out', out, ...flags], h.env());
    expect(run.code, run.stderr).toBe(2); // one row rejected

    const rows = await readCsv(out);
    expect(rows.map((r) => [r['id'], r['status'], r['note']])).toEqual([
      ['cat', 'ok', 'first'],
      ['dog', 'ok', 'second'],
      ['web', 'ok', 'third'],
      ['blank', 'rejected', 'fourth'],
    ]);
    expect(rows[3]?.['error']).toBe('line 5: q is empty');
    // Each answer is the generic model's description for exactly the mapped input: the image's
    // content (a local file, however it was delivered), the question, the literal seed, nothing else
    // (the model refuses unknown fields).
    for (const [i, image, question] of [
      [0, pngDataUri('cat'), 'What animal is this?'],
      [1, pngDataUri('dog'), 'Which breed, roughly?'],
      [2, 'https://example.com/bird.png', 'What bird?'],
    ] as const) {
      const direct = await directOutput(h, GENERIC, { image, question, seed: 42 });
      expect(rows[i]?.['output']).toBe(direct['description']);
      expect(rows[i]?.['output']).toMatch(/^\[emulated:[0-9a-f]{10}\] /);
    }
    // A URL passes through unchanged, so that row's input is known to the byte: the emulator was billed for exactly it.
    expect(
      h.emulator.stats().billedByFingerprint[fingerprintOf(GENERIC, { image: 'https://example.com/bird.png', question: 'What bird?', seed: 42 })],
    ).toBeGreaterThanOrEqual(1);
    expect(rows[0]?.['q']).toBe('What animal is this?');

    // Another output field is another batch, and another answer for each row (read from the same
    // kind of call: the ledger never hands one field's answer to a batch that reads another).
    const out2 = join(h.dir, 'confidence.csv');
    const again = await runCliProcess(['run', manifest, '--out', out2, ...flags.slice(0, -1), 'confidence'], h.env());
    expect(again.code, again.stderr).toBe(2);
    const confidences = await readCsv(out2);
    expect(confidences.slice(0, 3).map((r) => r['status'])).toEqual(['ok', 'ok', 'ok']);
    for (const row of confidences.slice(0, 3)) expect(Number(row['output'])).toBeGreaterThanOrEqual(0.5);
  });

  it('fails a manifest that lacks a column the template names before anything is enqueued, naming it', async () => {
    const h = await createHarness();
    h.file('a.png', pngBytes('a'));
    const manifest = h.file('m.csv', 'img,question\na.png,What?\n');
    const run = await runCliProcess(
      ['run', manifest, '--out', join(h.dir, 'out.csv'), '--endpoint', GENERIC, '--input', '{"image":"{img:image}","question":"{q}"}'],
      h.env(),
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      'the header (line 1) has no "q" column. Found: "img", "question". --input names the columns img and q; id and endpoint are optional.',
    );
    // No batch, no job: the worker `run` starts first left only its queue's own bookkeeping.
    expect(await h.ctx.redis.zcard(h.ctx.keys.batches)).toBe(0);
    expect((await redisKeys(h)).filter((key) => !/:(meta|stalled-check)$/.test(key))).toEqual([]);
    expect(Object.values(await h.ctx.queue.getJobCounts()).every((n) => n === 0)).toBe(true);
    expect(h.emulator.stats().submits).toBe(0);
  });

  it('refuses a bad template with exit 1, naming the flag, before reading the manifest', async () => {
    const h = await createHarness();
    const manifest = h.file('m.csv', 'img,q\na.png,What?\n');
    const run = await runCliProcess(['enqueue', manifest, '--input', '{"image":"{img:picture}","question":"{q}"}'], h.env());
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('--input: at image: {img:picture}: unknown type "picture"; use text, int, number, bool, image or image[]');
    const notJson = await runCliProcess(['enqueue', manifest, '--input', '{image: {img}}'], h.env());
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toContain('Expected --input to be JSON');
  });

  it('expands several images of a cell into an array, as Mantis takes them, for any endpoint', async () => {
    const h = await createHarness({
      config: { endpoint: 'fal-ai/mantis-llava-7b-v11', input: { prompt: 'Compare: {q}', images: [{ image_url: '{pics:image[]}' }] } },
    });
    h.file('a.png', pngBytes('a'));
    h.file('b.png', pngBytes('b'));
    const manifest = h.file('m.csv', 'pics,q\na.png|b.png,which is brighter?\nhttps://example.com/x.png,one image\n');
    const summary = await runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') });
    expect(summary.export).toMatchObject({ rows: 2, ok: 2 });
    const rows = await readCsv(join(h.dir, 'out.csv'));
    const direct = await directOutput(h, 'fal-ai/mantis-llava-7b-v11', {
      prompt: 'Compare: which is brighter?',
      images: [{ image_url: pngDataUri('a') }, { image_url: pngDataUri('b') }],
    });
    expect(rows[0]?.['output']).toBe(direct['output']);
    expect(rows[0]?.['prompt']).toBe('Compare: which is brighter?');
    expect(
      h.emulator.stats().billedByFingerprint[
        fingerprintOf('fal-ai/mantis-llava-7b-v11', { prompt: 'Compare: one image', images: [{ image_url: 'https://example.com/x.png' }] })
      ],
    ).toBe(1);
  });
});

describe('--prompt-template', () => {
  it("fills llava-next's prompt from other columns: no prompt column needed, an empty named cell rejects its row", async () => {
    const h = await createHarness();
    h.file('cat.png', pngBytes('cat'));
    const manifest = h.file('m.csv', ['image_url,subject,max_tokens', 'cat.png,cat,', 'https://example.com/car.jpg,car,4', 'cat.png, ,'].join('\n'));
    const out = join(h.dir, 'out.csv');
    const run = await runCliProcess(['run', manifest, '--out', out, '--prompt-template', 'Describe the {subject} in one sentence'], h.env());
    expect(run.code, run.stderr).toBe(2);
    const rows = await readCsv(out);
    expect(rows.map((r) => [r['status'], r['prompt'], r['subject']])).toEqual([
      ['ok', 'Describe the cat in one sentence', 'cat'],
      ['ok', 'Describe the car in one sentence', 'car'],
      ['rejected', 'Describe the  in one sentence', ' '],
    ]);
    expect(rows[2]?.['error']).toBe('line 4: subject is empty');
    expect(rows[0]?.['output']).toBe((await directOutput(h, LLAVA, { image_url: pngDataUri('cat'), prompt: 'Describe the cat in one sentence' }))['output']);
    expect(rows[1]?.['output']).toBe(
      (await directOutput(h, LLAVA, { image_url: 'https://example.com/car.jpg', prompt: 'Describe the car in one sentence', max_tokens: 4 }))['output'],
    );

    // A filled prompt is a prompt: the same row written out in a plain manifest is the same call,
    // answered from the paid-answers ledger instead of paid again.
    const plain = h.file('plain.csv', 'image_url,prompt\ncat.png,Describe the cat in one sentence\n');
    const billed = h.emulator.stats().billed;
    const summary = await runBatch(h.ctx, { manifest: plain, out: join(h.dir, 'plain.out.csv') });
    expect(summary.export).toMatchObject({ ok: 1 });
    expect(h.emulator.stats().billed).toBe(billed);
    expect((await readCsv(join(h.dir, 'plain.out.csv')))[0]).toMatchObject({ output: rows[0]?.['output'], attempts: '0' });
  });

  it('fails before enqueueing when a column the template names is missing', async () => {
    const h = await createHarness({ config: { promptTemplate: 'Describe the {subject}' } });
    const manifest = h.file('m.csv', 'image_url,prompt\nhttps://example.com/a.png,hi\n');
    await expect(runBatch(h.ctx, { manifest, out: join(h.dir, 'out.csv') })).rejects.toThrow(
      'the header (line 1) has no "subject" column. Found: "image_url", "prompt". --prompt-template names subject; the built-in endpoints also need image_url.',
    );
    expect(h.emulator.stats().submits).toBe(0);
  });
});
