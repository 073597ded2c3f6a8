#!/usr/bin/env node
// The falbatch command. The code is TypeScript compiled to dist/ (npm ci and npm install build it).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('falbatch: dist/ is missing; build it with `npm run build` (npm ci does it too)\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main();
