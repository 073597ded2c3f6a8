// The benchmarks' manifest: `rows` distinct rows (image URL and prompt), written to a temp folder.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function writeManifest(rows, name = 'bench') {
  const dir = mkdtempSync(join(tmpdir(), `falbatch-bench-${name}-`));
  const path = join(dir, 'rows.csv');
  const lines = Array.from({ length: rows }, (_, i) => `https://example.com/${i}.jpg,caption ${i}`);
  writeFileSync(path, `image_url,prompt\n${lines.join('\n')}\n`);
  return { dir, path };
}
