import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './connection.js';

/**
 * falbatch's Lua scripts, one file each in src/redis-scripts/ (as BullMQ keeps its own in
 * src/commands), loaded and typed here, the one place that defines them on a client.
 *
 * Each file opens with a comment saying what the script does, a line per key (`KEYS[1] …`) and per
 * argument (`ARGV[1] …`), and what it returns. `KEYS[n..]` says the keys go on to the end: the
 * caller then passes the number of keys first. A line `--- @include "includes/x"` stands for the
 * file includes/x.lua (functions shared by several scripts).
 *
 * The files are read from src/redis-scripts/ whether this runs from src/ (tests) or from dist/ (the
 * build): tsc copies no .lua, so they ship as they are (package.json `files`, the Dockerfile), and
 * a build never holds a stale copy.
 */
export const SCRIPTS_DIR = fileURLToPath(new URL('../../src/redis-scripts/', import.meta.url));

/** The keys of a script whose keys go on to the end (`KEYS[n..]`): the caller passes their number first. */
const GIVEN = undefined;

/** Each script's command, its file and its number of keys (GIVEN: the caller passes it). */
const SCRIPTS = {
  falbatchAbandonRow: { file: 'abandon-row', keys: 3 },
  falbatchAppendRows: { file: 'append-rows', keys: 1 },
  falbatchBacklogCommit: { file: 'backlog-commit', keys: 3 },
  falbatchBacklogForget: { file: 'backlog-forget', keys: 2 },
  falbatchBacklogStore: { file: 'backlog-store', keys: 3 },
  falbatchBeginRow: { file: 'begin-row', keys: GIVEN },
  falbatchCompareAndDelete: { file: 'compare-and-delete', keys: 1 },
  falbatchCompareAndPexpire: { file: 'compare-and-pexpire', keys: 1 },
  falbatchCompareAndSet: { file: 'compare-and-set', keys: 1 },
  falbatchCountActive: { file: 'count-active', keys: 1 },
  falbatchDropRequest: { file: 'drop-request', keys: 1 },
  falbatchEditRow: { file: 'edit-row', keys: 3 },
  falbatchForgetFailure: { file: 'forget-failure', keys: 2 },
  falbatchHoldLease: { file: 'hold-lease', keys: 1 },
  falbatchMigrateLedger: { file: 'migrate-ledger', keys: GIVEN },
  falbatchOpenBatch: { file: 'open-batch', keys: GIVEN },
  falbatchRecordResult: { file: 'record-result', keys: GIVEN },
  falbatchRenewLease: { file: 'renew-lease', keys: GIVEN },
  falbatchReportLoad: { file: 'report-load', keys: 1 },
  falbatchSweepBatch: { file: 'sweep-batch', keys: GIVEN },
  falbatchTakeOverClaim: { file: 'take-over-claim', keys: 1 },
  falbatchTouchBatch: { file: 'touch-batch', keys: GIVEN },
  falbatchWriteCap: { file: 'write-cap', keys: 2 },
} as const satisfies Record<keyof FalbatchScripts, { file: string; keys: number | undefined }>;

/** A script called with its number of keys first, then its keys, then its arguments. */
type Given<Reply> = (numberOfKeys: number, ...keysThenArgs: Array<string | number>) => Promise<Reply>;

