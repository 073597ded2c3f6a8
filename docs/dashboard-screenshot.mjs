// Takes docs/dashboard.png: falbatch's dashboard page over two batches (one finished with a few
// failures, one running) against the built-in fal emulator. Not part of the tests; run it by hand
// after changing the page:
//
//   npm run build && node docs/dashboard-screenshot.mjs     (REDIS_URL, default redis://127.0.0.1:6379)
//
// Needs Chromium at /usr/bin/chromium (or CHROMIUM_PATH). Works in a namespace of its own, removed after.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { createFalEmulator } from '../dist/emulator/create-fal-emulator.js';
import { enqueueManifest, openContext, resolveConfig, startDashboard, startWorker, waitForBatch } from '../dist/index.js';

const out = new URL('./dashboard.png', import.meta.url);
const prefix = `falbatch-screenshot-${randomUUID().slice(0, 8)}`;
const dir = mkdtempSync(join(tmpdir(), 'datasets-'));
const emulator = await createFalEmulator({ runners: 6, latency: '300..1400ms', faults: ['model-error=0.04'], seed: 7 });
const config = resolveConfig(
  { REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', FAL_KEY: 'screenshot-key', FAL_BASE_URL: emulator.url },
  { prefix, concurrency: 6, backoffBaseMs: 100, backoffMaxMs: 500 },
);
const ctx = await openContext(config);
const manifest = (name, rows) => {
  const path = join(dir, name);
  const lines = Array.from(
    { length: rows },
    (_, i) => `img-${String(i).padStart(4, '0')},https://images.example.com/${name.replace(/\W/g, '')}/${i}.jpg,Describe this product photo in one sentence`,
  );
  writeFileSync(path, ['id,image_url,prompt', ...lines].join('\n'));
  return path;
};

let worker;
let dashboard;
let browser;
try {
  worker = await startWorker(ctx);
  const first = await enqueueManifest(ctx, { manifest: manifest('spring-catalog.csv', 90), batch: 'spring-catalog' });
  await waitForBatch(ctx, first.batch);
  const second = await enqueueManifest(ctx, { manifest: manifest('user-uploads.csv', 600), batch: 'user-uploads-2024-06' });
  // Let the second batch get going: a rate, an ETA and a partly filled bar.
  await new Promise((resolve) => setTimeout(resolve, 12_000));
  dashboard = await startDashboard(ctx, { port: 0, refreshSeconds: 5, allowRetry: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  const page = await browser.newPage({ viewport: { width: 1120, height: 640 }, deviceScaleFactor: 1 });
  await page.goto(`${dashboard.url}/`);
  await page.locator(`section[data-batch="${second.batch}"]`).waitFor();
  await page.screenshot({ path: out.pathname, fullPage: true });
  console.log(`wrote ${out.pathname}`);
} finally {
  await browser?.close();
  await dashboard?.close();
  await worker?.close(0);
  // Remove the namespace (and its -emulated twin, if any).
  let cursor = '0';
  do {
    const [next, keys] = await ctx.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await ctx.redis.unlink(...keys);
  } while (cursor !== '0');
  await ctx.close();
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
}
