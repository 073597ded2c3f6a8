import type { Redis } from 'ioredis';
import { BatchLostError } from '../errors.js';
import type { KeyLayout } from '../queue/keys.js';
import { RATE_SLOT_MS, RATE_SLOTS, statsIncrements } from './batch-figures.js';
import type { LedgerEntry, RowResult } from './row-result.js';

// Starts a row, atomically: has it ended? was an identical row already paid for (the ledger keeps
// answers only)? else claim the right to call fal for this input, unless another row holds it.
// Then the row's own request: one saved by any delivery of this row is resumed; one being
// submitted right now by another delivery (a worker that lost its lock while alive) is waited
// for; otherwise this delivery marks the row as submitting, before it calls fal.
// One round trip, and no gap in which a twin's answer or another delivery's submit could slip by.
// A job whose content is no longer the row's (the row was edited and enqueued again) is stale.
// A batch whose meta is gone was lost by Redis (flushed, or restarted without persistence).
// KEYS: results, ledger, inflight, request, row keys, meta.
// ARGV: row key, fingerprint, owner, claim ttl (ms), resume (1/0), submitting marker, marker ttl (ms).
const BEGIN_ROW = `
if redis.call('EXISTS', KEYS[6]) == 0 then return {'lost'} end
local wanted = redis.call('HGET', KEYS[5], ARGV[1])
if wanted and wanted ~= ARGV[2] then return {'stale'} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'ended'} end
local paid = redis.call('HGET', KEYS[2], ARGV[2])
if paid and cjson.decode(paid)['status'] == 'ok' then return {'ledger', paid} end
local request = redis.call('GET', KEYS[4])
local saved = request and string.sub(request, 1, 4) == 'rid:'
local current = redis.call('GET', KEYS[3])
if not (ARGV[5] == '1' or saved or current == false or current == ARGV[3]) then return {'held', current} end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
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
// still goes to the ledger, so enqueuing the manifest again does not pay for it.
// The batch's stats (figures `status` shows in O(1)) move with the counts, once per row: sums and
// latency histogram buckets (fields and increments computed by statsIncrements), the first and last
// finish, and a ring of RATE_SLOTS slots of RATE_SLOT_MS counting rows ended (the rate over the
// last minute); a slot is reset when it comes round again, and a finish older than the slot's
// current lap (a worker's clock far behind) is left out of the rate.
// KEYS: results, counts, ledger, inflight, request, row keys, meta, stats.
// ARGV: row key, result, status, fingerprint, ledger entry or '', owner or '', finished at (ms), then stats field/increment pairs.
const RECORD_RESULT = `
local added = 0
local wanted = redis.call('HGET', KEYS[6], ARGV[1])
if redis.call('EXISTS', KEYS[7]) == 0 then
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) end
  added = -2
elseif wanted and wanted ~= ARGV[4] then
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) end
  added = -1
elseif redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) end
  added = 1
  for i = 8, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[8], ARGV[i], ARGV[i + 1]) end
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
if ARGV[6] ~= '' then redis.call('DEL', KEYS[5]) end
return added
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
  /** Redis lost the batch (its meta is gone): nothing is called or written for it. */
  | { kind: 'lost' }
  | { kind: 'ledger'; entry: LedgerEntry }
  /** Claimed, and marked as being submitted by this delivery (unless it resumes its job data's request). */
  | { kind: 'claimed' }
  /** A request saved by a delivery of this row: resume it. */
  | { kind: 'resume'; requestId: string; submittedAt: number }
  /** Another delivery of this row (`holder`: its mark) is submitting it right now. */
  | { kind: 'submitting'; holder: string }
  | { kind: 'held'; owner: string };

/** Who is submitting a row: the Redis connection of the delivery doing it (alive while its process is). */
export function submittingMark(connectionId: string): string {
  return `submitting:${connectionId}`;
}

/** The connection id in a submitting mark. */
export function markConnection(mark: string): string {
  return mark.slice('submitting:'.length);
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
}

