// The baseline a user would write without falbatch: fal.subscribe over the rows under a p-limit,
// nothing queued or saved. Run as a process of its own:
//   node bench/lib/subscribe-script.mjs <emulator url> <rows> <concurrency> <streaming|polling>
// Prints one JSON line: seconds from the first subscribe to the last answer, and answers received.
// The only falbatch import is the URL mapping that sends fal's hosts to the emulator.
import { createFalClient } from '@fal-ai/client';
import pLimit from 'p-limit';
import { createRoutedFetch } from '../../dist/index.js';

const [url, rowCount, concurrency, mode] = process.argv.slice(2);
const fal = createFalClient({ credentials: 'bench-key', fetch: createRoutedFetch(url) });
const limit = pLimit(Number(concurrency));
// The inputs falbatch sends for the benchmarks' manifests (bench/lib/manifest.mjs), so that the
// emulator draws the same processing times for both.
const inputs = Array.from({ length: Number(rowCount) }, (_, i) => ({ image_url: `https://example.com/${i}.jpg`, prompt: `caption ${i}` }));
const started = performance.now();
const answers = await Promise.all(
  inputs.map((input) => limit(() => fal.subscribe('fal-ai/llava-next', { input, mode: /** @type {'polling' | 'streaming'} */ (mode) }))),
);
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ seconds, ok: answers.filter((answer) => answer.data !== undefined).length }));
