import { randomUUID } from 'node:crypto';
import { relative, sep } from 'node:path';
import pLimit from 'p-limit';
import type { FalbatchContext } from '../context.js';
import type { FalCaller } from '../fal/fal-caller.js';
import type { CheckedUploads } from '../manifest/upload-images.js';
import { BatchLostError, BatchNotFoundError, ConfigError, ManifestError } from '../errors.js';
import { applyBatchSettings, checkBatchSettings, type BatchSettings } from './batch-settings.js';
import { mapColumns, type ColumnMap } from '../manifest/columns.js';
import { checkHeader } from '../manifest/manifest-file.js';
import { createRowMapping } from '../manifest/row-mapping.js';
import { openManifestSource, type ManifestSource } from '../manifest/manifest-source.js';
import { captionPath, type CaptionOptions } from '../results/caption-files.js';
import { exists, findCaptionClashes, localImageOf } from './caption-targets.js';
import { LocalImageReader } from '../manifest/local-image.js';
import { createImageResolver, type LocalImageDelivery } from '../manifest/resolve-images.js';
import { cachedUploadCheck, localImageDelivery, type ImageDeliveryOptions } from './image-delivery.js';
import { createUploadCache } from './upload-cache.js';
import type { RawRecord } from '../manifest/read-records.js';
import { BATCH_NAME, jobIdFor } from '../manifest/row-key.js';
import { validateRow, type ManifestRow, type RejectedRow } from '../manifest/validate-row.js';
import { SECOND } from '../time.js';
import { metaFields } from './batch-meta.js';
import { encodeRowEntry, type RowEntry } from './batch-rows.js';
import { setQueueCap, storeBacklog, topUpQueue, type BacklogRow } from './backlog.js';
import { BatchPrunedError, dropUnstartedBatch, openBatch, PRUNED_LEASE, PRUNED_MARK_MS, sweepExpiredBatches, touchBatch, touchBatchIn, vanishedBatchError } from './retention.js';
import { scriptsIn, scriptsOn } from './redis-scripts.js';

export interface EnqueueOptions {
  /**
   * Path of the CSV manifest, or of a folder of images (one row per image, recursively, with
   * `prompt`). Local image paths resolve against the manifest's folder, the images folder, or
   * config.filesRoot.
   */
  manifest: string;
  /** The prompt for every image of a folder (`--prompt`); a folder needs it, a CSV refuses it. */
  prompt?: string | undefined;
  /**
   * Caption files will be written beside the local images (`--captions`): rows whose images would
   * share one caption file are rejected, and in `skip` mode a row whose caption file exists needs
   * no call (nor upload) and is counted as skipped.
   */
  captions?: CaptionOptions | undefined;
  /** Batch name. Default: the manifest's name plus a hash of its content and settings. */
  batch?: string | undefined;
  /** Abort on the first bad row, before anything is enqueued. */
  strict?: boolean;
  /** Told the batch's name once it is known, before any row is read (`run`'s worker serves that batch only). */
  onBatch?: (batch: string) => void;
  onProgress?: (progress: EnqueueProgress) => void;
  signal?: AbortSignal;
  /**
   * Uploads local images to fal storage (unless config.inlineImages). Default: a fal caller made
   * from the config; without FAL_KEY or FAL_BASE_URL, the first local image stops the enqueue
   * with FAL_KEY_MISSING (a manifest of URLs needs no credentials).
   */
  fal?: FalCaller | undefined;
  /**
   * Cached upload URLs this process checked in earlier enqueues, trusted without a check for a
   * while (a schedule service's ticks: see worker/start-scheduler.ts). Default: each cached URL is
   * checked once in this enqueue.
   */
  checkedUploads?: CheckedUploads | undefined;
  /**
   * Caps what this enqueue adds (a schedule's per-tick --max-rows, --max-spend). Called, in
   * manifest order, with the rows of each chunk that would add a job (new, changed, or lost):
   * returns how many of them, from the first, to add now. The others are left out, as if not read
   * (not marked present, an edited row keeps its old answer), so a later enqueue adds them; they
   * are counted as `deferred`. Default: every row is added.
   */
  admit?: ((rows: readonly ManifestRow[]) => number | Promise<number>) | undefined;
  /** Recorded as the batch's manifest (what status shows) instead of the path read, e.g. the URL it was downloaded from. */
  manifestLabel?: string | undefined;
  /**
   * How long the batch is kept after it was last written to (`--retention`; parseRetention reads
   * `30d`, `12h`, `forever` = Infinity): its results, rows, figures and the answers it pays for,
   * then they expire. Replaces the retention the batch had. Default: the batch keeps its own, and a
   * new batch gets config.retentionMs (30 days).
   */
  retentionMs?: number | undefined;
  /**
   * The batch's priority, fal queue priority and spend cap (`--priority`, `--fal-priority`,
   * `--max-spend` with the `price` it is measured with), stored on the batch: those not given
   * stay as the batch has them. See ops/control.ts.
   */
  settings?: BatchSettings | undefined;
}

