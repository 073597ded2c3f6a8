// Runs every benchmark script in this folder, one after the other; each prints one JSON line.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
for (const script of readdirSync(here)
  .filter((name) => name.endsWith('.mjs') && name !== 'run-all.mjs')
  .sort()) {
  process.stderr.write(`# ${script}\n`);
  const result = spawnSync(process.execPath, [`${here}${script}`], { stdio: 'inherit' });
  if (result.status !== 0) process.exitCode = 1;
}
