import type { RedisClient } from '../queue/connection.js';
import { DEFAULT_CONFIG } from '../config.js';
import { BatchLostError } from '../errors.js';
import type { BatchKeys, KeyLayout } from '../queue/keys.js';
import { CONTROL_FIELDS, controlFrom, type BatchControl } from '../queue/batch-control.js';
import { jobIdFor } from '../manifest/row-key.js';
import { scriptsOn } from '../queue/redis-scripts.js';
import { retentionArg, retentionTail, type RetentionSettings } from '../queue/retention.js';
import { statsIncrements } from './batch-figures.js';
import type { LedgerEntry, RowResult } from './row-result.js';

/** How a row starts: see redis-scripts/begin-row.lua. */
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
export function createResultStore(
  redis: RedisClient,
  keys: KeyLayout,
  retention: RetentionSettings = { retentionMs: DEFAULT_CONFIG.retentionMs, unfinishedRetentionMs: DEFAULT_CONFIG.unfinishedRetentionMs },
): ResultStore {
  const scripts = scriptsOn(redis);
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
        10 + tail.length, // keys: the row's 10 (see the script), then the retention tail
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
      return (await scripts.falbatchCompareAndSet(keys.request(owner), seen, mark, ttlMs)) === 1;
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
        10 + tail.length, // keys: the row's 10 (see the script), then the retention tail
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
      await scripts.falbatchCompareAndDelete(keys.inflight(fingerprint), owner);
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
