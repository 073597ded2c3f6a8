import type { Redis } from 'ioredis';
import type { KeyLayout } from '../queue/keys.js';
import type { LedgerEntry, RowResult } from './row-result.js';

// Starts a row, atomically: has it ended? was an identical row already paid for (the ledger keeps
// answers only)? else claim the right to call fal for this input, unless another row holds it.
// One round trip, and no gap in which a twin's answer could land unseen.
// KEYS: results, ledger, inflight. ARGV: row key, fingerprint, owner, claim ttl (ms), resume (1/0).
const BEGIN_ROW = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'ended'} end
local paid = redis.call('HGET', KEYS[2], ARGV[2])
if paid and cjson.decode(paid)['status'] == 'ok' then return {'ledger', paid} end
local current = redis.call('GET', KEYS[3])
if ARGV[5] == '1' or current == false or current == ARGV[3] then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  return {'claimed'}
end
return {'held', current}
`;

// Ends a row, atomically: the first final result for a row key wins, counts move once, the ledger
// learns an answer once, and the row lets go of its claim (if it still holds it). At-least-once
// delivery can run a row twice; this keeps the second run from counting twice.
// KEYS: results, counts, ledger, inflight. ARGV: row key, result, status, fingerprint, ledger entry or '', owner or ''.
const RECORD_RESULT = `
local added = 0
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) end
  added = 1
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[4]) == ARGV[6] then redis.call('DEL', KEYS[4]) end
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
export type RowStart = { kind: 'ended' } | { kind: 'ledger'; entry: LedgerEntry } | { kind: 'claimed' } | { kind: 'held'; owner: string };

export interface RecordOptions {
  /** Also put the answer in the ledger (answers only: identical rows later get it without a call). */
  remember: boolean;
  /** Let go of this owner's claim on the input, if it still holds it. */
  releaseFor?: string;
}

export interface ResultStore {
  /**
   * Starts a row (one atomic step): ended already, answered by the ledger, claimed for this owner,
   * or held by another row. `resume`: the owner resumes its own request and takes the claim back.
   */
  begin(batch: string, key: string, fingerprint: string, owner: string, claimTtlMs: number, resume: boolean): Promise<RowStart>;
  /** Stores a row's final result (first one wins). Returns false when the row already had one. */
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
  falbatchBeginRow(results: string, ledger: string, inflight: string, key: string, fingerprint: string, owner: string, ttlMs: number, resume: string): Promise<string[]>;
  falbatchRecordResult(
    results: string,
    counts: string,
    ledger: string,
    inflight: string,
    key: string,
    json: string,
    status: string,
    fingerprint: string,
    ledgerJson: string,
    owner: string,
  ): Promise<number>;
  falbatchReleaseClaim(key: string, owner: string): Promise<number>;
  falbatchTakeOverClaim(key: string, from: string, to: string, ttlMs: number): Promise<number>;
}

function scriptsOf(redis: Redis): Scripts {
  if (!('falbatchBeginRow' in redis)) {
    redis.defineCommand('falbatchBeginRow', { numberOfKeys: 3, lua: BEGIN_ROW });
    redis.defineCommand('falbatchRecordResult', { numberOfKeys: 4, lua: RECORD_RESULT });
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
    async begin(batch, key, fingerprint, owner, claimTtlMs, resume) {
      const [kind, value] = await scripts.falbatchBeginRow(
        keys.batch(batch).results,
        keys.ledger,
        keys.inflight(fingerprint),
        key,
        fingerprint,
        owner,
        claimTtlMs,
        resume ? '1' : '0',
      );
      if (kind === 'ended') return { kind };
      if (kind === 'claimed') return { kind };
      if (kind === 'ledger') {
        const entry = parse<LedgerEntry>(value);
        return entry ? { kind, entry } : { kind: 'claimed' };
      }
      return { kind: 'held', owner: value ?? '' };
    },
    async record(batch, key, fingerprint, result, options) {
      const batchKeys = keys.batch(batch);
      const added = await scripts.falbatchRecordResult(
        batchKeys.results,
        batchKeys.counts,
        keys.ledger,
        keys.inflight(fingerprint),
        key,
        JSON.stringify(result),
        result.status,
        fingerprint,
        options.remember && result.status === 'ok' ? JSON.stringify(ledgerEntryOf(result)) : '',
        options.releaseFor ?? '',
      );
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
