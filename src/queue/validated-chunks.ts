import { relative, sep } from 'node:path';
import pLimit from 'p-limit';
import type { FalbatchContext } from '../context.js';
import { ManifestError } from '../errors.js';
import { mapColumns, type ColumnMap } from '../manifest/columns.js';
import { LocalImageReader } from '../manifest/local-image.js';
import { headerNameOf } from '../manifest/manifest-records.js';
import { fileFormatOf, type ManifestSource } from '../manifest/manifest-source.js';
import type { RawRecord } from '../manifest/read-records.js';
import { createImageResolver, type LocalImageDelivery } from '../manifest/resolve-images.js';
import { createObjectInfoMemo, createS3ImageSource } from '../manifest/s3-images.js';
import { s3ImagesThrough } from '../manifest/s3-upload.js';
import type { RowMapping } from '../manifest/row-mapping.js';
import { validateRow, type ManifestRow, type RejectedRow } from '../manifest/validate-row.js';
import { captionPath, type CaptionOptions } from '../results/caption-files.js';
import type { ObjectStore } from '../storage/object-store.js';
import { isS3Url } from '../storage/s3-url.js';
import { SECOND } from '../time.js';
import type { RowEntry } from './batch-rows.js';
import { exists, localImageOf } from './caption-targets.js';
import { localImageDelivery, type ImageDeliveryOptions } from './image-delivery.js';

/** Most characters of row text (inline data URIs included) one chunk holds. */
const CHUNK_CHARS = 16 * 1024 * 1024;
/** Most rows with local images (each up to maxInlineImageBytes once read) one chunk holds. */
const CHUNK_LOCAL_IMAGES = 16;
/** Rows in the first chunk of a manifest. */
const FIRST_CHUNK = 50;
const FILE_READS_AT_ONCE = 8;

/** A row to call, or one that will not be: rejected (bad), or skipped (`skip`: nothing to do, e.g. its caption exists). */
export type Verdict = { ok: true; row: ManifestRow } | { ok: false; rejected: RejectedRow; skip?: true; image?: string };

/** What decides, before a row is validated, that it needs no call, or cannot have a caption file. */
export interface CaptionPlan {
  captions: CaptionOptions;
  /** Hash of line → why the row's caption file would be shared (see findCaptionClashes). */
  clashKey: string;
}

/**
 * Streams the manifest as validated rows, in chunks. Ids are checked for repeats in Redis (a hash
 * per enqueue run), so memory stays flat however many rows the manifest has.
 */
