import { createHash, randomUUID } from 'node:crypto';
import type { FalbatchContext } from '../context.js';
import { SECOND } from '../time.js';
import type { QueueConcurrency } from '../queue/queue-concurrency.js';
import { scriptsOn } from '../queue/redis-scripts.js';
import { createFlightTracker, type FlightTracker } from './fal-load.js';
import { createSlotLearner, headroomFor, type FalLoad, type SlotDecision, type SlotLearner } from './slot-learner.js';

/** How often a worker tells the queue what its requests do at fal, and the leader decides. */
export const CONTROL_TICK_MS = 250;
/** A worker's report older than this (Redis time) is not counted: the worker died. */
const LOAD_FRESH_MS = 2 * SECOND;
/**
 * A live worker's report older than this holds the decision back a tick: summed with fresher
 * reports of other workers it could count one request (one slot) twice, or none.
 */
const LOAD_SAME_MOMENT_MS = 600;
/** The lease of the learning leader, and of the queue's cap: renewed every tick by whoever holds it. */
const LEASE_MS = 10 * SECOND;
/** How long learned slots seed the next run (refreshed while they are followed). */
export const LEARNED_KEPT_MS = 7 * 24 * 3600 * SECOND;
/** How often the leader writes the slots it follows again, to keep them for a week from now. */
const LEARNED_REFRESH_MS = 60 * SECOND;
/**
 * A tick this much later than due looks at counts that may be old: the worker's event loop
 * stalled (a busy machine), and the timer runs before the replies that came meanwhile are read.
 */
const LATE_TICK_MS = 100;
/** The most a learned target may be (a worker's own concurrency bounds it further). */
export const AUTO_MAX = 256;

/** How a worker sets the queue's in-flight cap. */
export type ConcurrencyMode =
  /** Learns the account's slots with the other auto workers, and sets the cap to slots + headroom. */
  | { kind: 'auto' }
  /** `--global-concurrency N`: sets the cap to N while it runs (it wins over auto workers). */
  | { kind: 'fixed'; cap: number }
  /** `--concurrency N` alone: its own limit only; a cap nobody holds any more is lifted. */
  | { kind: 'local' };

/**
 * Whose slots are learned: fal's limit is per account, so the learned slots are kept per FAL_KEY,
 * under a digest of it (never the key), in the queue's namespace.
 */
export function slotsAccountOf(falKey: string | undefined): string {
  if (!falKey) return 'no-key';
  return createHash('sha256').update(`falbatch learned slots\n${falKey}`).digest('hex').slice(0, 16);
}

export interface ConcurrencyControl {
  /** Fed with every row's fal phases (auto mode; a no-op tracker otherwise). */
  readonly tracker: FlightTracker;
  close(): Promise<void>;
}

/**
 * The queue's in-flight cap (BullMQ's global concurrency), kept by the workers that set it:
 *
 * - `auto`: every auto worker reports what its requests do at fal (running, waiting for a slot, in
 *   flight) each tick; one of them, the leader (a lease), sums the reports, learns the account's
 *   slots (worker/slot-learner.ts), and sets the cap to slots + headroom, saying why in the log;
 * - `fixed` (`--global-concurrency N`): the cap is N while the worker runs, and wins over auto;
 * - either way the cap is a lease in Redis: when its holder stops (or dies) it lapses, and a
 *   worker that starts after finds no cap left over from a run that is gone.
 */
