import type { RedisClient } from '../queue/connection.js';
import { DEFAULT_CONFIG } from '../config.js';
import { BatchLostError } from '../errors.js';
import type { BatchKeys, KeyLayout } from '../queue/keys.js';
import { CONTROL_FIELDS, controlFrom, type BatchControl } from '../queue/batch-control.js';
import { jobIdFor } from '../manifest/row-key.js';
import { RETENTION_LUA, retentionArg, retentionTail, retentionTailLength, type RetentionSettings } from '../queue/retention.js';
import { RATE_SLOT_MS, RATE_SLOTS, statsIncrements } from './batch-figures.js';
import type { LedgerEntry, RowResult } from './row-result.js';

// Starts a row, atomically: has it ended? was an identical row already paid for (the ledger keeps
// answers only)? else claim the right to call fal for this input, unless another row holds it.
// Then the row's own request: one saved by any delivery of this row is resumed; one being
// submitted right now by another delivery (a worker that lost its lock while alive) is waited
// for; otherwise this delivery marks the row as submitting, before it calls fal.
// One round trip, and no gap in which a twin's answer or another delivery's submit could slip by.
// A job whose content is no longer the row's (the row was edited and enqueued again) is stale.
// A batch whose meta is gone while its row's job still exists expired (its retention ran out) or
// was pruned: the row is dropped (its saved request and its claim with it). With the job gone
// too, Redis lost the batch (flushed, or restarted without persistence).
// A row beginning is a write to its batch: every key of the batch lives its retention again (at
// least the unfinished floor: the row has not ended), lazily (see touchBatch). The ledger is a key per answer; one found
// only in the ledger hash of earlier versions moves to its own key. A reused answer lives at
// least this batch's retention from now.
// A row that goes on to call fal (or to resume its request) joins the batch's active rows.
// Gated (ARGV[12] = 1): a batch paused, cancelled or under a spend cap is not begun; what the
// worker needs to decide (the control fields, the spend so far, the row's request) comes back
// instead, in the same round trip, changing nothing. A plain running batch, the common case, begins.
// KEYS: results, ledger entry, inflight, request, row keys, meta, active, legacy ledger hash, job, stats, then the retention tail.
// ARGV: row key, fingerprint, owner, claim ttl (ms), resume (1/0), submitting marker, marker ttl (ms), now (ms),
//       batch, default retention, unfinished floor (ms), gated (1/0), then the control fields to read.
const BEGIN_ROW = `${RETENTION_LUA}
if redis.call('EXISTS', KEYS[6]) == 0 then
  if redis.call('EXISTS', KEYS[9]) == 0 then return {'lost'} end
  -- Nobody will read this row's request or claim again.
  redis.call('DEL', KEYS[4])
  if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
  return {'gone'}
end
if ARGV[12] == '1' then
  local control = redis.call('HMGET', KEYS[6], 'ctl_state', 'max_spend')
  if control[1] == 'paused' or control[1] == 'cancelled' or control[2] then
    local spend = redis.call('HMGET', KEYS[10], 'billed', 'inference_ms')
    return {'control', redis.call('GET', KEYS[4]), spend[1], spend[2], unpack(redis.call('HMGET', KEYS[6], unpack(ARGV, 13)))}
  end
end
local retention = retentionOf(KEYS[6], ARGV[10])
touchBatch(11, ARGV[9], retention, tonumber(ARGV[11]), true, true)
local wanted = redis.call('HGET', KEYS[5], ARGV[1])
if wanted and wanted ~= ARGV[2] then return {'stale'} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'ended'} end
local paid = redis.call('GET', KEYS[2])
if not paid then
  paid = redis.call('HGET', KEYS[8], ARGV[2])
  if paid and cjson.decode(paid)['status'] == 'ok' then
    keepAnswer(KEYS[2], paid, retention)
    redis.call('HDEL', KEYS[8], ARGV[2])
  end
end
if paid and cjson.decode(paid)['status'] == 'ok' then
  extendAnswer(KEYS[2], retention)
  return {'ledger', paid}
end
local request = redis.call('GET', KEYS[4])
local saved = request and string.sub(request, 1, 4) == 'rid:'
local current = redis.call('GET', KEYS[3])
if not (ARGV[5] == '1' or saved or current == false or current == ARGV[3]) then return {'held', current} end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[7], ARGV[3], ARGV[8])
liveAsMeta(KEYS[7], KEYS[6])
if saved then return {'resume', request} end
if ARGV[5] == '1' then return {'claimed'} end
if request and request ~= ARGV[6] then return {'submitting', request} end
redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7])
return {'claimed'}
`;

