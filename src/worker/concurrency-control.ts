import { randomUUID } from 'node:crypto';
import type { FalbatchContext } from '../context.js';
import { SECOND } from '../time.js';
import { createFlightTracker, type FlightTracker } from './fal-load.js';
import { createSlotLearner, headroomFor, type FalLoad, type SlotDecision } from './slot-learner.js';

/** How often a worker tells the queue what its requests do at fal, and the leader decides. */
export const CONTROL_TICK_MS = 250;
/** A worker's report older than this is not counted (the worker died, or stalls). */
const LOAD_FRESH_MS = 2 * SECOND;
/** The lease of the learning leader, and of the queue's cap: renewed every tick by whoever holds it. */
const LEASE_MS = 10 * SECOND;
/** How long learned slots seed the next run. */
const LEARNED_KEPT_MS = 7 * 24 * 3600 * SECOND;
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

/** The queue's in-flight cap as status shows it. */
export interface QueueConcurrency {
  mode: 'auto' | 'fixed';
  /** The account's slots as learned (auto). */
  slots: number | undefined;
  /** Requests in flight across every worker: BullMQ's global concurrency. */
  target: number;
  reason: string;
  /** When it was last set (ms). */
  at: number;
}

export interface ConcurrencyControl {
  /** Fed with every row's fal phases (auto mode; a no-op tracker otherwise). */
  readonly tracker: FlightTracker;
  close(): Promise<void>;
}

/** Reads the queue's in-flight cap, if a live worker holds one. */
export async function readQueueConcurrency(ctx: FalbatchContext): Promise<QueueConcurrency | undefined> {
  const fields = await ctx.redis.hgetall(ctx.keys.concurrency);
  if (fields['mode'] !== 'auto' && fields['mode'] !== 'fixed') return undefined;
  const slots = Number(fields['slots']);
  return {
    mode: fields['mode'],
    slots: fields['slots'] && Number.isFinite(slots) ? slots : undefined,
    target: Number(fields['target'] ?? 0),
    reason: fields['reason'] ?? '',
    at: Number(fields['at'] ?? 0),
  };
}

