import type { Redis } from 'ioredis';
import type { KeyLayout } from '../queue/keys.js';
import type { LedgerEntry, RowResult } from './row-result.js';

// Atomic: the first final result for a row key wins, counts move once, the ledger learns it once.
// At-least-once delivery can run a row twice; this keeps the second run from counting twice.
const RECORD_RESULT = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) end
  return 1
end
return 0
`;

// Release a claim only if it is still ours (it may have expired and been taken since).
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

type RecordCommand = (results: string, counts: string, ledger: string, key: string, json: string, status: string, fingerprint: string, ledgerJson: string) => Promise<number>;

export interface ResultStore {
  /** Stores a row's final result (first one wins); `remember` also puts it in the ledger. Returns false when the row already had one. */
  record(batch: string, key: string, fingerprint: string, result: RowResult, remember: boolean): Promise<boolean>;
  get(batch: string, key: string): Promise<RowResult | undefined>;
  getMany(batch: string, keys: readonly string[]): Promise<Array<RowResult | undefined>>;
  ledger(fingerprint: string): Promise<LedgerEntry | undefined>;
  /**
   * Claims the right to call fal for an input, unless another row holds it (then its owner is
   * returned). `resume`: the owner resumes its own request and takes the claim back regardless.
   */
  claim(fingerprint: string, owner: string, ttlMs: number, resume: boolean): Promise<{ mine: true } | { mine: false; owner: string }>;
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

export function createResultStore(redis: Redis, keys: KeyLayout): ResultStore {
  if (!('falbatchRecordResult' in redis)) {
    redis.defineCommand('falbatchRecordResult', { numberOfKeys: 3, lua: RECORD_RESULT });
    redis.defineCommand('falbatchReleaseClaim', { numberOfKeys: 1, lua: RELEASE_CLAIM });
    redis.defineCommand('falbatchTakeOverClaim', { numberOfKeys: 1, lua: TAKE_OVER_CLAIM });
  }
  const commands = redis as unknown as {
    falbatchRecordResult: RecordCommand;
    falbatchReleaseClaim: (key: string, owner: string) => Promise<number>;
    falbatchTakeOverClaim: (key: string, from: string, to: string, ttlMs: number) => Promise<number>;
  };
  const recordCommand = commands.falbatchRecordResult.bind(redis);
  return {
    async record(batch, key, fingerprint, result, remember) {
      const batchKeys = keys.batch(batch);
      const ledger: LedgerEntry | undefined = remember
        ? {
            status: result.status,
            endpoint: result.endpoint,
            finished_at: result.finished_at,
            ...(result.output !== undefined ? { output: result.output } : {}),
            ...(result.partial ? { partial: true } : {}),
            ...(result.error !== undefined ? { error: result.error } : {}),
            ...(result.error_type !== undefined ? { error_type: result.error_type } : {}),
            ...(result.request_id !== undefined ? { request_id: result.request_id } : {}),
          }
        : undefined;
      const added = await recordCommand(
        batchKeys.results,
        batchKeys.counts,
        keys.ledger,
        key,
        JSON.stringify(result),
        result.status,
        fingerprint,
        ledger ? JSON.stringify(ledger) : '',
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
    async claim(fingerprint, owner, ttlMs, resume) {
      const key = keys.inflight(fingerprint);
      if (resume) {
        await redis.set(key, owner, 'PX', ttlMs);
        return { mine: true };
      }
      if ((await redis.set(key, owner, 'PX', ttlMs, 'NX')) === 'OK') return { mine: true };
      const current = await redis.get(key);
      // A row run again after a crash between claim and submit finds its own claim; and a claim that
      // expired in between is free again.
      if (current === owner || current === null) return (await commands.falbatchTakeOverClaim.call(redis, key, current ?? '', owner, ttlMs)) === 1 ? { mine: true } : { mine: false, owner: (await redis.get(key)) ?? '' };
      return { mine: false, owner: current };
    },
    async takeOver(fingerprint, from, to, ttlMs) {
      return (await commands.falbatchTakeOverClaim.call(redis, keys.inflight(fingerprint), from, to, ttlMs)) === 1;
    },
    async release(fingerprint, owner) {
      await commands.falbatchReleaseClaim.call(redis, keys.inflight(fingerprint), owner);
    },
  };
}