// Takes the submitting mark over from a delivery whose connection is gone, unless it changed.
// KEYS: request. ARGV: the mark seen, this delivery's mark, ttl (ms).
const TAKE_OVER_SUBMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`;

// Drops a row's request state: any (ARGV[1] == ''), or only this delivery's submitting mark.
const DROP_REQUEST = `
if ARGV[1] == '' or redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// Ends a row, atomically: the first final result for a row key wins, counts move once, the ledger
// learns an answer once, and the row lets go of its claim (if it still holds it). At-least-once
// delivery can run a row twice; this keeps the second run from counting twice.
// The row's request state goes too: the row has ended. A stale job (the row's content changed
// since) pairs its answer with no row: it only goes to the ledger, under the content it answers.
// A batch Redis lost gets nothing written under its keys (nobody would read them); its answer
// still goes to the ledger, so enqueuing the manifest again does not pay for it. The same for a
// batch that expired or was pruned (its meta is gone but the row's job is still there: -3, not -2).
// The ledger is a key per answer, living the batch's retention (the default for a batch that is
// gone); an answer already there wins, and lives at least as long.
// Ending a row is a write to its batch: every key of the batch lives its retention again, from
// now; at least the unfinished floor while rows are still to end or a producer writes it.
// The batch's stats (figures `status` shows in O(1)) move with the counts, once per row: sums and
// latency histogram buckets (fields and increments computed by statsIncrements), the first and last
// finish, and a ring of RATE_SLOTS slots of RATE_SLOT_MS counting rows ended (the rate over the
// last minute); a slot is reset when it comes round again, and a finish older than the slot's
// current lap (a worker's clock far behind) is left out of the rate.
// The row leaves the batch's active rows.
// KEYS: results, counts, ledger entry, inflight, request, row keys, meta, stats, active, job, then the retention tail.
// ARGV: row key, result, status, fingerprint, ledger entry or '', owner or '', finished at (ms),
//       batch, default retention, unfinished floor (ms), then stats field/increment pairs.
const RECORD_RESULT = `${RETENTION_LUA}
local added = 0
local wanted = redis.call('HGET', KEYS[6], ARGV[1])
local retention = retentionOf(KEYS[7], ARGV[9])
if redis.call('EXISTS', KEYS[7]) == 0 then
  if ARGV[5] ~= '' then keepAnswer(KEYS[3], ARGV[5], retention) end
  if redis.call('EXISTS', KEYS[10]) == 1 then added = -3 else added = -2 end
elseif wanted and wanted ~= ARGV[4] then
  if ARGV[5] ~= '' then keepAnswer(KEYS[3], ARGV[5], retention) end
  added = -1
elseif redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[5] ~= '' then keepAnswer(KEYS[3], ARGV[5], retention) end
  added = 1
  for i = 11, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[8], ARGV[i], ARGV[i + 1]) end
  local at = tonumber(ARGV[7])
  local first = tonumber(redis.call('HGET', KEYS[8], 'first_at') or '')
  if first == nil or at < first then redis.call('HSET', KEYS[8], 'first_at', ARGV[7]) end
  local last = tonumber(redis.call('HGET', KEYS[8], 'last_at') or '')
  if last == nil or at > last then redis.call('HSET', KEYS[8], 'last_at', ARGV[7]) end
  local slot = math.floor(at / ${RATE_SLOT_MS})
  local ring = slot % ${RATE_SLOTS}
  local lap = tonumber(redis.call('HGET', KEYS[8], 'rt:' .. ring) or '')
  if lap == nil or lap < slot then
    redis.call('HSET', KEYS[8], 'rt:' .. ring, slot, 'r:' .. ring, 1)
  elseif lap == slot then
    redis.call('HINCRBY', KEYS[8], 'r:' .. ring, 1)
  end
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[4]) == ARGV[6] then redis.call('DEL', KEYS[4]) end
if ARGV[6] ~= '' then
  redis.call('DEL', KEYS[5])
  redis.call('HDEL', KEYS[9], ARGV[6])
end
if added >= -1 then touchBatch(11, ARGV[8], retention, tonumber(ARGV[10]), batchOpen(11)) end
return added
`;