// Takes or keeps a lease. KEYS: key. ARGV: holder, ms. Returns 1 when held by `holder` now.
const HOLD = `
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

// Drops a lease held by `holder`. KEYS: key. ARGV: holder.
const DROP = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

interface Scripts {
  falbatchHoldLease(key: string, holder: string, ms: number): Promise<number>;
  falbatchDropLease(key: string, holder: string): Promise<number>;
}

function scripts(ctx: FalbatchContext): Scripts {
  if (!('falbatchHoldLease' in ctx.redis)) {
    ctx.redis.defineCommand('falbatchHoldLease', { numberOfKeys: 1, lua: HOLD });
    ctx.redis.defineCommand('falbatchDropLease', { numberOfKeys: 1, lua: DROP });
  }
  return ctx.redis as unknown as Scripts;
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
export async function startConcurrencyControl(ctx: FalbatchContext, mode: ConcurrencyMode, options: { tickMs?: number; localMax?: number } = {}): Promise<ConcurrencyControl> {
  const { redis, keys, clock, log, queue } = ctx;
  const lua = scripts(ctx);
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

  const setCap = async (state: Omit<QueueConcurrency, 'at'>, owner: string): Promise<void> => {
    await queue.setGlobalConcurrency(state.target);
    await redis
      .multi()
      .del(keys.concurrency)
      .hset(keys.concurrency, {
        mode: state.mode,
        ...(state.slots !== undefined ? { slots: String(state.slots) } : {}),
        target: String(state.target),
        reason: state.reason,
        at: String(clock.now()),
        owner,
      })
      .pexpire(keys.concurrency, LEASE_MS)
      .exec();
  };

  if (mode.kind === 'fixed') {
    const reason = `--global-concurrency ${mode.cap}`;
    await setCap({ mode: 'fixed', slots: undefined, target: mode.cap, reason }, id);
    const renew = setInterval(() => {
      void (async () => {
        // Still ours (a later fixed worker may have taken it over): keep it.
        if ((await redis.hget(keys.concurrency, 'owner')) === id) await redis.pexpire(keys.concurrency, LEASE_MS);
        else if ((await redis.exists(keys.concurrency)) === 0) await setCap({ mode: 'fixed', slots: undefined, target: mode.cap, reason }, id);
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
  const remembered = Number(await redis.get(keys.learnedSlots));
  const localMax = Math.min(AUTO_MAX, options.localMax ?? AUTO_MAX);
  const learner = createSlotLearner({
    max: localMax,
    ...(Number.isInteger(remembered) && remembered > 0 ? { slots: remembered, initial: Math.min(localMax, remembered + headroomFor(remembered)) } : {}),
  });
  let leading = false;
  let ticking = false;
  const tick = async (): Promise<void> => {
    const now = clock.now();
    const own = tracker.load(now);
    await redis
      .multi()
      .hset(keys.falLoad, id, `${own.running},${own.queued},${own.waiting},${own.waited},${own.inFlight},${now}`)
      .pexpire(keys.falLoad, LEASE_MS)
      .exec();
    const lead = (await lua.falbatchHoldLease(keys.concurrencyLeader, id, LEASE_MS)) === 1;
    if (!lead) {
      leading = false;
      return;
    }
    const current = await redis.hmget(keys.concurrency, 'mode', 'owner');
    // A fixed cap set by a live worker wins.
    if (current[0] === 'fixed') return;
    const reports = await redis.hgetall(keys.falLoad);
    const load: FalLoad = { running: 0, queued: 0, waiting: 0, waited: 0, inFlight: 0 };
    for (const report of Object.values(reports)) {
      const [running, queued, waiting, waited, inFlight, at] = report.split(',').map(Number);
      if (at === undefined || now - at > LOAD_FRESH_MS) continue;
      load.running += running ?? 0;
      load.queued += queued ?? 0;
      load.waiting += waiting ?? 0;
      load.waited += waited ?? 0;
      load.inFlight += inFlight ?? 0;
    }
    const decided: SlotDecision | undefined = learner.observe(load, now);
    if (decided || !leading || current[1] !== id) {
      const state = learner.current();
      await setCap({ mode: 'auto', slots: state.slots, target: state.target, reason: state.reason }, id);
      if (decided) log.info(`fal concurrency: ${decided.reason}`, { slots: decided.slots, target: decided.target });
      if (decided?.slots !== undefined) await redis.set(keys.learnedSlots, String(decided.slots), 'PX', LEARNED_KEPT_MS);
    } else {
      await redis.pexpire(keys.concurrency, LEASE_MS);
    }
    leading = true;
  };
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    tick()
      .catch((error: unknown) => log.warn('could not share what fal says of this worker\'s requests', { error: ctx.scrub((error as Error).message) }))
      .finally(() => {
        ticking = false;
      });
  }, tickMs);
  timer.unref();
  await tick();
  return {
    tracker,
    async close() {
      clearInterval(timer);
      await redis.hdel(keys.falLoad, id).catch(() => undefined);
      await lua.falbatchDropLease(keys.concurrencyLeader, id).catch(() => undefined);
      // The last auto worker leaves no cap behind (others would take the lead within a tick).
      const now = clock.now();
      const others = Object.values(await redis.hgetall(keys.falLoad).catch(() => ({}))).filter((report) => now - Number(report.split(',').at(-1)) <= LOAD_FRESH_MS);
      if (others.length === 0 && (await redis.hget(keys.concurrency, 'owner').catch(() => null)) === id) {
        await redis.del(keys.concurrency).catch(() => undefined);
        await queue.removeGlobalConcurrency().catch(() => undefined);
      }
    },
  };
}