/** Another producer holds the batch's lease (it is being enqueued right now). */
export class BatchBusyError extends ConfigError {
  constructor(readonly batch: string) {
    super(
      `Batch ${batch} is being enqueued by another producer right now. Wait for it to finish (a producer that died lets go within ${LEASE_MS / SECOND} s), or use another --batch.`,
    );
  }
}

export interface EnqueueProgress {
  batch: string;
  rows: number;
  added: number;
  present: number;
  rejected: number;
}

export interface Rejection {
  line: number;
  reason: string;
}

export interface EnqueueSummary extends EnqueueProgress {
  manifest: string;
  /** Rows whose key another row of this manifest already has (identical content): called once, answered for all. */
  shared: number;
  /** Rows whose id was enqueued before with other content: called again (the old answer is dropped). */
  changedRows: number;
  /** The first 1,000 of them, with their lines. */
  changed: Rejection[];
  /** The first 1,000 rejections (all of them are in the batch's export). */
  rejections: Rejection[];
  /** Rows that need no call: their image already has a caption file (`--captions`, mode skip). */
  skipped: number;
  /**
   * A folder's files left out as not images (caption files, metadata.jsonl, a .heic photo), by
   * lowercased extension ('' for none); hidden files are not counted. Empty for a CSV.
   */
  notImages: Record<string, number>;
  /** Rows that would have added a job but were left for a later enqueue (`admit`). */
  deferred: number;
  /**
   * Of the batch's rows to call, those stored in its backlog when enqueue ended, not jobs yet (the
   * queue held --max-waiting jobs): they become jobs as workers drain the queue.
   */
  stored: number;
}

const LEASE_MS = 60 * SECOND;
/** Most characters of row text (inline data URIs included) one chunk holds. */
const CHUNK_CHARS = 16 * 1024 * 1024;
/** Most rows with local images (each up to maxInlineImageBytes once read) one chunk holds. */
const CHUNK_LOCAL_IMAGES = 16;
/** Rows in the first chunk of a manifest. */
const FIRST_CHUNK = 50;
const REPORTED_REJECTIONS = 1000;
const FILE_READS_AT_ONCE = 8;

/** A row to call, or one that will not be: rejected (bad), or skipped (`skip`: nothing to do, e.g. its caption exists). */
type Verdict = { ok: true; row: ManifestRow } | { ok: false; rejected: RejectedRow; skip?: true; image?: string };

/** What decides, before a row is validated, that it needs no call, or cannot have a caption file. */
interface CaptionPlan {
  captions: CaptionOptions;
  /** Hash of line → why the row's caption file would be shared (see findCaptionClashes). */
  clashKey: string;
}

/**
 * Streams the manifest as validated rows, in chunks. Ids are checked for repeats in Redis (a hash
 * per enqueue run), so memory stays flat however many rows the manifest has.
 */
