import { SECOND } from '../time.js';

/**
 * What the requests of the queue (every worker's) look like at fal right now: how many run
 * (IN_PROGRESS), how many wait in fal's queue for a slot (IN_QUEUE behind others, or for longer
 * than a dispatch takes), and how many are in flight in all (submitting, waiting, running, being
 * read).
 */
export interface FalLoad {
  running: number;
  /** Waiting for a slot: IN_QUEUE behind others, or for longer than a dispatch takes. */
  queued: number;
  /** IN_QUEUE at all (for however short a time). */
  waiting: number;
  /** Started after waiting in fal's queue, since the last observation. */
  waited: number;
  inFlight: number;
  /**
   * The look was taken late (a worker's event loop stalled: a busy machine): what it counts may
   * be old (a request fal finished still shown running, one that waited a moment shown waiting
   * long). It can say requests wait (no room shown), never how many run nor that there is room.
   */
  late?: boolean;
}

/** A change of the in-flight target, and why: what the log says. */
export interface SlotDecision {
  /** The account's slots as learned, or undefined until fal has shown them. */
  slots: number | undefined;
  /** Requests to keep in flight: the slots plus headroom (before that, what is being tried). */
  target: number;
  reason: string;
}

export interface SlotLearnerOptions {
  /** The target before anything is learned. @default 4 (a new fal account's 2 slots plus its headroom) */
  initial?: number;
  /** Slots learned before (an earlier run): where to start, checked again as requests run. */
  slots?: number;
  /** Never more in flight than this. @default 256 */
  max?: number;
  /** Least time a target holds before it is raised: long enough for requests to show they wait. @default 250 ms */
  growEveryMs?: number;
  /** How long running counts are remembered while requests queue (their lower third is the slots). @default 3 s */
  windowMs?: number;
}

/**
 * Requests kept in flight beyond the slots, to hide the round trip between one request ending at
 * fal and the next one submitted: 2, or 10 % of the slots for large accounts (always within the
 * bound of max(2, 15 %)).
 */
export function headroomFor(slots: number): number {
  return Math.max(2, Math.ceil(slots * 0.1));
}

/**
 * Learns an account's fal concurrency from what fal says of our own requests, and decides how
 * many to keep in flight. fal runs at most N requests of an account at once and queues the rest
 * without an error, so:
 *
 * - a request waiting in fal's queue while others of ours run means the account is full: its
 *   slots are how many of ours run meanwhile (the lower third of the recent looks), and the target
 *   becomes slots + headroom;
 * - every request starting at once (none waiting in fal's queue, however briefly) while all the
 *   target is in use and seen running (all but the headroom; once slots are known, more than
 *   them), for growEveryMs since the last change, means there may be more slots: the target grows
 *   (doubles until a limit was seen, then by a quarter);
 * - a look taken late (the worker stalled) says no more than that requests wait;
 * - slots re-learned lower (fal lowered the limit, another client of the account took slots) lower
 *   the target at once; higher ones raise it.
 *
 * Pure: fed observations with the time they were made (observe), no I/O of its own.
 */
export interface SlotLearner {
  /** The current decision. */
  current(): SlotDecision;
  /** Takes in what fal shows now; returns the new decision when the target or the slots changed. */
  observe(load: FalLoad, now: number): SlotDecision | undefined;
}

