import { gzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { FalbatchContext } from '../../src/context.js';
import { runScheduleTick } from '../../src/ops/schedule-tick.js';
import { addSchedule } from '../../src/ops/schedules.js';
import { createObjectStore, type ObjectStore } from '../../src/storage/object-store.js';
import { unpackEntries } from '../../src/queue/packed-entries.js';
import { HOUR } from '../../src/time.js';
import { createHarness, namespaceKeys, readCsv, runCliProcess } from '../helpers/harness.js';
import { pngBytes } from '../helpers/images.js';
import { startS3Server } from '../helpers/s3-server.js';

/** A list element as text: a packed chunk of entries unpacked, anything else as it is. */
function readable(element: Buffer): string[] {
  try {
    return unpackEntries(element);
  } catch {
    return [element.toString('utf8')];
  }
}

/** Every value Redis holds under the test's namespace, as text (job data, rows, results). */
async function namespaceText(h: Awaited<ReturnType<typeof createHarness>>): Promise<string> {
  let text = '';
  for (const key of await namespaceKeys(h)) {
    const type = await h.ctx.redis.type(key);
    if (type === 'string') text += await h.ctx.redis.get(key);
    else if (type === 'hash') text += JSON.stringify(await h.ctx.redis.hgetall(key));
    // Packed elements (the rows list, a backlog) are read unpacked: a signed URL in them would show.
    else if (type === 'list') text += JSON.stringify((await h.ctx.redis.lrangeBuffer(key, 0, -1)).flatMap(readable));
  }
  return text;
}

describe('datasets in object storage', () => {
  it('`run s3://bucket/photos/ --prompt` captions every image under the prefix: ids relative to it, URLs signed by the worker, fetched by fal; a rerun calls nothing', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('photos-bucket');
    await s3.put('photos-bucket', {
      'photos/cats/tabby.png': pngBytes('tabby'),
      'photos/cats/nested/siamese.png': pngBytes('siamese'),
      'photos/dog.png': pngBytes('dog'),
      'photos/readme.txt': 'not an image',
      'photos/.thumbs/x.png': pngBytes('hidden'),
      'elsewhere/y.png': pngBytes('elsewhere'),
    });
    const out = `${h.dir}/captions.csv`;
    const env = h.env(s3.env());
    const first = await runCliProcess(['run', 's3://photos-bucket/photos/', '--prompt', 'Describe this photo', '--out', out], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/batch photos-[0-9a-f]{8}: 3 rows read; 3 added/);
    const rows = await readCsv(out);
    expect(rows.map((r) => [r['id'], r['status'], r['image_url']])).toEqual([
      ['cats/nested/siamese.png', 'ok', 's3://photos-bucket/photos/cats/nested/siamese.png'],
      ['cats/tabby.png', 'ok', 's3://photos-bucket/photos/cats/tabby.png'],
      ['dog.png', 'ok', 's3://photos-bucket/photos/dog.png'],
    ]);
    // fal downloaded each image through a presigned URL, and judged it by its bytes.
    const stats = h.emulator.stats();
    expect(stats.imageDownloads).toBe(3);
    expect(stats.refusedDownloads).toBe(0);
    expect(stats.billed).toBe(3);
    expect(new Set(rows.map((r) => r['output'])).size).toBe(3);
    // Nothing signed reached Redis, nor the outputs: rows hold s3:// locations; no credential anywhere.
    const stored = await namespaceText(h);
    expect(stored).toContain('s3://photos-bucket/photos/dog.png');
    expect(stored).not.toMatch(/X-Amz-Signature|X-Amz-Credential|S3RVER/);
    expect(JSON.stringify(rows)).not.toMatch(/X-Amz-|S3RVER/);

    const again = await runCliProcess(['run', 's3://photos-bucket/photos/', '--prompt', 'Describe this photo', '--out', out], env);
    expect(again.code, again.stderr).toBe(0);
    expect(h.emulator.stats().submits).toBe(3);
  });

  it('an object replaced in place is a changed row (its ETag changed): only it is called again', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('data-set');
    await s3.put('data-set', { 'p/a.png': pngBytes('a'), 'p/b.png': pngBytes('b') });
    const env = h.env(s3.env());
    const args = ['run', 's3://data-set/p', '--prompt', 'Describe', '--out', `${h.dir}/out.csv`];
    expect((await runCliProcess(args, env)).code).toBe(0);
    await s3.put('data-set', { 'p/b.png': pngBytes('b, edited') });
    const second = await runCliProcess(args, env);
    expect(second.code, second.stderr).toBe(0);
    expect(h.emulator.stats().billed).toBe(3);
  });

  it("a URL that expired while the request waited in fal's queue is refused (403), signed again and submitted again: billed once", async () => {
    let checks = 0;
    // The first download sees a clock two hours ahead: the URL signed at submit has expired by then.
    const h = await createHarness({ emulator: { downloadClock: { now: () => Date.now() + (checks++ === 0 ? 2 * HOUR : 0) } } });
    const s3 = await startS3Server();
    await s3.bucket('slow-queue');
    await s3.put('slow-queue', { 'img/one.png': pngBytes('one') });
    const out = `${h.dir}/out.csv`;
    const result = await runCliProcess(['run', 's3://slow-queue/img/', '--prompt', 'Describe', '--out', out], h.env(s3.env()));
    expect(result.code, result.stderr).toBe(0);
    const [row] = await readCsv(out);
    expect(row?.['status']).toBe('ok');
    expect(row?.['attempts']).toBe('2');
    const stats = h.emulator.stats();
    expect(stats.imageDownloads).toBe(2);
    expect(stats.refusedDownloads).toBe(1);
    expect(stats.submits).toBe(2);
    expect(stats.billed).toBe(1);
  });

  it('a bucket that does not exist, a prefix without images, refused credentials: one line naming it, exit 1, nothing enqueued', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('real-bucket');
    await s3.put('real-bucket', { 'docs/a.txt': 'text' });
    const out = `${h.dir}/out.csv`;
    const missing = await runCliProcess(['run', 's3://no-such-bucket/photos/', '--prompt', 'Describe', '--out', out], h.env(s3.env()));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/bucket no-such-bucket does not exist/);
    const empty = await runCliProcess(['run', 's3://real-bucket/docs/', '--prompt', 'Describe', '--out', out], h.env(s3.env()));
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/s3:\/\/real-bucket\/docs\/ holds no images/);
    const denied = await runCliProcess(
      ['run', 's3://real-bucket/docs/', '--prompt', 'Describe', '--out', out],
      h.env({ ...s3.env(), AWS_ACCESS_KEY_ID: 'AKIAWRONGKEYID', AWS_SECRET_ACCESS_KEY: 'top-secret-value' }),
    );
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^falbatch: Cannot list bucket real-bucket .*refused the credentials \(403\).*AWS_ACCESS_KEY_ID.*$/m);
    expect(denied.stderr).not.toContain('top-secret-value');
    expect(denied.stderr).not.toMatch(/\n\s+at /);
    // No batch was opened (the queue's own meta key is all a started worker leaves).
    expect((await namespaceKeys(h)).filter((key) => key.includes(':batch'))).toEqual([]);
    expect(await h.ctx.redis.zcard(h.ctx.keys.batches)).toBe(0);
    expect(h.emulator.stats().submits).toBe(0);
  });

  it('a CSV manifest in the bucket, mixing s3:// keys, https URLs and data URIs', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('manifests');
    await s3.put('manifests', {
      'imgs/a.png': pngBytes('a'),
      'train.csv': [
        'id,image_url,prompt',
        'one,s3://manifests/imgs/a.png,Describe',
        'two,https://example.com/cat.png,Describe',
        `three,"data:image/png;base64,${pngBytes('c').toString('base64')}",Describe`,
        'four,s3://manifests/imgs/missing.png,Describe',
      ].join('\n'),
    });
    const out = `${h.dir}/out.csv`;
    const result = await runCliProcess(['run', 's3://manifests/train.csv', '--out', out], h.env(s3.env()));
    expect(result.code, result.stderr).toBe(2);
    const rows = await readCsv(out);
    expect(
      rows.map((r) => [r['id'], r['status']]),
      JSON.stringify(rows),
    ).toEqual([
      ['one', 'ok'],
      ['two', 'ok'],
      ['three', 'ok'],
      ['four', 'rejected'],
    ]);
    expect(rows[3]?.['error']).toMatch(/s3:\/\/manifests\/imgs\/missing\.png not found/);
  });
});

