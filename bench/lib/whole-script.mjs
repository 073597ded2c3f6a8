// The script a user would write instead of falbatch, timed as a whole process in
// bench/whole-command.mjs: read the manifest, fal.subscribe (streaming) over its rows under a
// p-limit, write the answers to a JSONL file; no queue, nothing saved until the end, no retries.
//   node bench/lib/whole-script.mjs <manifest.csv> <out.jsonl> <concurrency>
// Env: FAL_BASE_URL (the emulator), FAL_KEY. The only falbatch import is the URL mapping that sends
// fal's hosts to the emulator.
import { readFileSync, writeFileSync } from 'node:fs';
import { createFalClient } from '@fal-ai/client';
import pLimit from 'p-limit';
import { createRoutedFetch } from '../../dist/fal/routing.js';

const [manifest, out, concurrency] = process.argv.slice(2);
const [header, ...lines] = readFileSync(manifest, 'utf8').trim().split('\n');
const columns = header.split(',');
const rows = lines.map((line) => Object.fromEntries(line.split(',').map((value, i) => [columns[i], value])));
const fal = createFalClient({ credentials: process.env.FAL_KEY, fetch: createRoutedFetch(process.env.FAL_BASE_URL ?? '') });
const limit = pLimit(Number(concurrency));
const answers = await Promise.all(
  rows.map((row) =>
    limit(async () => {
      const { data } = await fal.subscribe('fal-ai/llava-next', { input: { image_url: row.image_url, prompt: row.prompt }, mode: 'streaming' });
      return JSON.stringify({ ...row, output: data?.output });
    }),
  ),
);
writeFileSync(out, `${answers.join('\n')}\n`);
