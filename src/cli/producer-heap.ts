import { setFlagsFromString } from 'node:v8';

/**
 * Keeps a producer's heap sized for the job: `enqueue` and `run` stream a manifest, keep little
 * (16–24 MB live), and allocate fast, and V8 sizes its heap from the allocation rate: left alone,
 * the young generation grows to 3 × 16 MB and the old one to 4–5 × the live size, and the process
 * reaches ~170 MB at 200,000 rows. Two V8 flags that take effect in a running process keep it
 * near what it holds: the young generation stays at its initial size (1 MB semi-spaces), and the
 * old one grows to 1.5 × what survives a full collection. Measured (BENCHMARKS.md, "Enqueue a
 * million rows"): about 90 MB instead of 170 at 200,000 rows, growing ~10 MB from 50,000, for ~15 %
 * more CPU time.
 *
 * Flags that size the heap cannot be changed once it is made (--max-semi-space-size,
 * --max-old-space-size): these two are read at each collection. They are set by bin/falbatch.js
 * for `enqueue`, before the CLI loads (set after, they leave the young generation as
 * large as loading the modules grew it); other commands are left as they are, `run` too: the
 * worker it hosts allocates per row, and the extra collections cost it ~10 % of its rows per second
 * (`bench/whole-command.mjs`, 3,000 rows at zero latency: 0.66–0.68 × the script with the flags,
 * 0.75 × without, same quiet machine). A user who sizes
 * the heap (NODE_OPTIONS or node's own flags) keeps their choice.
 */
const USER_SIZED = /--(max|min)-semi-space-size|--semi-space-growth-factor|--max-old-space-size|--max-heap-size|--heap-growing-percent/;

export function sizeHeapForProducer(env: Record<string, string | undefined>, execArgv: readonly string[]): void {
  if (USER_SIZED.test(`${env['NODE_OPTIONS'] ?? ''} ${execArgv.join(' ')}`)) return;
  setFlagsFromString('--semi-space-growth-factor=1');
  setFlagsFromString('--heap-growing-percent=50');
}