describe('manifest files of every format in a bucket', () => {
  it('a LAION-style Parquet (url, caption) and a .jsonl.gz manifest in a bucket, read by ranges and streamed: every row once, in order; a rerun calls nothing', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('tables');
    const urls = ['s3://tables/imgs/a.png', 'https://example.com/b.png', 's3://tables/imgs/c.png', 'https://example.com/d.png'];
    const parquet = parquetWriteBuffer({
      columnData: [
        { name: 'key', data: ['k0', 'k1', 'k2', 'k3'], type: 'STRING' },
        { name: 'url', data: urls, type: 'STRING' },
        { name: 'caption', data: ['a cat', 'a dog', 'a cow', 'a hen'], type: 'STRING' },
      ],
      rowGroupSize: 2,
    });
    const jsonl = urls.map((url, i) => JSON.stringify({ key: `j${i}`, url, caption: `thing ${i}` })).join('\n');
    await s3.put('tables', {
      'imgs/a.png': pngBytes('a'),
      'imgs/c.png': pngBytes('c'),
      'laion/part-0.parquet': Buffer.from(parquet),
      'laion/part-1.jsonl.gz': gzipSync(jsonl),
    });
    const mapping = ['--endpoint', 'fal-ai/llava-next', '--input', '{"image_url":"{url:image}","prompt":"Describe {caption}"}'];
    for (const [manifest, ids] of [
      ['s3://tables/laion/part-0.parquet', ['a cat', 'a dog', 'a cow', 'a hen']],
      ['s3://tables/laion/part-1.jsonl.gz', ['thing 0', 'thing 1', 'thing 2', 'thing 3']],
    ] as const) {
      const out = `${h.dir}/${manifest.endsWith('.parquet') ? 'parquet' : 'jsonl'}.csv`;
      const result = await runCliProcess(['run', manifest, ...mapping, '--out', out], h.env(s3.env()));
      expect(result.code, result.stderr).toBe(0);
      const rows = await readCsv(out);
      // Every row once, in manifest order, its columns carried through.
      expect(rows.map((r) => [r['caption'], r['status']])).toEqual(ids.map((caption) => [caption, 'ok']));
      const accepted = h.emulator.stats().accepted;
      const again = await runCliProcess(['run', manifest, ...mapping, '--out', out], h.env(s3.env()));
      expect(again.code, again.stderr).toBe(0);
      expect(h.emulator.stats().accepted).toBe(accepted);
    }
    expect(h.emulator.stats().billed).toBe(8);
  });
});

