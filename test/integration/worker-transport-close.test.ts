import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { expect, it } from 'vitest';
import { waitForBatch } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { createHarness, until } from '../helpers/harness.js';

// The keep-alive agents belong to the worker: when it closes, fal (here: a TCP relay in front of the
// emulator, counting the worker's connections) sees them closed, instead of kept until their idle
// time-out (4 s) or the process's end.
it('a closed worker leaves no connection to fal open', async () => {
  let emulatorPort = 0;
  const open = new Set<Socket>();
  let opened = 0;
  const relay = createServer((client) => {
    opened++;
    open.add(client);
    const upstream = connect(emulatorPort, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      open.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.once('close', end);
    client.once('error', end);
    upstream.once('close', end);
    upstream.once('error', end);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  try {
    const h = await createHarness({ config: { falBaseUrl: `http://127.0.0.1:${(relay.address() as AddressInfo).port}` } });
    emulatorPort = Number(new URL(h.emulator.url).port);
    const body = Array.from({ length: 4 }, (_, i) => `r${i},https://example.com/${i}.jpg,p${i}`).join('\n');
    const { batch } = await enqueueManifest(h.ctx, { manifest: h.file('m.csv', `id,image_url,prompt\n${body}\n`) });
    const worker = await h.startWorker();
    await waitForBatch(h.ctx, batch, { intervalMs: 25 });
    expect(h.emulator.stats()).toMatchObject({ billed: 4 });
    expect(opened).toBeGreaterThan(0);
    await worker.close(0);
    // Well within the 4 s after which idle connections would be let go anyway.
    await until('the worker closed its connections to fal', () => open.size === 0, 2000);
  } finally {
    for (const socket of open) socket.destroy();
    await new Promise<void>((resolve) => relay.close(() => resolve()));
  }
});