export async function startConcurrencyControl(
  ctx: FalbatchContext,
  mode: ConcurrencyMode,
  /**
   * `onError`: told a failed tick first; one it says was told elsewhere (true: Redis out of memory) is not logged.
   * `holding`: while true (the worker waits for Redis to have room), rows in flight say nothing of fal: nothing is learned.
   */
  options: { tickMs?: number; localMax?: number; onError?: (error: unknown) => boolean; holding?: () => boolean } = {},
): Promise<ConcurrencyControl> {
  const { redis, keys, clock, log, queue } = ctx;
  const lua = scriptsOn(ctx.redis);
  const id = randomUUID();
  const tracker = createFlightTracker();
  const tickMs = options.tickMs ?? CONTROL_TICK_MS;

  if (mode.kind === 'local') {
    // A cap that no live worker holds any more (its lease lapsed) must not outlive its run.
    if ((await redis.exists(keys.concurrency)) === 0 && (await queue.getGlobalConcurrency()) !== null) {
      await queue.removeGlobalConcurrency();
      log.info('lifted the queue-wide cap on requests in flight left by a run that is gone');
    }
    return { tracker, close: async () => undefined };
  }

  /** Writes the queue's cap and why; an auto cap only where no fixed one is held (checked in the same script). */
  const setCap = async (state: Omit<QueueConcurrency, 'at'>, owner: string): Promise<boolean> => {
    const fields = [
      'mode',
      state.mode,
      ...(state.slots !== undefined ? ['slots', String(state.slots)] : []),
      'target',
      String(state.target),
      'reason',
      state.reason,
      'at',
      String(clock.now()),
      'owner',
      owner,
    ];
    const bullMeta = queue.keys['meta'];
    if (bullMeta === undefined) throw new Error("BullMQ's queue meta key is unknown");
    return (await lua.falbatchWriteCap(keys.concurrency, bullMeta, state.mode === 'auto' ? '1' : '0', LEASE_MS, state.target, ...fields)) === 1;
  };

  if (mode.kind === 'fixed') {
    const reason = `--global-concurrency ${mode.cap}`;
    await setCap({ mode: 'fixed', slots: undefined, target: mode.cap, reason }, id);
    const renew = setInterval(() => {
      void (async () => {
        // Ours, or taken by an auto worker that read the cap just before this one set it: set it
        // again, BullMQ's value with it. (A later fixed worker's cap is left to it.)
        const [held, owner] = await redis.hmget(keys.concurrency, 'mode', 'owner');
        if (owner === id || held !== 'fixed') await setCap({ mode: 'fixed', slots: undefined, target: mode.cap, reason }, id);
      })().catch(() => undefined);
    }, tickMs);
    renew.unref();
    return {
      tracker,
      async close() {
        clearInterval(renew);
        if ((await redis.hget(keys.concurrency, 'owner').catch(() => null)) === id) {
          await redis.del(keys.concurrency).catch(() => undefined);
          await queue.removeGlobalConcurrency().catch(() => undefined);
        }
      },
    };
  }

  // Auto: start from the slots learned last time, if any (they are checked again at once).
  const localMax = Math.min(AUTO_MAX, options.localMax ?? AUTO_MAX);
  const learnedKey = keys.learnedSlots(slotsAccountOf(ctx.config.falKey));
  const learnerFrom = (remembered: number): SlotLearner =>
    createSlotLearner({
      max: localMax,
      ...(Number.isInteger(remembered) && remembered > 0 ? { slots: remembered, initial: Math.min(localMax, remembered + headroomFor(remembered)) } : {}),
    });
  let learner = learnerFrom(Number(await redis.get(learnedKey)));
  const warm = learner.current().slots;
  if (warm !== undefined)
    log.info(`fal concurrency: ${learner.current().reason}; keeping ${learner.current().target} in flight`, { slots: warm, target: learner.current().target });
  let leading = false;
  let ticking = false;
  /** When the learned slots were last written (to keep them a week from the last time they were followed). */
  let savedAt = Number.NEGATIVE_INFINITY;
  /** When the timer last fired (a tick much later than tickMs after it is late). */
  let firedAt: number | undefined;
  const tick = async (late = false): Promise<void> => {
    // Replies read first: after a stall the timer runs before the I/O that came meanwhile.
    await new Promise((resolve) => setImmediate(resolve));
    const now = clock.now();
    const own = tracker.load(now);
    const report = `${own.running},${own.queued},${own.waiting},${own.waited},${own.inFlight},${late ? 1 : 0}`;
    const redisNow = await lua.falbatchReportLoad(keys.falLoad, id, report, LEASE_MS);
    const lead = (await lua.falbatchHoldLease(keys.concurrencyLeader, id, LEASE_MS)) === 1;
    if (!lead) {
      leading = false;
      return;
    }
    if (!leading) {
      // Taking the lead (the leader stopped or died): start from what it learned meanwhile, not
      // from what was known when this worker started.
      const learned = Number(await redis.get(learnedKey));
      if (Number.isInteger(learned) && learned > 0 && learned !== learner.current().slots) learner = learnerFrom(learned);
    }
    const current = await redis.hmget(keys.concurrency, 'mode', 'owner');
    // A fixed cap set by a live worker wins.
    if (current[0] === 'fixed') return;
    const reports = await redis.hgetall(keys.falLoad);
    const load: FalLoad = { running: 0, queued: 0, waiting: 0, waited: 0, inFlight: 0 };
    let sameMoment = true;
    for (const report of Object.values(reports)) {
      // running,queued,waiting,waited,inFlight[,late],at (Redis's time: always last).
      const fields = report.split(',').map(Number);
      const [running, queued, waiting, waited, inFlight] = fields;
      const at = fields.at(-1);
      if (fields.length < 6 || at === undefined || redisNow - at > LOAD_FRESH_MS) continue;
      if (redisNow - at > LOAD_SAME_MOMENT_MS) sameMoment = false;
      if (fields.length >= 7 && fields[5] === 1) load.late = true;
      load.running += running ?? 0;
      load.queued += queued ?? 0;
      load.waiting += waiting ?? 0;
      load.waited += waited ?? 0;
      load.inFlight += inFlight ?? 0;
    }
    // (A worker that stalls a moment: decide on the next tick, not on counts of two moments.)
    const decided: SlotDecision | undefined = sameMoment && !options.holding?.() ? learner.observe(load, now) : undefined;
    if (decided || !leading || current[1] !== id) {
      const state = learner.current();
      await setCap({ mode: 'auto', slots: state.slots, target: state.target, reason: state.reason }, id);
      if (decided) log.info(`fal concurrency: ${decided.reason}`, { slots: decided.slots, target: decided.target });
    } else {
      await redis.pexpire(keys.concurrency, LEASE_MS);
    }
    // The slots followed are kept for the next run, or leader, to start from: written when they
    // change, and again every minute so they are kept a week from the last run that followed them.
    const slots = learner.current().slots;
    if (slots !== undefined && (decided?.slots !== undefined || now - savedAt >= LEARNED_REFRESH_MS)) {
      await redis.set(learnedKey, String(slots), 'PX', LEARNED_KEPT_MS);
      savedAt = now;
    }
    leading = true;
  };
  const timer = setInterval(() => {
    const firedNow = clock.now();
    const late = firedAt !== undefined && firedNow - firedAt > tickMs + LATE_TICK_MS;
    firedAt = firedNow;
    if (ticking) return;
    ticking = true;
    tick(late)
      .catch((error: unknown) => {
        if (!options.onError?.(error)) log.warn("could not share what fal says of this worker's requests", { error: ctx.scrub((error as Error).message) });
      })
      .finally(() => {
        ticking = false;
      });
  }, tickMs);
  timer.unref();
  // A first tick refused for a reason told elsewhere (Redis out of memory) is tried again by the timer.
  await tick().catch((error: unknown) => {
    if (!options.onError?.(error)) throw error;
  });
  return {
    tracker,
    async close() {
      clearInterval(timer);
      await redis.hdel(keys.falLoad, id).catch(() => undefined);
      await lua.falbatchCompareAndDelete(keys.concurrencyLeader, id).catch(() => undefined);
      // The last auto worker leaves no cap behind (others would take the lead within a tick).
      // (Any other report still there: a worker stopped within the last seconds lets it lapse.)
      const others = Object.values(await redis.hgetall(keys.falLoad).catch(() => ({})));
      if (others.length === 0 && (await redis.hget(keys.concurrency, 'owner').catch(() => null)) === id) {
        await redis.del(keys.concurrency).catch(() => undefined);
        await queue.removeGlobalConcurrency().catch(() => undefined);
      }
    },
  };
}