// Counts a batch's rows calling fal now: its active rows whose BullMQ job is locked by a worker.
// An entry whose lock is gone belongs to a worker that died (its lock expired) or to a row that
// left without saying so: it is removed, here, atomically (a worker picking the row up again adds
// it back in BEGIN_ROW, under a fresh lock). O(rows in flight), bounded by the workers' concurrency.
// KEYS: active. ARGV: a job lock key's text before and after the job id.
const COUNT_ACTIVE = `
local n = 0
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id .. ARGV[2]) == 1 then n = n + 1 else redis.call('HDEL', KEYS[1], id) end
end
return n
`;

// A row stops calling fal without an answer: it leaves the active rows; its request state goes
// (any, or only this delivery's mark), and its claim (if still its own).
// KEYS: active, request, inflight. ARGV: owner, drop request ('', 'any' or 'mark'), mark, release (1/0).
const ABANDON_ROW = `
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] == 'any' or (ARGV[2] == 'mark' and redis.call('GET', KEYS[2]) == ARGV[3]) then redis.call('DEL', KEYS[2]) end
if ARGV[4] == '1' and redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
`;

// Release a claim only if it is still ours (it may have been taken over since).
const RELEASE_CLAIM = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// Take a claim over from an owner that is gone, unless someone else did first.
const TAKE_OVER_CLAIM = `
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`;

/** How a row starts: see BEGIN_ROW. */
export type RowStart =
  | { kind: 'ended' }
  /** The job's content is no longer the row's: the row was edited and enqueued again. */
  | { kind: 'stale' }
  /** Redis lost the batch (its meta is gone, and the row's job too): nothing is called or written for it. */
  | { kind: 'lost' }
  /** The batch expired (its retention ran out) or was pruned, while its row's job waited: the row is dropped, nothing is called. */
  | { kind: 'gone' }
  | { kind: 'ledger'; entry: LedgerEntry }
  /** Claimed, and marked as being submitted by this delivery (unless it resumes its job data's request). */
  | { kind: 'claimed' }
  /** A request saved by a delivery of this row: resume it. */
  | { kind: 'resume'; requestId: string; submittedAt: number }
  /** Another delivery of this row (`holder`: its mark) is submitting it right now. */
  | { kind: 'submitting'; holder: string }
  | { kind: 'held'; owner: string }
  /**
   * Gated begin only: the batch is paused, cancelled or under a spend cap, and nothing was done.
   * What the worker decides with: the batch's control, its spend so far (the stats' `billed` and
   * `inference_ms`), and the row's request state.
   */
  | { kind: 'control'; control: BatchControl; billed: string | null; inferenceMs: string | null; request: SavedRequest | undefined };

/** Who is submitting a row: the Redis connection of the delivery doing it (alive while its process is). */
export function submittingMark(connectionId: string): string {
  return `submitting:${connectionId}`;
}

/** The connection id in a submitting mark. */
export function markConnection(mark: string): string {
  return mark.slice('submitting:'.length);
}

/** A row's request state (its `request:<job id>` key): a saved fal request, or a delivery submitting it. */
export type SavedRequest = { kind: 'request'; requestId: string; submittedAt: number } | { kind: 'submitting'; holder: string };

/** Reads a request key's value: `rid:<submitted at>:<request id>`, or a submitting mark. */
export function parseSavedRequest(value: string | null | undefined): SavedRequest | undefined {
  if (!value) return undefined;
  if (!value.startsWith('rid:')) return { kind: 'submitting', holder: value };
  const [, at = '0', ...id] = value.split(':');
  return { kind: 'request', requestId: id.join(':'), submittedAt: Number(at) };
}

export interface RecordOptions {
  /** Also put the answer in the ledger (answers only: identical rows later get it without a call). */
  remember: boolean;
  /** Let go of this owner's claim on the input, if it still holds it. */
  releaseFor?: string;
}

export interface BeginOptions {
  /** The job (row delivery) starting: its id owns the claim and the row's request state. */
  owner: string;
  claimTtlMs: number;
  /** The job's data carries a request to resume. */
  resume: boolean;
  /** This delivery's submitting mark (see submittingMark). */
  mark: string;
  /** How long a mark lasts if nobody removes it: the backstop when liveness cannot be checked. */
  markTtlMs: number;
  /** Now (ms): when the row joins the batch's active rows. */
  now: number;
  /**
   * Look at the batch's control first: a batch paused, cancelled or under a spend cap is answered
   * `control` (nothing begun) for the worker to decide; begin again ungated to go on.
   */
  gated?: boolean;
}

