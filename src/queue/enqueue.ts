import { randomUUID } from 'node:crypto';
import type { FalbatchContext } from '../context.js';
import type { FalCaller } from '../fal/fal-caller.js';
import type { CheckedUploads } from '../manifest/upload-images.js';
import { BatchLostError, BatchNotFoundError, ConfigError, ManifestError } from '../errors.js';
import { applyBatchSettings, checkBatchSettings, type BatchSettings } from './batch-settings.js';
import type { ColumnMap } from '../manifest/columns.js';
import { checkHeader } from '../manifest/manifest-file.js';
import { createRowMapping, type RowMapping } from '../manifest/row-mapping.js';
import { recordLabelOf, recordLabelOfSource, type RecordLabel } from '../manifest/manifest-format.js';
import { checkColumns, fileFormatOf, openManifestSource, type ManifestSource } from '../manifest/manifest-source.js';
import { isS3Url } from '../storage/s3-url.js';
import type { CaptionOptions } from '../results/caption-files.js';
import { findCaptionClashes } from './caption-targets.js';
import type { LocalImageDelivery } from '../manifest/resolve-images.js';
import { cachedUploadCheck } from './image-delivery.js';
import { createUploadCache } from './upload-cache.js';
import { BATCH_NAME, jobIdFor } from '../manifest/row-key.js';
import { createObjectInfoMemo } from '../manifest/s3-images.js';
import type { ManifestRow, RejectedRow } from '../manifest/validate-row.js';
import { SECOND } from '../time.js';
import type { BatchControl } from './batch-control.js';
import { metaFields } from './batch-meta.js';
import { packRowEntries, type RowEntry } from './batch-rows.js';
import { batchBacklogRows, setQueueCap, storeBacklog, topUpQueue, type BacklogRow, type TopUp } from './backlog.js';
import { isConnectionLost } from './redis-outage.js';
import { readAhead } from './read-ahead.js';
import { scriptsIn, scriptsOn } from './redis-scripts.js';
import {
  BatchPrunedError,
  dropUnstartedBatch,
  openBatch,
  PRUNED_LEASE,
  PRUNED_MARK_MS,
  sweepExpiredBatches,
  touchBatch,
  touchBatchIn,
  vanishedBatchError,
} from './retention.js';
import { entryOf, validatedChunks, type CaptionPlan, type Verdict } from './validated-chunks.js';
import { REPORTED_REJECTIONS, admissionCandidates, admitRows, sortByKnown, tallyChunk, type RowsToAdd } from './chunk-rows.js';
import { storedFingerprint } from './row-keys.js';

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
   * A worker this process is starting while it enqueues (`run`): the queue's workers are counted
   * (to say none is running when the queue is full) once it has started.
   */
  workerStarting?: Promise<unknown> | undefined;
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
  /** What the source's records are called in messages (`line 3`, `row 3`; a folder's are its files). */
  records: RecordLabel;
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
/** Appends a chunk's row entries to the draft rows list, packed into one element (the list's `at`-th). */
async function appendRows(redis: FalbatchContext['redis'], draft: string, at: number, entries: RowEntry[]): Promise<void> {
  const length = await scriptsOn(redis).falbatchAppendRows(draft, at, packRowEntries(entries));
  if (length !== at + 1) throw new Error(`rows list ${draft} has ${length} elements, expected ${at + 1}: another enqueue of the same run?`);
}

/** A row to call, as its batch's backlog stores it. */
function backlogRowOf(row: ManifestRow): BacklogRow {
  return { key: row.key, fingerprint: row.fingerprint, endpoint: row.endpoint, input: row.input, outputField: row.outputField };
}

/** Throws the first error of a MULTI's replies (ioredis reports them per command). */
function throwIfFailed(replies: Array<[Error | null, unknown]> | null): void {
  for (const [error] of replies ?? []) if (error) throw error;
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
    throw new ConfigError(
      `Lost the lease on ${lease.key}: another producer took over this batch (this one stalled for over ${LEASE_MS / SECOND} s). Enqueue again.`,
    );
  }
}

/** The manifest, its row mapping (computed once per enqueue) and the batch it goes to. */
interface EnqueueTarget {
  source: ManifestSource;
  mapping: RowMapping;
  batch: string;
}

