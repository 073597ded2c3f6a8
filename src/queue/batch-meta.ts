import { BatchNotFoundError } from '../errors.js';
import type { RecordLabel } from '../manifest/manifest-format.js';
import { formatDuration } from '../time.js';
import { redisPersists, redisUptimeMs, type RedisClient } from './connection.js';
import { emulatedTwin, type KeyLayout } from './keys.js';
import { retentionArg, retentionFromMeta } from './retention.js';

/** What a batch remembers of itself (HASH `batch:<name>:meta`). */
export interface BatchMeta {
  name: string;
  /** The manifest's path when it was last enqueued. */
  manifest: string;
  createdAt: number;
  updatedAt: number;
  defaultEndpoint: string;
  /** Manifest rows (rejected ones included) at the last complete enqueue. */
  rows: number;
  rejected: number;
  /** Rows never called because there was nothing to do (their caption file exists), at the last complete enqueue. */
  skipped: number;
  /** Names of the carried-through columns, in order. */
  extras: string[];
  /** Absolute path the rows' local image files (RowEntry.files) are relative to. */
  filesRoot: string;
  /**
   * Extension of the caption files beside the batch's images, when its last enqueue had
   * `--captions` (e.g. `.txt`); '' when it had not. Export reads those files: a skipped row's
   * caption, and metadata.jsonl's text.
   */
  captionExt: string;
  /**
   * `--caption-prefix` and `--caption-suffix` of that enqueue ('' when none): `export --captions`
   * without them writes the caption files as the enqueue said (a trigger word kept).
   */
  captionPrefix: string;
  captionSuffix: string;
  /**
   * How long the batch is kept after its last write (ms; Infinity: until pruned). Undefined for a
   * batch from before retention: the namespace default applies (see queue/retention.ts).
   */
  retentionMs: number | undefined;
  /**
   * What its source's records are called in messages ('file' for a folder or bucket prefix, whose
   * rejections are named by their file); undefined for a batch from before it was kept: read from
   * the manifest's name.
   */
  records: RecordLabel | undefined;
}

export async function readBatchMeta(redis: RedisClient, keys: KeyLayout, batch: string): Promise<BatchMeta | undefined> {
  const raw = await redis.hgetall(keys.batch(batch).meta);
  if (!raw['name']) return undefined;
  return {
    name: raw['name'],
    manifest: raw['manifest'] ?? '',
    createdAt: Number(raw['created_at'] ?? 0),
    updatedAt: Number(raw['updated_at'] ?? 0),
    defaultEndpoint: raw['default_endpoint'] ?? '',
    rows: Number(raw['rows'] ?? 0),
    rejected: Number(raw['rejected'] ?? 0),
    skipped: Number(raw['skipped'] ?? 0),
    extras: raw['extras'] ? (JSON.parse(raw['extras']) as string[]) : [],
    filesRoot: raw['files_root'] ?? '',
    captionExt: raw['caption_ext'] ?? '',
    captionPrefix: raw['caption_prefix'] ?? '',
    captionSuffix: raw['caption_suffix'] ?? '',
    retentionMs: retentionFromMeta(raw['retention_ms']),
    records: raw['records'] === 'file' || raw['records'] === 'line' || raw['records'] === 'row' ? raw['records'] : undefined,
  };
}

export function metaFields(meta: Partial<BatchMeta>): Record<string, string> {
  const fields: Record<string, string> = {};
  if (meta.name !== undefined) fields['name'] = meta.name;
  if (meta.manifest !== undefined) fields['manifest'] = meta.manifest;
  if (meta.createdAt !== undefined) fields['created_at'] = String(meta.createdAt);
  if (meta.updatedAt !== undefined) fields['updated_at'] = String(meta.updatedAt);
  if (meta.defaultEndpoint !== undefined) fields['default_endpoint'] = meta.defaultEndpoint;
  if (meta.rows !== undefined) fields['rows'] = String(meta.rows);
  if (meta.rejected !== undefined) fields['rejected'] = String(meta.rejected);
  if (meta.skipped !== undefined) fields['skipped'] = String(meta.skipped);
  if (meta.extras !== undefined) fields['extras'] = JSON.stringify(meta.extras);
  if (meta.filesRoot !== undefined) fields['files_root'] = meta.filesRoot;
  if (meta.captionExt !== undefined) fields['caption_ext'] = meta.captionExt;
  if (meta.captionPrefix !== undefined) fields['caption_prefix'] = meta.captionPrefix;
  if (meta.captionSuffix !== undefined) fields['caption_suffix'] = meta.captionSuffix;
  if (meta.retentionMs !== undefined) fields['retention_ms'] = retentionArg(meta.retentionMs);
  if (meta.records !== undefined) fields['records'] = meta.records;
  return fields;
}

/**
 * The error for a batch that is not there, with a hint: the batch is in the namespace of emulated
 * runs (`--emulate`), or Redis may have lost it (a Redis that keeps nothing on disk forgets every
 * batch when it restarts).
 */
export async function batchNotFound(redis: RedisClient, batch: string, keys: KeyLayout): Promise<BatchNotFoundError> {
  const twin = emulatedTwin(keys);
  if (twin && (await redis.exists(twin.batch(batch).meta).catch(() => 0)) === 1) {
    return new BatchNotFoundError(
      batch,
      `It is a batch of an emulated run (--emulate): emulated runs live in a namespace of their own, ${twin.bullPrefix}. Add \`--prefix ${twin.bullPrefix}\` to reach it.`,
    );
  }
  if ((await redisPersists(redis)) !== false) return new BatchNotFoundError(batch);
  const uptime = await redisUptimeMs(redis);
  const since = uptime === undefined ? '' : ` and started ${formatDuration(uptime)} ago`;
  return new BatchNotFoundError(
    batch,
    `This Redis keeps nothing on disk (no AOF, no RDB)${since}: a batch enqueued before it last started was lost with it; enqueue (or run) its manifest again.`,
  );
}