/** How a row that called fal stops without an answer (see ResultStore.abandon). */
export interface AbandonOptions {
  /** Forget the row's request state: any (`'any'`: the request is gone at fal), or only this mark (a submit that failed). */
  dropRequest?: { mark: string } | 'any';
  /** Let go of the row's claim on its input (when it still holds it). */
  release: boolean;
}

export interface ResultStore {
  /**
   * Starts a row (one atomic step): ended already, answered by the ledger, a saved request to
   * resume, another delivery submitting it, claimed (and marked as submitting) for this delivery,
   * or held by another row; gated (`options.gated`), the batch's control first when it is paused,
   * cancelled or under a spend cap (nothing done).
   */
  begin(batch: string, key: string, fingerprint: string, options: BeginOptions): Promise<RowStart>;
  /** Takes the submitting mark from a delivery that is gone; false if the mark changed meanwhile. */
  takeOverSubmit(owner: string, seen: string, mark: string, ttlMs: number): Promise<boolean>;
  /** Saves the request a row submitted: any delivery of the row resumes it from now on. */
  saveRequest(owner: string, requestId: string, submittedAt: number, ttlMs: number): Promise<void>;
  /** Forgets the row's request (it is gone at fal), or only this delivery's mark (`mark`). */
  dropRequest(owner: string, mark?: string): Promise<void>;
  /**
   * Stores a row's final result (first one wins). Returns false when the row already had one,
   * when the result is stale (the row's content changed since its job was made), or when the batch
   * expired or was pruned meanwhile (only the ledger learns the answer). Throws BatchLostError,
   * writing only the ledger, when Redis lost the batch.
   */
  record(batch: string, key: string, fingerprint: string, result: RowResult, options: RecordOptions): Promise<boolean>;
  get(batch: string, key: string): Promise<RowResult | undefined>;
  getMany(batch: string, keys: readonly string[]): Promise<Array<RowResult | undefined>>;
  /** The paid answers for many fingerprints, in order (one round trip, two with a ledger from before retention). */
  ledgerMany(fingerprints: readonly string[]): Promise<Array<LedgerEntry | undefined>>;
  /** Takes the claim from `from` (gone without an answer), unless another row took it first. */
  takeOver(fingerprint: string, from: string, to: string, ttlMs: number): Promise<boolean>;
  release(fingerprint: string, owner: string): Promise<void>;
  /**
   * A row that began calling fal stops without an answer (to retry, be put off, fail or be handed
   * back), in one step: it leaves the batch's active rows and, as told, forgets its request state
   * and lets go of its claim.
   */
  abandon(batch: string, owner: string, fingerprint: string, options: AbandonOptions): Promise<void>;
  /**
   * The row (job id `owner`) stops calling fal without an answer (handed back, put off, failed):
   * it leaves the batch's active rows. Recording a result does this too.
   */
  leave(batch: string, owner: string): Promise<void>;
  /**
   * Rows of the batch calling fal right now, in O(rows in flight): rows that began a call and have
   * not ended or left, and whose job a live worker still holds (BullMQ's lock). A worker killed
   * mid-row stops counting once its lock expires (`lockDurationMs`), without anyone cleaning up.
   */
  inFlight(batch: string): Promise<number>;
  /** The row's request state (job id `owner`): the fal request any delivery saved, or the mark of one submitting it. */
  savedRequest(owner: string): Promise<SavedRequest | undefined>;
}

function parse<T>(json: string | null | undefined): T | undefined {
  if (!json) return undefined;
  try {
    return JSON.parse(json) as T;
  } catch {
    return undefined;
  }
}

interface Scripts {
  /** KEYS and ARGV as BEGIN_ROW says, the retention tail last among the keys. */
  falbatchBeginRow(...args: Array<string | number>): Promise<Array<string | null>>;
  falbatchTakeOverSubmit(request: string, seen: string, mark: string, ttlMs: number): Promise<number>;
  falbatchDropRequest(request: string, mark: string): Promise<number>;
  /** KEYS and ARGV as RECORD_RESULT says, the retention tail last among the keys. */
  falbatchRecordResult(...args: Array<string | number>): Promise<number>;
  falbatchReleaseClaim(key: string, owner: string): Promise<number>;
  falbatchAbandonRow(active: string, request: string, inflight: string, owner: string, drop: string, mark: string, release: string): Promise<number>;
  falbatchTakeOverClaim(key: string, from: string, to: string, ttlMs: number): Promise<number>;
  falbatchCountActive(active: string, lockBefore: string, lockAfter: string): Promise<number>;
}