/** Opens a manifest, folder or s3:// location with the namespace's reading settings: enqueue and `schedule add` alike. */
export function openManifestFor(ctx: FalbatchContext, manifest: string, prompt: string | undefined, config = ctx.config): Promise<ManifestSource> {
  return openManifestSource(manifest, {
    filesRoot: config.filesRoot,
    encoding: config.encoding,
    maxRecordBytes: config.maxRecordBytes,
    format: config.manifestFormat,
    prompt,
    objects: { store: ctx.objects, memo: createObjectInfoMemo() },
  });
}

async function openTarget(ctx: FalbatchContext, options: EnqueueOptions): Promise<EnqueueTarget> {
  const { config } = ctx;
  const source = await openManifestFor(ctx, options.manifest, options.prompt);
  // One manifest, one mapping (built-in endpoints, --prompt-template or --input), checked by resolveConfig.
  const mapping = createRowMapping(config);
  // Another mapping of the same manifest (--input, --prompt-template, --output-field) is another batch.
  const batch =
    options.batch ?? (await source.defaultBatchName(mapping.signature === undefined ? config.endpoint : `${config.endpoint}\0${mapping.signature}`));
  return { source, mapping, batch };
}

async function checkHeaderOf(ctx: FalbatchContext, { source, mapping }: EnqueueTarget): Promise<void> {
  const { config } = ctx;
  // A local CSV's header is read on its own (its encoding told first); any other manifest's first record.
  if (source.kind === 'csv' && !isS3Url(source.path))
    await checkHeader(source.path, { encoding: config.encoding, maxRecordBytes: config.maxRecordBytes }, mapping.layout);
  else await checkColumns(source, mapping.layout);
}

/** `--strict`: the whole manifest is read first, and its first bad row stops the enqueue before anything is written. */
async function checkStrict(ctx: FalbatchContext, target: EnqueueTarget, run: string, plan: CaptionPlan | undefined, options: EnqueueOptions): Promise<void> {
  const file = target.source.path;
  const idsSeen = ctx.keys.batch(target.batch).idsSeen(run);
  try {
    for await (const chunk of validatedChunks(ctx, target.source, idsSeen, target.mapping, () => undefined, plan, options)) {
      const bad = chunk.find((v): v is { ok: false; rejected: RejectedRow } => !v.ok && !v.skip);
      if (bad) {
        const label = recordLabelOf(file, fileFormatOf(target.source));
        throw new ManifestError('MANIFEST_INVALID', `${file}: ${label} ${bad.rejected.line}: ${bad.rejected.reason} (--strict: nothing was enqueued).`, {
          file,
          line: bad.rejected.line,
        });
      }
    }
  } finally {
    await ctx.redis.del(idsSeen);
  }
}

/** One producer per batch at a time: two would each rename their rows list over the other's. */
async function takeLease(ctx: FalbatchContext, batch: string, run: string): Promise<void> {
  const key = ctx.keys.batch(batch).enqueuing;
  if ((await ctx.redis.set(key, run, 'PX', LEASE_MS, 'NX')) === 'OK') return;
  if ((await ctx.redis.get(key)) === PRUNED_LEASE) {
    throw new ConfigError(
      `Batch ${batch} was dropped by \`falbatch prune --force\` less than a minute ago: its name is free again within ${PRUNED_MARK_MS / SECOND} s.`,
    );
  }
  throw new BatchBusyError(batch);
}

/** Creates (or reopens) the batch with its retention and settings: open, so kept at least the unfinished floor. */
async function openForEnqueue(ctx: FalbatchContext, batch: string, options: EnqueueOptions, now: number): Promise<{ isNew: boolean; control: BatchControl }> {
  const isNew = (await ctx.redis.exists(ctx.keys.batch(batch).meta)) === 0;
  await openBatch(ctx, batch, { createdAt: now, retentionMs: options.retentionMs });
  const control = await applyBatchSettings(ctx, batch, options.settings ?? {});
  if (control.state === 'cancelled') {
    ctx.log.warn(
      `batch ${batch} was cancelled (${control.reason ?? 'by an operator'}): rows added to it are cancelled too, without calling fal. ` +
        `\`falbatch resume --batch ${batch}\` lifts the cancel; \`falbatch retry --batch ${batch} --error cancelled\` also runs its cancelled rows again.`,
    );
  }
  return { isNew, control };
}