export async function* validatedChunks(
  ctx: FalbatchContext,
  source: ManifestSource,
  idsKey: string,
  /** The manifest's row mapping (built-in endpoints, --prompt-template or --input), checked by resolveConfig. */
  mapping: RowMapping,
  onHeader: (columns: ColumnMap, header: string[]) => void,
  plan?: CaptionPlan,
  run: ImageDeliveryOptions = {},
  /** How local images become references; default: the configured one (uploads or inline). */
  delivery?: LocalImageDelivery,
): AsyncGenerator<Verdict[]> {
  const { config } = ctx;
  const file = source.path;
  const reader = new LocalImageReader(source.filesRoot, config.maxInlineImageBytes);
  const images = createImageResolver({
    files: reader,
    maxImageBytes: config.maxInlineImageBytes,
    maxSide: config.maxImageSide,
    local: delivery ?? localImageDelivery(ctx, run),
    // A Parquet file's images (🤗 image structs) travel like local files, not inside every job.
    embedded: source.kind === 'parquet',
    // s3:// images: looked up by what the listing said (or one HEAD); the worker signs their URLs.
    s3: createS3ImageSource(ctx.objects, source.objectMemo ?? createObjectInfoMemo()),
    // --upload-images: s3:// images into fal storage now, through the local images' delivery and cache.
    s3Delivery: config.uploadS3Images ? s3ImagesThrough(delivery ?? localImageDelivery(ctx, run), ctx.objects, config.maxInlineImageBytes) : undefined,
  });
  const limit = pLimit(FILE_READS_AT_ONCE);
  let columns: ColumnMap | undefined;
  let pending: RawRecord[] = [];
  let pendingChars = 0;
  let pendingLocal = 0;
  let chunks = 0;

  const settle = async (records: RawRecord[]): Promise<Verdict[]> => {
    const map = columns as ColumnMap;
    const clashes = plan && records.length > 0 ? await ctx.redis.hmget(plan.clashKey, ...records.map((r) => String(r.line))) : [];
    const beforeValidation = (record: { line: number; fields: string[] }, index: number): Promise<Verdict | undefined> =>
      plan ? captionVerdict(record, map, clashes[index], plan, source.filesRoot, config.endpoint, ctx.objects) : Promise.resolve(undefined);
    const verdicts = await Promise.all(
      records.map((record, index) =>
        'error' in record
          ? Promise.resolve<Verdict>({ ok: false, rejected: unreadRow(record, map) })
          : limit(
              async () =>
                (await beforeValidation(record, index)) ??
                validateRow(record, {
                  columns: map,
                  defaultEndpoint: config.endpoint,
                  images,
                  maxPromptChars: config.maxPromptChars,
                  mapping,
                }),
            ),
      ),
    );
    await rejectRepeatedIds(ctx, idsKey, verdicts, source.kind === 'parquet' ? 'row' : 'line');
    return verdicts;
  };

  for await (const record of source.records()) {
    if (!columns) {
      if ('error' in record) {
        throw new ManifestError('MANIFEST_INVALID', `${file}: line ${record.line}: the header row cannot be read: ${record.error}.`, {
          file,
          line: record.line,
        });
      }
      columns = mapColumns(record.fields, file, mapping.layout, headerOf(source));
      onHeader(columns, record.fields);
      continue;
    }
    if ('fields' in record && record.fields.every((f) => f.trim() === '')) continue;
    pending.push(record);
    if ('fields' in record) {
      pendingChars += record.fields.reduce((sum, f) => sum + f.length, 0);
      if (columns.images.some((i) => !/^(https?:|data:|s3:)/i.test((record.fields[i] ?? '').trim()))) pendingLocal++;
    }
    // A chunk is bounded by rows, and by the image bytes it will hold: inline data and local files
    // become data URIs, so a few big images weigh more than thousands of URLs.
    // The first chunk is small, so workers get rows to call within milliseconds of the start.
    const rowsPerChunk = chunks === 0 ? Math.min(FIRST_CHUNK, ctx.config.enqueueChunk) : ctx.config.enqueueChunk;
    if (pending.length >= rowsPerChunk || pendingChars >= CHUNK_CHARS || pendingLocal >= CHUNK_LOCAL_IMAGES) {
      chunks++;
      const chunk = pending;
      pending = [];
      pendingChars = 0;
      pendingLocal = 0;
      yield await settle(chunk);
    }
  }
  if (!columns) throw new ManifestError('MANIFEST_INVALID', `${file} is empty: expected a header row with image_url and prompt columns.`, { file, line: 1 });
  if (pending.length > 0) yield await settle(pending);
}

/** A repeated id: the later row is rejected, naming the line of the first (ids of this run are kept in Redis, at `idsKey`). */
async function rejectRepeatedIds(ctx: FalbatchContext, idsKey: string, verdicts: Verdict[], label: 'line' | 'row'): Promise<void> {
  const withIds = verdicts.flatMap((v, i) => (v.ok && v.row.id !== undefined ? [i] : []));
  if (withIds.length > 0) {
    const pipeline = ctx.redis.pipeline();
    for (const i of withIds) {
      const row = (verdicts[i] as { row: ManifestRow }).row;
      pipeline.hsetnx(idsKey, row.id as string, String(row.line));
      pipeline.hget(idsKey, row.id as string);
    }
    pipeline.pexpire(idsKey, 24 * 3600 * SECOND);
    const replies = (await pipeline.exec()) ?? [];
    withIds.forEach((i, n) => {
      const [, added] = replies[n * 2] ?? [];
      const [, firstLine] = replies[n * 2 + 1] ?? [];
      const row = (verdicts[i] as { row: ManifestRow }).row;
      // (A command resent after a reconnect finds its own line: that is no repeat.)
      if (added === 0 && String(firstLine) !== String(row.line)) {
        verdicts[i] = {
          ok: false,
          rejected: {
            line: row.line,
            reason: `id "${row.id}" appears again (first on ${label} ${String(firstLine)}); ids must be unique`,
            id: row.id,
            endpoint: row.endpoint,
            imageDisplay: row.imageDisplay,
            prompt: row.prompt,
            extras: row.extras,
          },
        };
      }
    });
  }
}

