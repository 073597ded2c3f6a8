import { randomUUID } from 'node:crypto';
import type { FalbatchContext } from '../context.js';
import { SECOND } from '../time.js';
import type { QueueConcurrency } from '../queue/queue-concurrency.js';
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

export interface ConcurrencyControl {
  /** Fed with every row's fal phases (auto mode; a no-op tracker otherwise). */
  readonly tracker: FlightTracker;
  close(): Promise<void>;
}


// Takes or keeps a lease. KEYS: key. ARGV: holder, ms. Returns 1 when held by `holder` now.
const HOLD = `
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

// Writes the queue's cap (a lease). KEYS: cap hash, BullMQ's queue meta. ARGV: '1' when it is an
// auto cap (then only if no fixed cap is held), PX, the cap, then field, value pairs. Returns 1 when written.
// KEYS[2]: BullMQ's queue meta, whose \`concurrency\` field is its global concurrency (what
// Queue.setGlobalConcurrency writes), set in the same script so no other write lands between.
const WRITE_CAP = `
if ARGV[1] == '1' and redis.call('HGET', KEYS[1], 'mode') == 'fixed' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'concurrency', ARGV[3])
return 1
`;

// A worker's report of its load, stamped with Redis's clock (every host's reports compare, whatever
// their clocks). KEYS: load hash. ARGV: worker id, report, PX. Returns Redis's time (ms).
const REPORT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ',' .. now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return now
`;

// Drops a lease held by `holder`. KEYS: key. ARGV: holder.
const DROP = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

interface Scripts {
  falbatchWriteCap(key: string, bullMeta: string, auto: string, ms: number, cap: number, ...fields: string[]): Promise<number>;
  falbatchReportLoad(key: string, worker: string, report: string, ms: number): Promise<number>;
  falbatchHoldLease(key: string, holder: string, ms: number): Promise<number>;
  falbatchDropLease(key: string, holder: string): Promise<number>;
}

function scripts(ctx: FalbatchContext): Scripts {
  if (!('falbatchHoldLease' in ctx.redis)) {
    ctx.redis.defineCommand('falbatchHoldLease', { numberOfKeys: 1, lua: HOLD });
    ctx.redis.defineCommand('falbatchDropLease', { numberOfKeys: 1, lua: DROP });
    ctx.redis.defineCommand('falbatchReportLoad', { numberOfKeys: 1, lua: REPORT });
    ctx.redis.defineCommand('falbatchWriteCap', { numberOfKeys: 2, lua: WRITE_CAP });
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
  const learnerFrom = (remembered: number): SlotLearner =>
    createSlotLearner({
      max: localMax,
      ...(Number.isInteger(remembered) && remembered > 0 ? { slots: remembered, initial: Math.min(localMax, remembered + headroomFor(remembered)) } : {}),
    });
  let learner = learnerFrom(Number(await redis.get(keys.learnedSlots)));
  let leading = false;
  let ticking = false;
  const tick = async (): Promise<void> => {
    const now = clock.now();
    const own = tracker.load(now);
    const redisNow = await lua.falbatchReportLoad(keys.falLoad, id, `${own.running},${own.queued},${own.waiting},${own.waited},${own.inFlight}`, LEASE_MS);
    const lead = (await lua.falbatchHoldLease(keys.concurrencyLeader, id, LEASE_MS)) === 1;
    if (!lead) {
      leading = false;
      return;
    }
    if (!leading) {
      // Taking the lead (the leader stopped or died): start from what it learned meanwhile, not
      // from what was known when this worker started.
      const learned = Number(await redis.get(keys.learnedSlots));
      if (Number.isInteger(learned) && learned > 0 && learned !== learner.current().slots) learner = learnerFrom(learned);
    }
    const current = await redis.hmget(keys.concurrency, 'mode', 'owner');
    // A fixed cap set by a live worker wins.
    if (current[0] === 'fixed') return;
    const reports = await redis.hgetall(keys.falLoad);
    const load: FalLoad = { running: 0, queued: 0, waiting: 0, waited: 0, inFlight: 0 };
    let sameMoment = true;
    for (const report of Object.values(reports)) {
      const [running, queued, waiting, waited, inFlight, at] = report.split(',').map(Number);
      if (at === undefined || redisNow - at > LOAD_FRESH_MS) continue;
      if (redisNow - at > LOAD_SAME_MOMENT_MS) sameMoment = false;
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
      .catch((error: unknown) => {
        if (!options.onError?.(error)) log.warn('could not share what fal says of this worker\'s requests', { error: ctx.scrub((error as Error).message) });
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
      await lua.falbatchDropLease(keys.concurrencyLeader, id).catch(() => undefined);
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