function scriptsOf(redis: RedisClient, keys: KeyLayout): Scripts {
  if (!('falbatchBeginRow' in redis)) {
    const tail = retentionTailLength(keys);
    redis.defineCommand('falbatchBeginRow', { numberOfKeys: 10 + tail, lua: BEGIN_ROW });
    redis.defineCommand('falbatchRecordResult', { numberOfKeys: 10 + tail, lua: RECORD_RESULT });
    redis.defineCommand('falbatchTakeOverSubmit', { numberOfKeys: 1, lua: TAKE_OVER_SUBMIT });
    redis.defineCommand('falbatchDropRequest', { numberOfKeys: 1, lua: DROP_REQUEST });
    redis.defineCommand('falbatchReleaseClaim', { numberOfKeys: 1, lua: RELEASE_CLAIM });
    redis.defineCommand('falbatchAbandonRow', { numberOfKeys: 3, lua: ABANDON_ROW });
    redis.defineCommand('falbatchTakeOverClaim', { numberOfKeys: 1, lua: TAKE_OVER_CLAIM });
    redis.defineCommand('falbatchCountActive', { numberOfKeys: 1, lua: COUNT_ACTIVE });
  }
  return redis as unknown as Scripts;
}

function ledgerEntryOf(result: RowResult): LedgerEntry {
  return {
    status: result.status,
    endpoint: result.endpoint,
    finished_at: result.finished_at,
    ...(result.output !== undefined ? { output: result.output } : {}),
    ...(result.partial ? { partial: true } : {}),
    ...(result.request_id !== undefined ? { request_id: result.request_id } : {}),
  };
}

/**
 * The result store over one connection. `retention`: config.retentionMs and
 * config.unfinishedRetentionMs (default: DEFAULT_CONFIG's), what batches from before retention and
 * answers of batches that are gone are kept for, and the floor of unfinished batches.
 */