describe('results written to a bucket', () => {
  it('`--out s3://…/run1.jsonl` writes the results, .errors.csv and .report.json beside it; the report names the objects', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('results-bucket');
    await s3.put('results-bucket', { 'in/a.png': pngBytes('a'), 'in/b.png': pngBytes('b') });
    const result = await runCliProcess(
      ['run', 's3://results-bucket/in/', '--prompt', 'Describe', '--out', 's3://results-bucket/results/run1.jsonl'],
      h.env(s3.env()),
    );
    expect(result.code, result.stderr).toBe(0);
    const read = async (key: string): Promise<string> =>
      (await (await s3.client.send(new GetObjectCommand({ Bucket: 'results-bucket', Key: key }))).Body?.transformToString()) ?? '';
    const lines = (await read('results/run1.jsonl'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.map((l) => [l['id'], l['status']])).toEqual([
      ['a.png', 'ok'],
      ['b.png', 'ok'],
    ]);
    expect(await read('results/run1.errors.csv')).toMatch(/^id,/);
    const report = JSON.parse(await read('results/run1.report.json')) as { files: Record<string, unknown> };
    expect(report.files['output']).toBe('s3://results-bucket/results/run1.jsonl');
    expect(JSON.stringify(report)).not.toMatch(/falbatch-out-|S3RVER/);
  });

  it('an --out bucket that does not exist fails before anything is enqueued or paid for', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('in-bucket');
    await s3.put('in-bucket', { 'in/a.png': pngBytes('a') });
    const result = await runCliProcess(['run', 's3://in-bucket/in/', '--prompt', 'Describe', '--out', 's3://missing-out/r.csv'], h.env(s3.env()));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/Cannot write to bucket missing-out .*does not exist/);
    expect(h.emulator.stats().submits).toBe(0);
  });

  it('`export --out s3://` of a batch whose upload fails says the results are safe in Redis (exit 3), and leaves no object', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('in-bucket');
    await s3.put('in-bucket', { 'in/a.png': pngBytes('a') });
    const env = h.env(s3.env());
    const ran = await runCliProcess(['run', 's3://in-bucket/in/', '--prompt', 'Describe', '--out', `${h.dir}/local.csv`], env);
    expect(ran.code, ran.stderr).toBe(0);
    const batch = /batch (in-[0-9a-f]{8})/.exec(ran.stdout)?.[1] ?? '';
    const denied = await runCliProcess(['export', '--batch', batch, '--out', 's3://in-bucket/out/r.csv'], { ...env, AWS_ACCESS_KEY_ID: 'AKIAWRONG' });
    expect(denied.code).toBe(3);
    expect(denied.stderr).toMatch(/refused the credentials/);
    expect(denied.stderr).toMatch(/falbatch export --batch in-[0-9a-f]{8} .*--out s3:\/\/in-bucket\/out\/r\.csv/);
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: 'in-bucket', Prefix: 'out/' }));
    expect(listed.KeyCount ?? 0).toBe(0);
  });
});