export function createSlotLearner(options: SlotLearnerOptions = {}): SlotLearner {
  const max = options.max ?? 256;
  const growEveryMs = options.growEveryMs ?? SECOND / 4;
  const windowMs = options.windowMs ?? 3 * SECOND;
  let decision: SlotDecision = {
    slots: options.slots,
    target: Math.min(max, options.initial ?? 4),
    reason: options.slots === undefined ? 'starting: nothing learned yet' : `starting from the ${options.slots} slots learned before`,
  };
  let lastChangeAt = Number.NEGATIVE_INFINITY;
  /** When a request of ours last waited in fal's queue (however briefly): no room shown since. */
  let contendedAt = Number.NEGATIVE_INFINITY;
  /** Since when room has shown in every look (slots known): undefined when the last look showed none. */
  let roomSince: number | undefined;
  /** Running counts seen while requests queued, recently: [time, running]. */
  let seen: Array<[number, number]> = [];

  const change = (next: SlotDecision, now: number): SlotDecision | undefined => {
    if (next.target === decision.target && next.slots === decision.slots) return undefined;
    decision = next;
    lastChangeAt = now;
    return decision;
  };

  return {
    current: () => decision,
    observe(load, now) {
      seen = seen.filter(([at]) => now - at <= windowMs);
      if (load.waiting > 0 || load.waited > 0) contendedAt = now;
      // (Nor does it break a spell of room shown: on a busy machine most looks may be late.)
      if (load.late) return undefined;
      // Full: requests of ours waited for a slot (still waiting, or started after a wait) while others ran.
      if ((load.queued > 0 || load.waited > 0) && load.running > 0) {
        seen.push([now, load.running]);
        // How many of ours run while requests wait, as the recent looks saw it. A look may count a
        // request fal has finished whose end has not reached us yet (one too many), or, summed over
        // workers, reports a few milliseconds apart: the counts lean high, and a target over the
        // account's slots + headroom breaks the bound, so the lower third of the looks is taken.
        const sorted = seen.map(([, running]) => running).sort((a, b) => a - b);
        const slots = sorted[Math.floor((sorted.length - 1) / 3)] as number;
        const target = Math.min(max, slots + headroomFor(slots));
        const was = decision.slots;
        return change(
          {
            slots,
            target,
            reason:
              `requests of ours waited in fal's queue while ${slots} ran: the account runs ${slots} at once` +
              (was !== undefined && was !== slots ? ` (was ${was})` : '') +
              `; keeping ${target} in flight`,
          },
          now,
        );
      }
      // Every request started at once and the whole target is in use: there may be room for more.
      // Once slots are known the target holds a headroom of requests that wait at fal, so a moment
      // without one waiting (they were being submitted or read) is no room: it takes a whole
      // second of every request starting at once (a look counting ours running is too noisy on a
      // busy machine to tell 8 from 7).
      // Room is fal running them: the target in flight with none waiting proves nothing while it
      // is being submitted or read (a worker too busy to hear of a request before it ends sees
      // none waiting, and none running). Before slots are known, all but the headroom must be seen
      // running; after, more than the slots.
      const quietFor = now - Math.max(lastChangeAt, contendedAt);
      const runningNeeded = decision.slots === undefined ? decision.target - headroomFor(decision.target) : decision.slots + 1;
      const roomShown = load.inFlight >= decision.target && load.running >= runningNeeded;
      roomSince = roomShown ? (roomSince ?? now) : undefined;
      const quietNeeded = decision.slots === undefined ? growEveryMs : Math.max(SECOND, 4 * growEveryMs);
      const roomHeld = roomSince !== undefined && (decision.slots === undefined || now - roomSince >= quietNeeded);
      if (roomShown && roomHeld && decision.target < max && quietFor >= quietNeeded) {
        // Before fal has shown any limit, double (a new account has 2 slots, a large one 40 or more);
        // after, step up by a quarter: the limit was raised, or other clients of the account let go.
        const step = decision.slots === undefined ? decision.target : Math.max(1, Math.ceil(decision.target / 4));
        const target = Math.min(max, decision.target + step);
        // (The slots stay as learned until requests wait again: a count of ours running is too
        // noisy to set them from.)
        const slots = decision.slots;
        return change(
          {
            slots,
            target,
            reason: `all ${load.inFlight} requests in flight started at once (${load.running} running, none waiting in fal's queue): trying ${target}`,
          },
          now,
        );
      }
      return undefined;
    },
  };
}