export function createResultStore(redis: RedisClient, keys: KeyLayout, retention: RetentionSettings = { retentionMs: DEFAULT_CONFIG.retentionMs, unfinishedRetentionMs: DEFAULT_CONFIG.unfinishedRetentionMs }): ResultStore {
  const scripts = scriptsOf(redis, keys);
  const defaultRetention = retentionArg(retention.retentionMs);
  // A batch's keys and retention tail, made once per batch rather than for every call of every row.
  const batchCache = new Map<string, { keys: BatchKeys; tail: string[] }>();
  const cachedBatch = (batch: string): { keys: BatchKeys; tail: string[] } => {
    let cached = batchCache.get(batch);
    if (!cached) {
      if (batchCache.size >= 1000) batchCache.clear();
      cached = { keys: keys.batch(batch), tail: retentionTail(keys, batch) };
      batchCache.set(batch, cached);
    }
    return cached;
  };
  const batchKeys = (batch: string): BatchKeys => cachedBatch(batch).keys;
  const ledgerMany = async (fingerprints: readonly string[]): Promise<Array<LedgerEntry | undefined>> => {
    if (fingerprints.length === 0) return [];
    const found: Array<string | null> = await redis.mget(...fingerprints.map((fingerprint) => keys.ledger(fingerprint)));
    // Answers from before retention, not moved to their own keys yet.
    const missing = fingerprints.filter((_, i) => found[i] === null || found[i] === undefined);
    if (missing.length > 0 && (await redis.exists(keys.legacyLedger)) === 1) {
      const legacy = await redis.hmget(keys.legacyLedger, ...missing);
      let next = 0;
      fingerprints.forEach((_, i) => {
        if (found[i] === null || found[i] === undefined) found[i] = legacy[next++] ?? null;
      });
    }
    return found.map((json) => {
      const entry = parse<LedgerEntry>(json);
      return entry?.status === 'ok' ? entry : undefined;
    });
  };
  return {
    async begin(batch, key, fingerprint, options) {
      const { keys: batchKeys, tail } = cachedBatch(batch);
      const reply = await scripts.falbatchBeginRow(
        batchKeys.results,
        keys.ledger(fingerprint),
        keys.inflight(fingerprint),
        keys.request(options.owner),
        batchKeys.keys,
        batchKeys.meta,
        batchKeys.active,
        keys.legacyLedger,
        keys.job(options.owner),
        batchKeys.stats,
        ...tail,
        key,
        fingerprint,
        options.owner,
        options.claimTtlMs,
        options.resume ? '1' : '0',
        options.mark,
        options.markTtlMs,
        options.now,
        batch,
        defaultRetention,
        retention.unfinishedRetentionMs,
        options.gated ? '1' : '0',
        ...CONTROL_FIELDS,
      );
      const [kind, value] = reply;
      if (kind === 'control') {
        const [, request, billed, inferenceMs, ...control] = reply as Array<string | null>;
        return { kind, control: controlFrom(control), billed: billed ?? null, inferenceMs: inferenceMs ?? null, request: parseSavedRequest(request) };
      }
      if (kind === 'ended' || kind === 'claimed' || kind === 'stale' || kind === 'lost' || kind === 'gone') return { kind };
      if (kind === 'ledger') {
        // (The script decoded this entry already: it parses.)
        const entry = parse<LedgerEntry>(value);
        if (!entry) throw new Error(`ledger entry for ${fingerprint} does not parse`);
        return { kind, entry };
      }
      if (kind === 'resume') {
        const saved = parseSavedRequest(value);
        if (saved?.kind !== 'request') throw new Error(`request key of ${options.owner} holds no request id`);
        return { kind, requestId: saved.requestId, submittedAt: saved.submittedAt };
      }
      if (kind === 'submitting') return { kind, holder: value ?? '' };
      return { kind: 'held', owner: value ?? '' };
    },
    async takeOverSubmit(owner, seen, mark, ttlMs) {
      return (await scripts.falbatchTakeOverSubmit(keys.request(owner), seen, mark, ttlMs)) === 1;
    },
    async saveRequest(owner, requestId, submittedAt, ttlMs) {
      await redis.set(keys.request(owner), `rid:${submittedAt}:${requestId}`, 'PX', ttlMs);
    },
    async dropRequest(owner, mark) {
      await scripts.falbatchDropRequest(keys.request(owner), mark ?? '');
    },
    async record(batch, key, fingerprint, result, options) {
      const { keys: batchKeys, tail } = cachedBatch(batch);
      const added = await scripts.falbatchRecordResult(
        batchKeys.results,
        batchKeys.counts,
        keys.ledger(fingerprint),
        keys.inflight(fingerprint),
        keys.request(options.releaseFor ?? ''),
        batchKeys.keys,
        batchKeys.meta,
        batchKeys.stats,
        batchKeys.active,
        // The row's job: still there when the batch expired or was pruned, gone when Redis lost everything.
        keys.job(options.releaseFor ?? jobIdFor(batch, key, fingerprint)),
        ...tail,
        key,
        JSON.stringify(result),
        result.status,
        fingerprint,
        options.remember && result.status === 'ok' ? JSON.stringify(ledgerEntryOf(result)) : '',
        options.releaseFor ?? '',
        result.finished_at,
        batch,
        defaultRetention,
        retention.unfinishedRetentionMs,
        ...statsIncrements(result).flat(),
      );
      if (added === -2) throw new BatchLostError(batch);
      return added === 1;
    },
    async get(batch, key) {
      return parse<RowResult>(await redis.hget(keys.batch(batch).results, key));
    },
    async getMany(batch, rowKeys) {
      if (rowKeys.length === 0) return [];
      const values = await redis.hmget(keys.batch(batch).results, ...rowKeys);
      return values.map((v) => parse<RowResult>(v));
    },
    ledgerMany,
    async takeOver(fingerprint, from, to, ttlMs) {
      return (await scripts.falbatchTakeOverClaim(keys.inflight(fingerprint), from, to, ttlMs)) === 1;
    },
    async release(fingerprint, owner) {
      await scripts.falbatchReleaseClaim(keys.inflight(fingerprint), owner);
    },
    async leave(batch, owner) {
      await redis.hdel(batchKeys(batch).active, owner);
    },
    async abandon(batch, owner, fingerprint, options) {
      const drop = options.dropRequest;
      await scripts.falbatchAbandonRow(
        batchKeys(batch).active,
        keys.request(owner),
        keys.inflight(fingerprint),
        owner,
        drop === undefined ? '' : drop === 'any' ? 'any' : 'mark',
        drop === undefined || drop === 'any' ? '' : drop.mark,
        options.release ? '1' : '0',
      );
    },
    async inFlight(batch) {
      const [before = '', after = ''] = keys.jobLock('\u0000').split('\u0000');
      return scripts.falbatchCountActive(keys.batch(batch).active, before, after);
    },
    async savedRequest(owner) {
      return parseSavedRequest(await redis.get(keys.request(owner)));
    },
  };
}
