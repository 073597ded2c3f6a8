import type { Harness, SpawnedCli } from './harness.js';
import { spawnCli, until } from './harness.js';

/**
 * A worker frozen mid-submit past its lock: starts `work` with `args`, and once fal has accepted
 * `rows` submits (answered later, by a `slow@submit` fault) stops it with SIGSTOP (what an event
 * loop blocked far longer than the lock looks like from outside, its connection open). Another
 * worker then takes the stalled rows over once their locks expire; this resolves when it has
 * started every row at least twice more (or fal was paid again), and lets the frozen one go on
 * (SIGCONT). Both are returned, running.
 */
export async function freezeMidSubmit(
  h: Harness,
  rows: number,
  args: string[],
  env: Record<string, string>,
): Promise<{ frozen: SpawnedCli; other: SpawnedCli }> {
  const frozen = spawnCli(args, env);
  await until('four submits accepted by fal, their answers not yet back', () => h.emulator.stats().accepted === rows);
  frozen.child.kill('SIGSTOP');
  const other = spawnCli(args, env);
  try {
    await until(
      'the other worker to take every stalled row, twice',
      async () => {
        const jobs = await h.ctx.queue.getJobs(['active', 'delayed', 'wait']);
        return h.emulator.stats().accepted > rows || (jobs.length === rows && jobs.every((job) => job.attemptsStarted >= 3));
      },
      20_000,
    );
  } finally {
    // The frozen worker goes on, and may still save its request ids.
    frozen.child.kill('SIGCONT');
  }
  return { frozen, other };
}