describe('caption files written back to the bucket', () => {
  it('`--captions` puts cat.txt beside cat.png in the bucket; skip mode then calls nothing for an image whose caption exists', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('lora-set');
    await s3.put('lora-set', {
      'photos/cat.png': pngBytes('cat'),
      'photos/sub/dog.png': pngBytes('dog'),
      'photos/owl.png': pngBytes('owl'),
      'photos/owl.txt': 'hand-written',
    });
    const env = h.env(s3.env());
    const read = async (key: string): Promise<string> =>
      (await (await s3.client.send(new GetObjectCommand({ Bucket: 'lora-set', Key: key }))).Body?.transformToString()) ?? '';
    const args = ['run', 's3://lora-set/photos/', '--prompt', 'Describe', '--captions', '--caption-prefix', 'ohwx, ', '--out', `${h.dir}/out.csv`];
    const first = await runCliProcess(args, env);
    expect(first.code, first.stderr).toBe(0);
    const rows = await readCsv(`${h.dir}/out.csv`);
    const byId = new Map(rows.map((r) => [r['id'], r]));
    expect(await read('photos/cat.txt')).toBe(`ohwx, ${byId.get('cat.png')?.['output']}`);
    expect(await read('photos/sub/dog.txt')).toBe(`ohwx, ${byId.get('sub/dog.png')?.['output']}`);
    // The caption that was there is kept, and its image was not paid for.
    expect(await read('photos/owl.txt')).toBe('hand-written');
    expect(byId.get('owl.png')?.['status']).toBe('skipped');
    expect(h.emulator.stats().billed).toBe(2);
    // No temp objects, nothing else written into the bucket.
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: 'lora-set' }));
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual([
      'photos/cat.png',
      'photos/cat.txt',
      'photos/owl.png',
      'photos/owl.txt',
      'photos/sub/dog.png',
      'photos/sub/dog.txt',
    ]);
    // (metadata.jsonl comes below, with --hf-metadata.)

    await s3.put('lora-set', { 'photos/new.png': pngBytes('new') });
    const second = await runCliProcess(args, env);
    expect(second.code, second.stderr).toBe(0);
    expect(h.emulator.stats().billed).toBe(3);
    expect(await read('photos/new.txt')).toMatch(/^ohwx, \[emulated:/);

    // --hf-metadata: metadata.jsonl beside the images, in the bucket, from the caption files there.
    const withMetadata = await runCliProcess([...args, '--hf-metadata'], env);
    expect(withMetadata.code, withMetadata.stderr).toBe(0);
    const metadata = (await read('photos/metadata.jsonl'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { file_name: string; text: string });
    expect(metadata.map((m) => m.file_name)).toEqual(['cat.png', 'new.png', 'owl.png', 'sub/dog.png']);
    expect(metadata.find((m) => m.file_name === 'owl.png')?.text).toBe('hand-written');

    // overwrite: every caption file is written again from the answers (none paid again).
    const overwrite = await runCliProcess([...args, '--caption-mode', 'overwrite', '--caption-prefix', 'sks, '], env);
    expect(overwrite.code, overwrite.stderr).toBe(0);
    expect(await read('photos/cat.txt')).toMatch(/^sks, \[emulated:/);
  });
});