/**
 * Rows with caption files: those whose file another image would share (`clash`) are rejected; in
 * skip mode those whose file exists need nothing (no upload, no call). Decided from the cell alone.
 */
async function captionVerdict(
  record: { line: number; fields: string[] },
  map: ColumnMap,
  clash: string | null | undefined,
  plan: CaptionPlan,
  filesRoot: string,
  defaultEndpoint: string,
  objects: () => ObjectStore,
): Promise<Verdict | undefined> {
  const shown = (reason: string, skip: boolean, image?: string): Verdict => ({
    ok: false,
    rejected: {
      line: record.line,
      reason,
      id: (map.known.id === undefined ? undefined : record.fields[map.known.id]?.trim()) || undefined,
      endpoint: (map.known.endpoint === undefined ? undefined : record.fields[map.known.endpoint]?.trim()) || defaultEndpoint,
      imageDisplay: map.images.map((at) => (record.fields[at] ?? '').trim()).join('|'),
      prompt: map.known.prompt === undefined ? '' : (record.fields[map.known.prompt] ?? '').trim(),
      extras: map.extras.map(({ index: at }) => record.fields[at] ?? ''),
    },
    ...(skip ? { skip: true as const } : {}),
    ...(image !== undefined ? { image } : {}),
  });
  if (clash) return shown(clash, false);
  if (plan.captions.mode !== 'skip') return undefined;
  const image = localImageOf(record.fields, map, filesRoot);
  if (image === undefined) return undefined;
  const caption = captionPath(image, plan.captions.ext);
  return (await exists(caption, objects)) ? shown(`its caption file ${caption} exists (--caption-mode skip)`, true, image) : undefined;
}

/** A record that could not be read as one, with what of it could: the whole fields its line starts with (its id, most often). */
function unreadRow(record: { line: number; error: string; leading?: string[] }, map: ColumnMap): RejectedRow {
  const cell = (at: number | undefined): string => (at === undefined ? undefined : record.leading?.[at]) ?? '';
  return {
    line: record.line,
    reason: record.error,
    id: cell(map.known.id).trim() || undefined,
    endpoint: cell(map.known.endpoint).trim(),
    imageDisplay: '',
    prompt: cell(map.known.prompt).trim(),
    extras: map.extras.map(({ index }) => cell(index)),
  };
}

export function entryOf(verdict: Verdict, filesRoot: string): RowEntry {
  const relativeFiles = (paths: readonly string[]): { files?: string[] } => {
    // An image in a bucket is kept as its s3:// URL; a local one, relative to the files root.
    const files = paths.map((path) => (isS3Url(path) ? path : relative(filesRoot, path).split(sep).join('/')));
    return files.length > 0 ? { files } : {};
  };
  const shown = (line: number, key: string, row: Pick<RejectedRow, 'imageDisplay' | 'prompt' | 'endpoint' | 'extras'>) => ({
    line,
    key,
    imageDisplay: row.imageDisplay,
    prompt: row.prompt,
    endpoint: row.endpoint,
    extras: row.extras,
  });
  if (verdict.ok) return { ...shown(verdict.row.line, verdict.row.key, verdict.row), ...relativeFiles(verdict.row.localImages) };
  const { rejected } = verdict;
  // A skipped row keeps its image too: export reads its caption file (the results, metadata.jsonl).
  if (verdict.skip)
    return {
      ...shown(rejected.line, rejected.id ?? '', rejected),
      skipped: rejected.reason,
      ...relativeFiles(verdict.image === undefined ? [] : [verdict.image]),
    };
  return { ...shown(rejected.line, rejected.id ?? '', rejected), rejected: rejected.reason };
}

/** How a manifest file names its columns in messages (none for a folder or prefix: its columns are falbatch's). */
function headerOf(source: ManifestSource): ReturnType<typeof headerNameOf> | undefined {
  const format = fileFormatOf(source);
  return format === undefined ? undefined : headerNameOf({ format, gzip: false });
}
