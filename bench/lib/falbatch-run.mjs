// One measured falbatch run, as users run it: an emulator process of its own, `falbatch enqueue`,
// then `falbatch work <workArgs>` spawned; wall time from the first submit the emulator sees to the
// batch finished (looked at every 25 ms), so process start-up is left out (reported beside it).
import { randomUUID } from 'node:crypto';
import { deletePrefix } from './delete-prefix.mjs';
import { falbatchEnv, firstSubmit, runFalbatch, spawnNode, startEmulator, until } from './processes.mjs';
import { getStatus, openContext, resolveConfig, silentLogger } from '../../dist/index.js';

/** What the emulator saw: the most requests running and outstanding at once, and what was paid. */
export async function capacity(emulator) {
  const stats = await emulator.stats();
  return { maxInProgress: stats.maxInProgress, maxOutstanding: stats.maxOutstanding, billed: stats.billed, duplicateBilled: stats.duplicateBilled };
}

/**
 * `prepare`, when given, runs on the namespace before the worker starts (e.g. seeding what an
 * earlier run left in it).
 * @param {{ emulatorArgs: string[], manifestPath: string, redisUrl: string, workArgs: string[], say?: (line: string) => void, prepare?: (ctx: import('../../dist/index.js').FalbatchContext, env: Record<string, string>) => Promise<void> }} options
 */
export async function measureFalbatch({ emulatorArgs, manifestPath, redisUrl, workArgs, say = () => {}, prepare }) {
  const emulator = await startEmulator(emulatorArgs);
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const env = falbatchEnv(redisUrl, emulator.url);
  const ctx = await openContext(resolveConfig({ REDIS_URL: redisUrl }, { prefix }), { log: silentLogger });
  let worker;
  try {
    // Enqueue first, then start the worker: the rows are all there when it starts.
    await runFalbatch(['enqueue', manifestPath, '--batch', 'bench', '--prefix', prefix, '--log-level', 'error'], env);
    await prepare?.(ctx, env);
    const spawned = performance.now();
    worker = spawnNode(['work', ...workArgs, '--prefix', prefix, '--log-level', 'warn'], { env });
    const started = await firstSubmit(emulator, () => worker.assertRunning());
    let status;
    const ended = await until('the batch to finish', async () => {
      emulator.assertRunning();
      worker.assertRunning();
      return (status = await getStatus(ctx, 'bench')).finished;
    });
    return {
      seconds: (ended - started) / 1000,
      fromSpawnSeconds: (ended - spawned) / 1000,
      ok: status.ok,
      failed: status.failed,
      learned: status.concurrency ?? undefined,
      ...(await capacity(emulator)),
    };
  } finally {
    const code = await worker?.stop();
    if (code !== undefined && code !== 0) say(`falbatch work exited ${code}:\n${worker.stderr()}`);
    await ctx.close();
    await emulator.close();
    await deletePrefix(redisUrl, prefix);
  }
}