/** Tops the queue up from the backlog to --max-waiting; says once when the cap is reached, and what to do. */
function queueTopUp(ctx: FalbatchContext, batch: string, { workerStarting }: EnqueueOptions): () => Promise<void> {
  let saidFull = false;
  return async () => {
    let filled: TopUp;
    try {
      filled = await topUpQueue(ctx, { cap: ctx.config.maxWaiting });
    } catch (error) {
      // Redis went away mid-top-up: the rows are stored (the backlog), a top-up is safe to redo, and
      // the next chunk's (or a worker's) does it. The producer goes on rather than fail the enqueue.
      if (error instanceof Error && isConnectionLost(error)) return;
      throw error;
    }
    if (saidFull || filled.busy || filled.waiting < filled.cap || (await ctx.redis.llen(ctx.keys.batch(batch).backlog)) === 0) return;
    saidFull = true;
    await workerStarting?.catch(() => undefined);
    const workers = await ctx.queue.getWorkersCount().catch(() => undefined);
    const what =
      `the queue holds ${filled.waiting} rows waiting, its cap (--max-waiting ${filled.cap}): the other rows of batch ${batch} are stored in Redis ` +
      'as compact rows, and become jobs as workers take rows';
    if (workers === 0)
      ctx.log.warn(`${what}. No worker is running: start \`falbatch work\` (same REDIS_URL and --prefix) to call them.`, { waiting: filled.waiting, workers });
    else ctx.log.info(`${what}.`, { waiting: filled.waiting, workers });
  };
}

/** What writing one chunk of an enqueue needs. */
interface ChunkWriter {
  batch: string;
  draft: string;
  lease: Lease;
  filesRoot: string;
  priority: number;
  options: EnqueueOptions;
  summary: EnqueueSummary;
  /** Chunks written to the draft rows list (an element each). */
  chunks: number;
  topUp: () => Promise<void>;
}

/** Of a chunk's distinct rows, those that add a job (after `admit`), counting the rest. */
async function rowsToAdd(ctx: FalbatchContext, w: ChunkWriter, rows: ManifestRow[]): Promise<RowsToAdd> {
  const batchKeys = ctx.keys.batch(w.batch);
  const [known, backlogged] = await Promise.all([ctx.redis.hmget(batchKeys.keys, ...rows.map((r) => r.key)), ctx.redis.llen(batchKeys.backlog)]);
  const { fresh, edited, present } = sortByKnown(rows, known);
  // Present, but neither ended nor queued nor stored to call: Redis lost its job. Add it again.
  // (While the batch has a backlog, a present row may be waiting in it: nothing is lost then.)
  const lost = backlogged > 0 ? [] : await lostRows(ctx, w.batch, present);
  w.summary.present += present.length - lost.length;
  const adding = { fresh, edited, lost };
  if (!w.options.admit) return adding;
  const candidates = admissionCandidates(rows, adding);
  const { admitted, deferred } = admitRows(candidates, adding, candidates.length === 0 ? 0 : await w.options.admit(candidates));
  w.summary.deferred += deferred;
  return admitted;
}

/**
 * One transaction: an edited row (same id, other content) is answered afresh (its old answer
 * dropped, and a job of its old content still running will not record); every row to call is
 * stored in the batch's backlog, and new row keys are known to the batch. A row is never known
 * without being stored. Then the queue is topped up from the backlog, to --max-waiting.
 */
async function storeRows(ctx: FalbatchContext, w: ChunkWriter, { fresh, edited, lost }: RowsToAdd): Promise<void> {
  const { redis } = ctx;
  const { batch, summary } = w;
  const batchKeys = ctx.keys.batch(batch);
  const jobs = [...fresh, ...edited, ...lost];
  if (jobs.length === 0) return;
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
  storeBacklog(ctx, store, batch, jobs.map(backlogRowOf), w.priority);
  if (fresh.length > 0) store.hset(batchKeys.keys, ...fresh.flatMap((row) => [row.key, storedFingerprint(row.key, row.fingerprint)]));
  throwIfFailed(await store.exec());
  // What was just written lives as long as the batch; a batch pruned (or lost) meanwhile keeps
  // nothing of it: the touch removed its keys, its backlog with them.
  if (!(await touchBatch(ctx, batch, 'open'))) throw await vanishedBatchError(ctx, batch);
  summary.added += jobs.length;
  await w.topUp();
}