export interface ResultStore {
  /**
   * Starts a row (one atomic step): ended already, answered by the ledger, a saved request to
   * resume, another delivery submitting it, claimed (and marked as submitting) for this delivery,
   * or held by another row.
   */
  begin(batch: string, key: string, fingerprint: string, options: BeginOptions): Promise<RowStart>;
  /** Takes the submitting mark from a delivery that is gone; false if the mark changed meanwhile. */
  takeOverSubmit(owner: string, seen: string, mark: string, ttlMs: number): Promise<boolean>;
  /** Saves the request a row submitted: any delivery of the row resumes it from now on. */
  saveRequest(owner: string, requestId: string, submittedAt: number, ttlMs: number): Promise<void>;
  /** Forgets the row's request (it is gone at fal), or only this delivery's mark (`mark`). */
  dropRequest(owner: string, mark?: string): Promise<void>;
  /**
   * Stores a row's final result (first one wins). Returns false when the row already had one, or
   * when the result is stale (the row's content changed since its job was made). Throws
   * BatchLostError, writing only the ledger, when Redis lost the batch.
   */
  record(batch: string, key: string, fingerprint: string, result: RowResult, options: RecordOptions): Promise<boolean>;
  get(batch: string, key: string): Promise<RowResult | undefined>;
  getMany(batch: string, keys: readonly string[]): Promise<Array<RowResult | undefined>>;
  ledger(fingerprint: string): Promise<LedgerEntry | undefined>;
  /** Takes the claim from `from` (gone without an answer), unless another row took it first. */
  takeOver(fingerprint: string, from: string, to: string, ttlMs: number): Promise<boolean>;
  release(fingerprint: string, owner: string): Promise<void>;
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
  falbatchBeginRow(
    results: string,
    ledger: string,
    inflight: string,
    request: string,
    rowKeys: string,
    meta: string,
    key: string,
    fingerprint: string,
    owner: string,
    ttlMs: number,
    resume: string,
    mark: string,
    markTtlMs: number,
  ): Promise<string[]>;
  falbatchTakeOverSubmit(request: string, seen: string, mark: string, ttlMs: number): Promise<number>;
  falbatchDropRequest(request: string, mark: string): Promise<number>;
  falbatchRecordResult(
    results: string,
    counts: string,
    ledger: string,
    inflight: string,
    request: string,
    rowKeys: string,
    meta: string,
    stats: string,
    key: string,
    json: string,
    status: string,
    fingerprint: string,
    ledgerJson: string,
    owner: string,
    finishedAt: number,
    ...increments: Array<string | number>
  ): Promise<number>;
  falbatchReleaseClaim(key: string, owner: string): Promise<number>;
  falbatchTakeOverClaim(key: string, from: string, to: string, ttlMs: number): Promise<number>;
}

function scriptsOf(redis: Redis): Scripts {
  if (!('falbatchBeginRow' in redis)) {
    redis.defineCommand('falbatchBeginRow', { numberOfKeys: 6, lua: BEGIN_ROW });
    redis.defineCommand('falbatchRecordResult', { numberOfKeys: 8, lua: RECORD_RESULT });
    redis.defineCommand('falbatchTakeOverSubmit', { numberOfKeys: 1, lua: TAKE_OVER_SUBMIT });
    redis.defineCommand('falbatchDropRequest', { numberOfKeys: 1, lua: DROP_REQUEST });
    redis.defineCommand('falbatchReleaseClaim', { numberOfKeys: 1, lua: RELEASE_CLAIM });
    redis.defineCommand('falbatchTakeOverClaim', { numberOfKeys: 1, lua: TAKE_OVER_CLAIM });
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

export function createResultStore(redis: Redis, keys: KeyLayout): ResultStore {
  const scripts = scriptsOf(redis);
  return {
    async begin(batch, key, fingerprint, options) {
      const [kind, value] = await scripts.falbatchBeginRow(
        keys.batch(batch).results,
        keys.ledger,
        keys.inflight(fingerprint),
        keys.request(options.owner),
        keys.batch(batch).keys,
        keys.batch(batch).meta,
        key,
        fingerprint,
        options.owner,
        options.claimTtlMs,
        options.resume ? '1' : '0',
        options.mark,
        options.markTtlMs,
      );
      if (kind === 'ended' || kind === 'claimed' || kind === 'stale' || kind === 'lost') return { kind };
      if (kind === 'ledger') {
        const entry = parse<LedgerEntry>(value);
        return entry ? { kind, entry } : { kind: 'claimed' };
      }
      if (kind === 'resume') {
        // rid:<submitted at>:<request id>
        const [, at = '0', ...id] = (value ?? '').split(':');
        return { kind, requestId: id.join(':'), submittedAt: Number(at) };
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
      const batchKeys = keys.batch(batch);
      const added = await scripts.falbatchRecordResult(
        batchKeys.results,
        batchKeys.counts,
        keys.ledger,
        keys.inflight(fingerprint),
        keys.request(options.releaseFor ?? ''),
        batchKeys.keys,
        batchKeys.meta,
        batchKeys.stats,
        key,
        JSON.stringify(result),
        result.status,
        fingerprint,
        options.remember && result.status === 'ok' ? JSON.stringify(ledgerEntryOf(result)) : '',
        options.releaseFor ?? '',
        result.finished_at,
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
    async ledger(fingerprint) {
      return parse<LedgerEntry>(await redis.hget(keys.ledger, fingerprint));
    },
    async takeOver(fingerprint, from, to, ttlMs) {
      return (await scripts.falbatchTakeOverClaim(keys.inflight(fingerprint), from, to, ttlMs)) === 1;
    },
    async release(fingerprint, owner) {
      await scripts.falbatchReleaseClaim(keys.inflight(fingerprint), owner);
    },
  };
}