async function* validatedChunks(
  ctx: FalbatchContext,
  source: ManifestSource,
  idsKey: string,
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
  });
  const limit = pLimit(FILE_READS_AT_ONCE);
  // One manifest, one mapping (built-in endpoints, --prompt-template or --input), checked by resolveConfig.
  const mapping = createRowMapping(config);
  let columns: ColumnMap | undefined;
  let pending: RawRecord[] = [];
  let pendingChars = 0;
  let pendingLocal = 0;
  let chunks = 0;

  const settle = async (records: RawRecord[]): Promise<Verdict[]> => {
    const map = columns as ColumnMap;
    const clashes = plan && records.length > 0 ? await ctx.redis.hmget(plan.clashKey, ...records.map((r) => String(r.line))) : [];
    // Rows with caption files: those whose file another image would share are rejected; in skip
    // mode those whose file exists need nothing (no upload, no call). Decided from the cell alone.
    const beforeValidation = async (record: { line: number; fields: string[] }, index: number): Promise<Verdict | undefined> => {
      if (!plan) return undefined;
      const shown = (reason: string, skip: boolean, image?: string): Verdict => ({
        ok: false,
        rejected: {
          line: record.line,
          reason,
          id: (map.known.id === undefined ? undefined : record.fields[map.known.id]?.trim()) || undefined,
          endpoint: (map.known.endpoint === undefined ? undefined : record.fields[map.known.endpoint]?.trim()) || config.endpoint,
          imageDisplay: map.images.map((at) => (record.fields[at] ?? '').trim()).join('|'),
          prompt: map.known.prompt === undefined ? '' : (record.fields[map.known.prompt] ?? '').trim(),
          extras: map.extras.map(({ index: at }) => record.fields[at] ?? ''),
        },
        ...(skip ? { skip: true as const } : {}),
        ...(image !== undefined ? { image } : {}),
      });
      const clash = clashes[index];
      if (clash) return shown(clash, false);
      if (plan.captions.mode !== 'skip') return undefined;
      const image = localImageOf(record.fields, map, source.filesRoot);
      if (image === undefined) return undefined;
      const caption = captionPath(image, plan.captions.ext);
      return (await exists(caption)) ? shown(`its caption file ${caption} exists (--caption-mode skip)`, true, image) : undefined;
    };
    const verdicts = await Promise.all(
      records.map((record, index) =>
        'error' in record
          ? Promise.resolve<Verdict>({ ok: false, rejected: unreadRow(record, map) })
          : limit(async () => (await beforeValidation(record, index)) ??
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
    // A repeated id: the later row is rejected, naming the line of the first.
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
              reason: `id "${row.id}" appears again (first on line ${String(firstLine)}); ids must be unique`,
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
    return verdicts;
  };

  for await (const record of source.records()) {
    if (!columns) {
      if ('error' in record) {
        throw new ManifestError('MANIFEST_INVALID', `${file}: line ${record.line}: the header row cannot be read: ${record.error}.`, { file, line: record.line });
      }
      columns = mapColumns(record.fields, file, mapping.layout);
      onHeader(columns, record.fields);
      continue;
    }
    if ('fields' in record && record.fields.every((f) => f.trim() === '')) continue;
    pending.push(record);
    if ('fields' in record) {
      pendingChars += record.fields.reduce((sum, f) => sum + f.length, 0);
      if (columns.images.some((i) => !/^(https?:|data:)/i.test((record.fields[i] ?? '').trim()))) pendingLocal++;
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

function entryOf(verdict: Verdict, filesRoot: string): RowEntry {
  if (!verdict.ok && verdict.skip) {
    const { rejected: row } = verdict;
    // Its image is kept too: export reads its caption file (the results, metadata.jsonl).
    const files = verdict.image === undefined ? [] : [relative(filesRoot, verdict.image).split(sep).join('/')];
    return { line: row.line, key: row.id ?? '', imageDisplay: row.imageDisplay, prompt: row.prompt, endpoint: row.endpoint, extras: row.extras, skipped: row.reason, ...(files.length > 0 ? { files } : {}) };
  }
  if (verdict.ok) {
    const { row } = verdict;
    const files = row.localImages.map((path) => relative(filesRoot, path).split(sep).join('/'));
    return { line: row.line, key: row.key, imageDisplay: row.imageDisplay, prompt: row.prompt, endpoint: row.endpoint, extras: row.extras, ...(files.length > 0 ? { files } : {}) };
  }
  const { rejected } = verdict;
  return {
    line: rejected.line,
    key: rejected.id ?? '',
    imageDisplay: rejected.imageDisplay,
    prompt: rejected.prompt,
    endpoint: rejected.endpoint,
    extras: rejected.extras,
    rejected: rejected.reason,
  };
}

async function appendRows(redis: FalbatchContext['redis'], draft: string, at: number, entries: string[]): Promise<void> {
  const length = await scriptsOn(redis).falbatchAppendRows(draft, at, ...entries);
  if (length !== at + entries.length) throw new Error(`rows list ${draft} has ${length} entries, expected ${at + entries.length}: another enqueue of the same run?`);
}

/** A row to call, as its batch's backlog stores it. */
function backlogRowOf(row: ManifestRow): BacklogRow {
  return { key: row.key, fingerprint: row.fingerprint, endpoint: row.endpoint, input: row.input, outputField: row.outputField };
}

/** Throws the first error of a MULTI's replies (ioredis reports them per command). */
function throwIfFailed(replies: Array<[Error | null, unknown]> | null): void {
  for (const [error] of replies ?? []) if (error) throw error;
}

/**
 * Iterates `source` one item ahead: the next item is being produced while the caller works on
 * this one (reading and validating a chunk overlaps writing the previous one to Redis). An error
 * of the item read ahead surfaces when the caller gets to it.
 */
async function* readAhead<T>(source: AsyncGenerator<T>): AsyncGenerator<T> {
  let next = source.next();
  try {
    for (;;) {
      const current = await next;
      if (current.done) return;
      next = source.next();
      // Not awaited until the caller is done with `current`: keep an early rejection from being unhandled.
      next.catch(() => undefined);
      yield current.value;
    }
  } finally {
    // The caller stopped early (an error, or a break): let the source close its files.
    await next.catch(() => undefined);
    await source.return(undefined);
  }
}

/** Of rows already in the batch with the same content, those with neither a result nor a job. */
async function lostRows(ctx: FalbatchContext, batch: string, rows: ManifestRow[]): Promise<ManifestRow[]> {
  if (rows.length === 0) return [];
  const pipeline = ctx.redis.pipeline();
  const results = ctx.keys.batch(batch).results;
  for (const row of rows) {
    pipeline.hexists(results, row.key);
    pipeline.exists(ctx.keys.job(jobIdFor(batch, row.key, row.fingerprint)));
  }
  const replies = (await pipeline.exec()) ?? [];
  return rows.filter((_, i) => replies[2 * i]?.[1] === 0 && replies[2 * i + 1]?.[1] === 0);
}

interface Lease {
  key: string;
  run: string;
  batch: string;
  /** The batch's meta: gone when Redis lost the batch. */
  meta: string;
  /** Keys of the run that must live as long as it does. */
  keepAlive: string[];
}

async function renewLease(ctx: FalbatchContext, lease: Lease): Promise<void> {
  const redis = ctx.redis;
  const keys = [lease.key, ...lease.keepAlive];
  if ((await scriptsOn(redis).falbatchRenewLease(keys.length, ...keys, lease.run, LEASE_MS)) !== 1) {
    if ((await redis.exists(lease.meta)) === 0) throw await vanishedBatchError(ctx, lease.batch);
    throw new ConfigError(`Lost the lease on ${lease.key}: another producer took over this batch (this one stalled for over ${LEASE_MS / SECOND} s). Enqueue again.`);
  }
}

/**
 * Streams a manifest into the batch's queue: validates rows (rejecting bad ones with their line),
 * adds a job per new row key (a row already present in the batch, or already ended, adds nothing),
 * and records what export needs (row order, keys, carried columns) in Redis.
 */
export async function enqueueManifest(ctx: FalbatchContext, options: EnqueueOptions): Promise<EnqueueSummary> {
  const { redis, keys, clock, config } = ctx;
  const source = await openManifestSource(options.manifest, {
    filesRoot: config.filesRoot,
    encoding: config.encoding,
    maxRecordBytes: config.maxRecordBytes,
    prompt: options.prompt,
  });
  const file = source.path;
  // Another mapping of the same manifest (--input, --prompt-template, --output-field) is another batch.
  const mappingSignature = createRowMapping(config).signature;
  const batch = options.batch ?? (await source.defaultBatchName(mappingSignature === undefined ? config.endpoint : `${config.endpoint}\0${mappingSignature}`));
  if (!BATCH_NAME.test(batch)) {
    throw new ConfigError(`Expected --batch to be 1-100 letters, digits, ".", "_" or "-" (starting with a letter or digit), got "${batch}"`);
  }
  options.onBatch?.(batch);
  const batchKeys = keys.batch(batch);

  if (source.kind === 'csv') await checkHeader(file, { encoding: config.encoding, maxRecordBytes: config.maxRecordBytes }, createRowMapping(config).layout);
  // Before anything is read or written: a spend cap needs a price.
  checkBatchSettings(options.settings ?? {});
  const run = randomUUID();
  const plan = options.captions === undefined ? undefined : { captions: options.captions, clashKey: batchKeys.captionClashes(run) };
  if (plan) await findCaptionClashes(ctx, source, createRowMapping(config).layout, plan.captions, batchKeys.captionTargets(run), plan.clashKey);

  if (options.strict) {
    try {
      for await (const chunk of validatedChunks(ctx, source, batchKeys.idsSeen(run), () => undefined, plan, options)) {
        const bad = chunk.find((v): v is { ok: false; rejected: RejectedRow } => !v.ok && !v.skip);
        if (bad) {
          throw new ManifestError('MANIFEST_INVALID', `${file}: line ${bad.rejected.line}: ${bad.rejected.reason} (--strict: nothing was enqueued).`, {
            file,
            line: bad.rejected.line,
          });
        }
      }
    } finally {
      await redis.del(batchKeys.idsSeen(run));
    }
  }

  const summary: EnqueueSummary = { batch, manifest: options.manifestLabel ?? file, rows: 0, added: 0, present: 0, rejected: 0, shared: 0, changedRows: 0, changed: [], rejections: [], skipped: 0, notImages: {}, deferred: 0, stored: 0 };
  const now = clock.now();
  // Every enqueue takes the batches whose retention ran out off the list: a service enqueueing
  // every hour keeps the list (and Redis) bounded without anyone running prune.
  await sweepExpiredBatches(ctx);
  // One producer per batch at a time: two would each rename their rows list over the other's.
  if ((await redis.set(batchKeys.enqueuing, run, 'PX', LEASE_MS, 'NX')) !== 'OK') {
    if ((await redis.get(batchKeys.enqueuing)) === PRUNED_LEASE) {
      throw new ConfigError(`Batch ${batch} was dropped by \`falbatch prune --force\` less than a minute ago: its name is free again within ${PRUNED_MARK_MS / SECOND} s.`);
    }
    throw new BatchBusyError(batch);
  }
  // Created (or reopened) with its retention, every key of it renewed: open, so kept at least the unfinished floor.
  const isNew = (await redis.exists(batchKeys.meta)) === 0;
  await openBatch(ctx, batch, { createdAt: now, retentionMs: options.retentionMs });
  const control = await applyBatchSettings(ctx, batch, options.settings ?? {});
  if (control.state === 'cancelled') {
    ctx.log.warn(
      `batch ${batch} was cancelled (${control.reason ?? 'by an operator'}): rows added to it are cancelled too, without calling fal. ` +
        `\`falbatch resume --batch ${batch}\` lifts the cancel; \`falbatch retry --batch ${batch} --error cancelled\` also runs its cancelled rows again.`,
    );
  }
  // Workers top the queue up to the cap this producer sets (the last producer's --max-waiting).
  await setQueueCap(ctx, config.maxWaiting);
  let saidFull = false;
  const topUp = async (): Promise<void> => {
    const filled = await topUpQueue(ctx, { cap: config.maxWaiting });
    if (saidFull || filled.busy || filled.waiting < filled.cap || (await redis.llen(batchKeys.backlog)) === 0) return;
    // Said once: the cap is reached, nothing waits on it, and what (if anything) to do.
    saidFull = true;
    const workers = await ctx.queue.getWorkersCount().catch(() => undefined);
    const what =
      `the queue holds ${filled.waiting} rows waiting, its cap (--max-waiting ${filled.cap}): the other rows of batch ${batch} are stored in Redis ` +
      'as compact rows, and become jobs as workers take rows';
    if (workers === 0) ctx.log.warn(`${what}. No worker is running: start \`falbatch work\` (same REDIS_URL and --prefix) to call them.`, { waiting: filled.waiting, workers });
    else ctx.log.info(`${what}.`, { waiting: filled.waiting, workers });
  };
  const draft = batchKeys.rowsDraft(run);
  const lease: Lease = { key: batchKeys.enqueuing, run, batch, meta: batchKeys.meta, keepAlive: [draft, batchKeys.idsSeen(run)] };
  let extras: string[] = [];
  try {
    // The next chunk is read and validated while this one is written to Redis.
    for await (const chunk of readAhead(
      validatedChunks(
        ctx,
        source,
        batchKeys.idsSeen(run),
        (columns) => {
          extras = columns.extras.map((e) => e.name);
        },
        plan,
        options,
      ),
    )) {
      options.signal?.throwIfAborted();
      summary.rows += chunk.length;
      await appendRows(redis, draft, summary.rows - chunk.length, chunk.map((v) => encodeRowEntry(entryOf(v, source.filesRoot))));
      await renewLease(ctx, lease);

      const distinct = new Map<string, ManifestRow>();
      for (const verdict of chunk) {
        if (!verdict.ok && verdict.skip) {
          summary.skipped++;
          continue;
        }
        if (!verdict.ok) {
          summary.rejected++;
          if (summary.rejections.length < REPORTED_REJECTIONS) summary.rejections.push({ line: verdict.rejected.line, reason: verdict.rejected.reason });
          continue;
        }
        if (distinct.has(verdict.row.key)) summary.shared++;
        else distinct.set(verdict.row.key, verdict.row);
      }
      const rows = [...distinct.values()];
      if (rows.length === 0) continue;
      const [known, backlogged] = await Promise.all([redis.hmget(batchKeys.keys, ...rows.map((r) => r.key)), redis.llen(batchKeys.backlog)]);
      let fresh: ManifestRow[] = [];
      let edited: ManifestRow[] = [];
      const present: ManifestRow[] = [];
      rows.forEach((row, i) => {
        const fingerprint = known[i];
        if (fingerprint === null || fingerprint === undefined) fresh.push(row);
        else if (fingerprint !== row.fingerprint) edited.push(row);
        else present.push(row);
      });
      // Present, but neither ended nor queued nor stored to call: Redis lost its job. Add it again.
      // (While the batch has a backlog, a present row may be waiting in it: nothing is lost then.)
      let lost = backlogged > 0 ? [] : await lostRows(ctx, batch, present);
      summary.present += present.length - lost.length;
      if (options.admit) {
        // The rows that would add a job, in manifest order: the first `admitted` go now.
        const adding = new Set([...fresh, ...edited, ...lost]);
        const candidates = rows.filter((row) => adding.has(row));
        const admitted = candidates.length === 0 ? 0 : Math.max(0, Math.min(candidates.length, Math.floor(await options.admit(candidates))));
        if (admitted < candidates.length) {
          summary.deferred += candidates.length - admitted;
          const admittedRows = new Set(candidates.slice(0, admitted));
          fresh = fresh.filter((row) => admittedRows.has(row));
          edited = edited.filter((row) => admittedRows.has(row));
          lost = lost.filter((row) => admittedRows.has(row));
        }
      }
      const jobs = [...fresh, ...edited, ...lost];
      if (jobs.length > 0) {
        // One transaction: an edited row (same id, other content) is answered afresh (its old answer
        // dropped, and a job of its old content still running will not record); every row to call
        // is stored in the batch's backlog, and new row keys are known to the batch. A row is never
        // known without being stored. Then the queue is topped up from the backlog, to --max-waiting.
        // (Scripts are defined on the client before the transaction is made: it takes them from there.)
        scriptsOn(redis);
        const store = redis.multi();
        for (const row of edited) {
          scriptsIn(store).falbatchEditRow(batchKeys.keys, batchKeys.results, batchKeys.counts, row.key, row.fingerprint);
          summary.changedRows++;
          if (summary.changed.length < REPORTED_REJECTIONS) {
            summary.changed.push({
              line: row.line,
              reason: `id "${row.key}" changed since it was enqueued in batch ${batch} (prompt, image, endpoint or parameters): it is called again, and its earlier answer is dropped`,
            });
          }
        }
        storeBacklog(ctx, store, batch, jobs.map(backlogRowOf), control.priority);
        if (fresh.length > 0) store.hset(batchKeys.keys, ...fresh.flatMap((row) => [row.key, row.fingerprint]));
        throwIfFailed(await store.exec());
        // What was just written lives as long as the batch; a batch pruned (or lost) meanwhile keeps
        // nothing of it: the touch removed its keys, its backlog with them.
        if (!(await touchBatch(ctx, batch, 'open'))) throw await vanishedBatchError(ctx, batch);
        summary.added += jobs.length;
        await topUp();
      }
      options.onProgress?.({ batch, rows: summary.rows, added: summary.added, present: summary.present, rejected: summary.rejected });
    }
    summary.notImages = source.notImages();
    const finish = redis.multi();
    if (summary.rows > 0) finish.rename(draft, batchKeys.rows);
    else finish.del(batchKeys.rows);
    finish.hset(batchKeys.meta, metaFields({ manifest: options.manifestLabel ?? file, updatedAt: clock.now(), defaultEndpoint: config.endpoint, rows: summary.rows, rejected: summary.rejected, skipped: summary.skipped, extras, filesRoot: source.filesRoot, captionExt: options.captions?.ext ?? '', captionPrefix: options.captions?.prefix ?? '', captionSuffix: options.captions?.suffix ?? '' }));
    finish.del(batchKeys.idsSeen(run), batchKeys.captionTargets(run), batchKeys.captionClashes(run));
    // The rows list comes with the draft's 24 h TTL: it gets the batch's, with every other key.
    // Open (the unfinished floor) while rows are pending; this producer's lease goes right after.
    scriptsOn(redis);
    touchBatchIn(ctx, finish, batch, 'rows');
    await finish.exec();
    summary.stored = await redis.llen(batchKeys.backlog);
  } catch (error) {
    await redis.del(draft, batchKeys.idsSeen(run), batchKeys.captionTargets(run), batchKeys.captionClashes(run)).catch(() => undefined);
    // Whatever broke, a batch whose meta vanished under the producer was pruned (--force) or lost by Redis: say that.
    if (!(error instanceof BatchLostError) && !(error instanceof BatchPrunedError) && !(error instanceof BatchNotFoundError) && !options.signal?.aborted && (await redis.exists(batchKeys.meta).catch(() => 1)) === 0) {
      throw await vanishedBatchError(ctx, batch);
    }
    // A batch this enqueue created, with no row stored: it was never there (not a 0-row batch "running" forever).
    if (isNew && summary.added === 0) await dropUnstartedBatch(ctx, batch).catch(() => undefined);
    throw error;
  } finally {
    // Release the lease only if it is still ours.
    if ((await redis.get(batchKeys.enqueuing).catch(() => null)) === run) await redis.del(batchKeys.enqueuing).catch(() => undefined);
  }
  return summary;
}

/** What enqueueing (and running) a manifest would do, without doing it: `--dry-run`. */
export interface EnqueuePlan {
  batch: string;
  manifest: string;
  rows: number;
  rejected: number;
  /** Rows that need no call: their caption files exist (`--captions`, mode skip). */
  skipped: number;
  /** Distinct calls the valid rows make (identical rows share one). */
  calls: number;
  /** Of those, already ended in this batch (ok or failed): not called again. */
  done: number;
  /** Of those, answered by an identical row already paid for (this namespace's ledger): free. */
  answered: number;
  /** Calls left to pay for: each distinct input once (identical rows, with or without ids, share one call). */
  toCall: number;
  /** Rows not counted in calls: identical to a row counted there (another id, another file of the same content), they share its answer. */
  shared: number;
  /** Distinct local image contents the rows use, and how many of them the run would upload. */
  localImages: number;
  uploads: number;
  /** Of the uploads, cached ones fal storage no longer serves (checked as the run checks them: a HEAD). */
  expired: number;
  /** The first 1,000 rejections, as enqueue reports them. */
  rejections: Rejection[];
}

/**
 * Reads the manifest (or folder) as enqueue would, and says what it would do: rows, rejections,
 * skips, calls left to pay for (the batch's results and the ledger consulted; identical rows
 * counted once, as the workers call them once), distinct local images and uploads needed (the
 * upload cache consulted, and each cached URL checked at fal storage as the run checks it). Nothing
 * is enqueued, uploaded, called or written (temporary keys of the read itself aside, removed at the
 * end).
 */
export async function planEnqueue(ctx: FalbatchContext, options: EnqueueOptions): Promise<EnqueuePlan> {
  const { redis, keys, config } = ctx;
  const source = await openManifestSource(options.manifest, { filesRoot: config.filesRoot, encoding: config.encoding, maxRecordBytes: config.maxRecordBytes, prompt: options.prompt });
  const mappingSignature = createRowMapping(config).signature;
  const batch = options.batch ?? (await source.defaultBatchName(mappingSignature === undefined ? config.endpoint : `${config.endpoint}\0${mappingSignature}`));
  const batchKeys = keys.batch(batch);
  const run = `dry-${randomUUID()}`;
  const plan: EnqueuePlan = { batch, manifest: source.path, rows: 0, rejected: 0, skipped: 0, calls: 0, done: 0, answered: 0, toCall: 0, shared: 0, localImages: 0, uploads: 0, expired: 0, rejections: [] };
  // Local images: their identities, and whether fal storage still has them (the cache, and the
  // check the run would make of a cached URL), never uploaded.
  const cache = createUploadCache(redis, keys, { falBaseUrl: config.falBaseUrl, ttlMs: config.uploadCacheTtlMs });
  const check = config.inlineImages ? undefined : cachedUploadCheck(ctx, options);
  const inStorage = async (identity: string): Promise<'stored' | 'missing' | 'expired'> => {
    if (!check) return 'stored';
    const url = await cache.get(identity);
    if (url === undefined) return 'missing';
    return (await check(url)) === 'gone' ? 'expired' : 'stored';
  };
  const seenImages = new Set<string>();
  const counting: LocalImageDelivery = {
    async reference(image) {
      if (!seenImages.has(image.identity)) {
        seenImages.add(image.identity);
        plan.localImages++;
        const state = await inStorage(image.identity);
        if (state !== 'stored') plan.uploads++;
        if (state === 'expired') plan.expired++;
      }
      return { ok: true, reference: `dry-run:${image.identity}` };
    },
  };
  const captionPlan = options.captions === undefined ? undefined : { captions: options.captions, clashKey: batchKeys.captionClashes(run) };
  const seenKeys = new Set<string>();
  const seenInputs = new Set<string>();
  try {
    if (source.kind === 'csv') await checkHeader(source.path, { encoding: config.encoding, maxRecordBytes: config.maxRecordBytes }, createRowMapping(config).layout);
    if (captionPlan) await findCaptionClashes(ctx, source, createRowMapping(config).layout, captionPlan.captions, batchKeys.captionTargets(run), captionPlan.clashKey);
    for await (const chunk of validatedChunks(ctx, source, batchKeys.idsSeen(run), () => undefined, captionPlan, {}, counting)) {
      plan.rows += chunk.length;
      const rows: ManifestRow[] = [];
      for (const verdict of chunk) {
        if (!verdict.ok && verdict.skip) plan.skipped++;
        else if (!verdict.ok) {
          plan.rejected++;
          if (plan.rejections.length < REPORTED_REJECTIONS) plan.rejections.push({ line: verdict.rejected.line, reason: verdict.rejected.reason });
        } else if (!seenKeys.has(verdict.row.key)) {
          // (A set of this run's keys: a dry run holds them in memory, which a real enqueue does not.)
          seenKeys.add(verdict.row.key);
          rows.push(verdict.row);
        }
      }
      if (rows.length === 0) continue;
      const [ended, paid] = await Promise.all([redis.hmget(batchKeys.results, ...rows.map((r) => r.key)), ctx.store.ledgerMany(rows.map((r) => r.fingerprint))]);
      rows.forEach((row, i) => {
        if (ended[i] !== null && ended[i] !== undefined) plan.done++;
        // An identical row (another id, or another file of the same content) shares one answer.
        else if (seenInputs.has(row.fingerprint)) plan.shared++;
        else {
          seenInputs.add(row.fingerprint);
          if (paid[i] !== null && paid[i] !== undefined) plan.answered++;
          else plan.toCall++;
        }
      });
    }
  } finally {
    await redis.del(batchKeys.idsSeen(run), batchKeys.captionTargets(run), batchKeys.captionClashes(run));
  }
  plan.calls = plan.done + plan.answered + plan.toCall;
  return plan;
}