/** Writes one chunk: its rows listed in manifest order, its rows to call stored and queued. */
async function writeChunk(ctx: FalbatchContext, w: ChunkWriter, chunk: Verdict[]): Promise<void> {
  const { summary } = w;
  w.options.signal?.throwIfAborted();
  summary.rows += chunk.length;
  await appendRows(
    ctx.redis,
    w.draft,
    w.chunks++,
    chunk.map((v) => entryOf(v, w.filesRoot)),
  );
  await renewLease(ctx, w.lease);
  const rows = tallyChunk(summary, chunk);
  if (rows.length === 0) return;
  await storeRows(ctx, w, await rowsToAdd(ctx, w, rows));
  w.options.onProgress?.({ batch: w.batch, rows: summary.rows, added: summary.added, present: summary.present, rejected: summary.rejected });
}

/** Ends an enqueue: the rows list takes its place, the batch's meta says what was read, this run's keys go. */
async function finishEnqueue(ctx: FalbatchContext, w: ChunkWriter, run: string, extras: string[], source: ManifestSource): Promise<void> {
  const { redis, config } = ctx;
  const { summary, options } = w;
  const batchKeys = ctx.keys.batch(w.batch);
  summary.notImages = source.notImages();
  const finish = redis.multi();
  if (summary.rows > 0) finish.rename(w.draft, batchKeys.rows);
  else finish.del(batchKeys.rows);
  finish.hset(
    batchKeys.meta,
    metaFields({
      manifest: options.manifestLabel ?? source.path,
      records: summary.records,
      updatedAt: ctx.clock.now(),
      defaultEndpoint: config.endpoint,
      rows: summary.rows,
      rejected: summary.rejected,
      skipped: summary.skipped,
      extras,
      filesRoot: source.filesRoot,
      captionExt: options.captions?.ext ?? '',
      captionPrefix: options.captions?.prefix ?? '',
      captionSuffix: options.captions?.suffix ?? '',
    }),
  );
  finish.del(batchKeys.idsSeen(run), batchKeys.captionTargets(run), batchKeys.captionClashes(run));
  // The rows list comes with the draft's 24 h TTL: it gets the batch's, with every other key.
  // Open (the unfinished floor) while rows are pending; this producer's lease goes right after.
  scriptsOn(redis);
  touchBatchIn(ctx, finish, w.batch, 'rows');
  await finish.exec();
  summary.stored = await batchBacklogRows(ctx, w.batch);
}

/** After a failed enqueue: this run's keys go; a batch that vanished meanwhile says so; one it created empty goes too. */
async function failEnqueue(ctx: FalbatchContext, w: ChunkWriter, run: string, isNew: boolean, error: unknown): Promise<never> {
  const { redis } = ctx;
  const batchKeys = ctx.keys.batch(w.batch);
  await redis.del(w.draft, batchKeys.idsSeen(run), batchKeys.captionTargets(run), batchKeys.captionClashes(run)).catch(() => undefined);
  // Whatever broke, a batch whose meta vanished under the producer was pruned (--force) or lost by Redis: say that.
  if (
    !(error instanceof BatchLostError) &&
    !(error instanceof BatchPrunedError) &&
    !(error instanceof BatchNotFoundError) &&
    !w.options.signal?.aborted &&
    (await redis.exists(batchKeys.meta).catch(() => 1)) === 0
  ) {
    throw await vanishedBatchError(ctx, w.batch);
  }
  // A batch this enqueue created, with no row stored: it was never there (not a 0-row batch "running" forever).
  if (isNew && w.summary.added === 0) await dropUnstartedBatch(ctx, w.batch).catch(() => undefined);
  throw error;
}

/**
 * Streams a manifest into the batch's queue: validates rows (rejecting bad ones with their line),
 * adds a job per new row key (a row already present in the batch, or already ended, adds nothing),
 * and records what export needs (row order, keys, carried columns) in Redis.
 */