describe('schedules over a bucket', () => {
  it('a tick over an s3:// prefix adds only new or changed objects; an unchanged bucket costs a listing and nothing more', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('incoming');
    await s3.put('incoming', { 'drop/a.png': pngBytes('a'), 'drop/b.png': pngBytes('b') });
    const saved = { ...process.env };
    Object.assign(process.env, s3.env());
    onTestFinished(() => {
      for (const key of Object.keys(s3.env())) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    });
    const real = createObjectStore({ endpoint: s3.endpoint });
    onTestFinished(() => real.close());
    // What the ticks ask of the store, counted on the way (the requests go to the real server).
    const calls = { listPages: 0, heads: 0, reads: 0, puts: 0 };
    const counted: ObjectStore = {
      ...real,
      async *list(bucket, prefix, options) {
        for await (const page of real.list(bucket, prefix, options)) {
          calls.listPages++;
          yield page;
        }
      },
      head: (bucket, key) => (calls.heads++, real.head(bucket, key)),
      read: (bucket, key, range, signal) => (calls.reads++, real.read(bucket, key, range, signal)),
      put: (bucket, key, body, type) => (calls.puts++, real.put(bucket, key, body, type)),
    };
    const ctx: FalbatchContext = { ...h.ctx, objects: () => counted };
    const { schedule } = await addSchedule(ctx, { name: 'drop', manifest: 's3://incoming/drop/', prompt: 'Describe', everyMs: 3_600_000 });
    expect(schedule.manifest).toBe('s3://incoming/drop/');
    expect(await runScheduleTick(ctx, schedule)).toMatchObject({ outcome: 'ok', added: 2 });

    const before = { ...calls };
    expect(await runScheduleTick(ctx, schedule)).toMatchObject({ outcome: 'ok', added: 0, present: 2 });
    // The tick's own opening check lists one page too; then the listing: nothing per object.
    expect(calls.heads - before.heads).toBe(0);
    expect(calls.reads - before.reads).toBe(0);
    expect(calls.puts - before.puts).toBe(0);
    expect(calls.listPages - before.listPages).toBeLessThanOrEqual(2);

    await s3.put('incoming', { 'drop/b.png': pngBytes('b, replaced'), 'drop/c.png': pngBytes('c') });
    expect(await runScheduleTick(ctx, schedule)).toMatchObject({ outcome: 'ok', added: 2, present: 1, changed: 1 });
  });
});

describe('--upload-images from a bucket', () => {
  it('puts each image into fal storage once, cached by ETag and size: a second batch over the same objects uploads nothing', async () => {
    const h = await createHarness();
    const s3 = await startS3Server();
    await s3.bucket('private-net');
    await s3.put('private-net', {
      'imgs/a.png': pngBytes('a'),
      'imgs/b.png': pngBytes('b'),
      'imgs/copy-of-a.png': pngBytes('a'),
      'imgs/fake.png': 'not an image',
    });
    const env = h.env(s3.env());
    const first = await runCliProcess(['run', 's3://private-net/imgs/', '--prompt', 'Describe', '--upload-images', '--out', `${h.dir}/one.csv`], env);
    expect(first.code, first.stderr).toBe(2);
    const rows = await readCsv(`${h.dir}/one.csv`);
    expect(rows.map((r) => [r['id'], r['status']])).toEqual([
      ['a.png', 'ok'],
      ['b.png', 'ok'],
      ['copy-of-a.png', 'ok'],
      ['fake.png', 'rejected'],
    ]);
    expect(rows[3]?.['error']).toMatch(/s3:\/\/private-net\/imgs\/fake\.png is not an image/);
    // a.png and its copy share one ETag: one upload, and fal fetched no signed URL.
    expect(h.emulator.stats()).toMatchObject({ uploads: 2, imageDownloads: 0 });
    const second = await runCliProcess(['run', 's3://private-net/imgs/', '--prompt', 'Describe it again', '--upload-images', '--out', `${h.dir}/two.csv`], env);
    expect(second.code, second.stderr).toBe(2);
    expect(h.emulator.stats()).toMatchObject({ uploads: 2, imageDownloads: 0 });
  });
});
