#!/usr/bin/env node
// The falbatch command. The code is TypeScript compiled to dist/ (npm ci and npm install build it).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('falbatch: dist/ is missing; build it with `npm run build` (npm ci does it too)\n');
  process.exit(1);
}
// `enqueue` streams a manifest: its heap is sized for that before anything loads (a V8 flag set
// later no longer shrinks what module loading grew). Not `run`: its worker pays ~10 % of throughput
// for the extra collections. See dist/cli/producer-heap.js.
const args = process.argv.slice(2);
if (args.includes('enqueue')) {
  const { sizeHeapForProducer } = await import(new URL('../dist/cli/producer-heap.js', import.meta.url).href);
  sizeHeapForProducer(process.env, process.execArgv);
}
const { main } = await import(entry.href);
await main();