export async function enqueueManifest(ctx: FalbatchContext, options: EnqueueOptions): Promise<EnqueueSummary> {
  const { redis, keys, config } = ctx;
  const target = await openTarget(ctx, options);
  const { source, batch } = target;
  if (!BATCH_NAME.test(batch)) {
    throw new ConfigError(`Expected --batch to be 1-100 letters, digits, ".", "_" or "-" (starting with a letter or digit), got "${batch}"`);
  }
  options.onBatch?.(batch);
  const batchKeys = keys.batch(batch);
  await checkHeaderOf(ctx, target);
  // Before anything is read or written: a spend cap needs a price.
  checkBatchSettings(options.settings ?? {});
  const run = randomUUID();
  const plan = options.captions === undefined ? undefined : { captions: options.captions, clashKey: batchKeys.captionClashes(run) };
  if (plan) await findCaptionClashes(ctx, source, target.mapping.layout, plan.captions, batchKeys.captionTargets(run), plan.clashKey);
  if (options.strict) await checkStrict(ctx, target, run, plan, options);

  const summary: EnqueueSummary = {
    batch,
    manifest: options.manifestLabel ?? source.path,
    records: recordLabelOfSource(source),
    rows: 0,
    added: 0,
    present: 0,
    rejected: 0,
    shared: 0,
    changedRows: 0,
    changed: [],
    rejections: [],
    skipped: 0,
    notImages: {},
    deferred: 0,
    stored: 0,
  };
  const now = ctx.clock.now();
  // Every enqueue takes the batches whose retention ran out off the list: a service enqueueing
  // every hour keeps the list (and Redis) bounded without anyone running prune.
  await sweepExpiredBatches(ctx);
  await takeLease(ctx, batch, run);
  const { isNew, control } = await openForEnqueue(ctx, batch, options, now);
  // Workers top the queue up to the cap this producer sets (the last producer's --max-waiting).
  await setQueueCap(ctx, config.maxWaiting);
  const draft = batchKeys.rowsDraft(run);
  const lease: Lease = { key: batchKeys.enqueuing, run, batch, meta: batchKeys.meta, keepAlive: [draft, batchKeys.idsSeen(run)] };
  const writer: ChunkWriter = {
    batch,
    draft,
    lease,
    filesRoot: source.filesRoot,
    priority: control.priority,
    options,
    summary,
    chunks: 0,
    topUp: queueTopUp(ctx, batch, options),
  };
  let extras: string[] = [];
  const onHeader = (columns: ColumnMap): void => {
    extras = columns.extras.map((e) => e.name);
  };
  try {
    // The next chunk is read and validated while this one is written to Redis.
    for await (const chunk of readAhead(validatedChunks(ctx, source, batchKeys.idsSeen(run), target.mapping, onHeader, plan, options)))
      await writeChunk(ctx, writer, chunk);
    await finishEnqueue(ctx, writer, run, extras, source);
  } catch (error) {
    await failEnqueue(ctx, writer, run, isNew, error);
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
  /** As EnqueueSummary's. */
  records: RecordLabel;
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
  /** A folder's files left out as not images, by lowercased extension (as enqueue reports them). */
  notImages: Record<string, number>;
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
  const target = await openTarget(ctx, options);
  const { source, batch } = target;
  const batchKeys = keys.batch(batch);
  const run = `dry-${randomUUID()}`;
  const plan: EnqueuePlan = {
    batch,
    manifest: source.path,
    records: recordLabelOfSource(source),
    rows: 0,
    rejected: 0,
    skipped: 0,
    calls: 0,
    done: 0,
    answered: 0,
    toCall: 0,
    shared: 0,
    localImages: 0,
    uploads: 0,
    expired: 0,
    notImages: {},
    rejections: [],
  };
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
    await checkHeaderOf(ctx, target);
    if (captionPlan) await findCaptionClashes(ctx, source, target.mapping.layout, captionPlan.captions, batchKeys.captionTargets(run), captionPlan.clashKey);
    for await (const chunk of validatedChunks(ctx, source, batchKeys.idsSeen(run), target.mapping, () => undefined, captionPlan, {}, counting)) {
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
      const [ended, paid] = await Promise.all([
        redis.hmget(batchKeys.results, ...rows.map((r) => r.key)),
        ctx.store.ledgerMany(rows.map((r) => r.fingerprint)),
      ]);
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
  plan.notImages = source.notImages();
  return plan;
}
