/** Tick records kept per schedule (apart from ops/schedules.ts so `schedule list --help` loads no queue). */
export const TICK_HISTORY = 50;