/** The scripts as methods of a client (scriptsOn): keys first, then arguments, as each file says. */
export interface FalbatchScripts {
  falbatchAbandonRow(
    active: string,
    request: string,
    inflight: string,
    owner: string,
    drop: '' | 'any' | 'mark',
    mark: string,
    release: '1' | '0',
  ): Promise<number>;
  falbatchAppendRows(draft: string, at: number, ...entries: Array<string | Buffer>): Promise<number>;
  falbatchBacklogCommit(backlog: string, meta: string, index: string, taken: string, n: number, headRows: number, batch: string): Promise<number>;
  falbatchBacklogForget(backlog: string, index: string, batch: string): Promise<number>;
  falbatchBacklogStore(backlog: string, meta: string, index: string, chunk: Buffer, rows: number, order: number, batch: string): Promise<number>;
  falbatchBeginRow: Given<Array<string | null>>;
  falbatchCompareAndDelete(key: string, holder: string): Promise<number>;
  falbatchCompareAndPexpire(key: string, holder: string, ms: number): Promise<number>;
  falbatchCompareAndSet(key: string, seen: string, holder: string, ms: number): Promise<number>;
  falbatchCountActive(active: string, lockBefore: string, lockAfter: string): Promise<number>;
  falbatchDropRequest(request: string, mark: string): Promise<number>;
  falbatchEditRow(rowKeys: string, results: string, counts: string, key: string, fingerprint: string): Promise<number>;
  falbatchForgetFailure(results: string, counts: string, key: string): Promise<number>;
  falbatchHoldLease(key: string, holder: string, ms: number): Promise<number>;
  falbatchMigrateLedger: Given<number>;
  falbatchOpenBatch: Given<string>;
  falbatchRecordResult: Given<number>;
  falbatchRenewLease: Given<number>;
  falbatchReportLoad(key: string, worker: string, report: string, ms: number): Promise<number>;
  falbatchSweepBatch: Given<string>;
  falbatchTakeOverClaim(key: string, from: string, to: string, ms: number): Promise<number>;
  falbatchTouchBatch: Given<number>;
  falbatchWriteCap(key: string, bullMeta: string, auto: '1' | '0', ms: number, cap: number, ...fields: string[]): Promise<number>;
}

/** The same scripts queued on a MULTI or pipeline (scriptsIn). */
export type FalbatchPipelineScripts = { [Name in keyof FalbatchScripts]: (...args: Parameters<FalbatchScripts[Name]>) => ChainableCommander };

export type ScriptName = keyof FalbatchScripts;

export interface ScriptDefinition {
  name: ScriptName;
  /** The file, relative to SCRIPTS_DIR. */
  file: string;
  /** Undefined: the caller passes it (the keys go on to the end). */
  numberOfKeys: number | undefined;
  /** The script as sent to Redis: the file, its includes in place. */
  lua: string;
}

const INCLUDE = /^--- @include "([^"]+)"$/gm;

function readScript(file: string): string {
  try {
    return readFileSync(`${SCRIPTS_DIR}${file}`, 'utf8');
  } catch (error) {
    throw new Error(`falbatch's Redis script ${SCRIPTS_DIR}${file} could not be read: reinstall falbatch (npm ci in a checkout)`, { cause: error });
  }
}

let definitions: readonly ScriptDefinition[] | undefined;

/** Every script, read once (on first use, not at start-up). */
export function scriptDefinitions(): readonly ScriptDefinition[] {
  definitions ??= Object.entries(SCRIPTS).map(([name, { file, keys }]) => ({
    name: name as ScriptName,
    file: `${file}.lua`,
    numberOfKeys: keys,
    lua: readScript(`${file}.lua`).replace(INCLUDE, (_, included: string) => readScript(`${included}.lua`).trimEnd()),
  }));
  return definitions;
}

const defined = new WeakSet<RedisClient>();

/** The client, with every script defined on it (once a client). */
export function scriptsOn(redis: RedisClient): FalbatchScripts {
  if (!defined.has(redis)) {
    for (const { name, numberOfKeys, lua } of scriptDefinitions()) redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
    defined.add(redis);
  }
  return redis as RedisClient & FalbatchScripts;
}

/**
 * A MULTI or pipeline's scripts. It takes them from its client when it is made: call scriptsOn on
 * the client before.
 */
export function scriptsIn(batch: ChainableCommander): FalbatchPipelineScripts {
  if (!('falbatchTouchBatch' in batch))
    throw new Error('the Redis scripts were not defined on the client before this MULTI or pipeline was made: call scriptsOn(redis) first');
  return batch as ChainableCommander & FalbatchPipelineScripts;
}
