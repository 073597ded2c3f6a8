import { ConfigError } from './errors.js';
import type { Price } from './fal/price.js';
import { parseManifestFormat, type ManifestFormat } from './manifest/manifest-format.js';
import { resolveEncoding } from './manifest/text-encoding.js';
import { createRowMapping } from './manifest/row-mapping.js';
import { DEFAULT_ENCODING, DEFAULT_MAX_RECORD_BYTES } from './manifest/read-defaults.js';
import { HOUR, MINUTE, SECOND, parseDuration } from './time.js';

/** How a worker learns that its fal request finished. */
export type WaitMode = 'stream' | 'poll';

/** Every setting falbatch has. Environment variables and flags only override these. */
export interface Config {
  /**
   * Redis to use: `redis://[:password@]host:port[/db]` or `rediss://` for TLS. With redisCluster,
   * one or more seed nodes of the Cluster, comma-separated (`redis://:pw@10.0.0.1:7000,10.0.0.2:7000`):
   * the first URL's scheme and credentials apply to every node, later ones may be `host:port`.
   * @default 'redis://127.0.0.1:6379' (env REDIS_URL)
   */
  redisUrl: string;
  /**
   * redisUrl names nodes of a Redis Cluster (ioredis `Cluster`), not one Redis. Every key of a
   * queue shares one hash tag, so one queue lives in one slot, on one master: a Cluster brings
   * failover (with replicas) and room beside it, not more throughput for the queue. A single
   * Redis (the default) spends nothing on slot routing.
   * @default false (env REDIS_CLUSTER=1, flag --redis-cluster)
   */
  redisCluster: boolean;
  /**
   * Key namespace in Redis. Producers and workers of the same batches must share it.
   * @default 'falbatch' (env FALBATCH_PREFIX, flag --prefix)
   */
  prefix: string;
  /**
   * Queue name inside the namespace, and the hash tag of all its keys (`<prefix>:{<queue>}:…`):
   * one queue is one Redis Cluster slot, on one master. Namespaces on different queues can live on
   * different masters of a Cluster; producers and workers of the same batches must share it.
   * @default 'jobs' (env FALBATCH_QUEUE, flag --queue)
   */
  queue: string;
  /** fal credentials. Never logged, stored or echoed. (env FAL_KEY, or FAL_KEY_ID:FAL_KEY_SECRET) */
  falKey: string | undefined;
  /**
   * Send fal traffic to another base by the routing contract (`<base>/<host>/<path>`), e.g. the
   * emulator or a proxy. (env FAL_BASE_URL)
   */
  falBaseUrl: string | undefined;
  /**
   * Endpoint for rows without an `endpoint` column value.
   * @default 'fal-ai/llava-next' (flag --endpoint)
   */
  endpoint: string;
  /**
   * The endpoint's input as a template (flag --input, JSON): strings that name manifest columns,
   * `"{question}"`, `"{img:image}"`, `"{seed:int?}"`, are filled from each row (the syntax is in
   * manifest/input-template.ts); everything else is sent as written. Makes any fal endpoint
   * callable without a code change: the columns it names are then the required ones (no
   * image_url or prompt needed), for every row's endpoint. A template sends exactly what it says:
   * nothing checks the values against the endpoint's schema before fal does (a 422 fails the row).
   * Unset: the built-in mappings of fal-ai/llava-next and fal-ai/mantis-llava-7b-v11, whose
   * parameters falbatch checks on each row before anything is paid for.
   */
  input: Readonly<Record<string, unknown>> | undefined;
  /**
   * The field of the endpoint's output that is the row's answer (written as `output`): a name, or
   * a dotted path like `choices.0.text`. Only with `input`: the built-in endpoints answer in
   * `output`. Part of a row's identity: two batches reading other fields of the same call each
   * call it once.
   * @default 'output' (flag --output-field)
   */
  outputField: string;
  /**
   * Columns of an `input` template whose `{column}` placeholders are images (local files, URLs or
   * data URIs, handled as image_url is), like writing `{column:image}`.
   * @default [] (flag --image-columns, comma-separated)
   */
  imageColumns: readonly string[];
  /**
   * The built-in endpoints' prompt, filled from each row's columns (flag --prompt-template, e.g.
   * `Describe the {subject}`; the `input` placeholder syntax): the prompt column is then not
   * required, and the columns it names are. A row with an empty named cell is rejected. Unset: the
   * prompt column, as written.
   */
  promptTemplate: string | undefined;
  /**
   * fal requests one worker process keeps in flight. fal runs only your account's concurrency at
   * once (2 for a new account, up to 40) and queues the rest, so more than that only queues at
   * fal; fewer leaves paid-for slots idle.
   * @default 8 (flag --concurrency N); the CLI's default is `--concurrency auto`, see autoConcurrency
   */
  concurrency: number;
  /**
   * Learn the account's fal concurrency and keep that many requests (plus a small headroom) in
   * flight across every auto worker of the queue (`--concurrency auto`, the CLI's default when no
   * number is given): see worker/concurrency-control.ts. `concurrency` is then ignored by workers
   * started without their own.
   * @default false in the library, true in the CLI. They differ on purpose: the CLI's one flag
   * takes `auto` or a number, so either is explicit; a program sets `concurrency` alone, and a
   * learned limit taking its place without a word would surprise it. Opt in with `true`.
   */
  autoConcurrency: boolean;
  /**
   * Cap on in-flight fal requests across every worker process on every machine (fal's limit is per
   * account). Unset: no cap beyond each worker's own concurrency.
   */
  globalConcurrency: number | undefined;
  /**
   * Attempts per row for retryable failures (5xx, transport errors, time-outs). 429s and account
   * pauses do not use attempts. Permanent failures (422, bad image) never retry.
   * @default 5
   */
  attempts: number;
  /** First retry delay; doubles per attempt, with full jitter, up to backoffMaxMs. @default 2s */
  backoffBaseMs: number;
  /** Longest retry delay. @default 2 min */
  backoffMaxMs: number;
  /**
   * How to wait for a fal request: `stream` keeps one SSE connection per request and learns of
   * completion at once; `poll` asks every pollIntervalMs. See BENCHMARKS.md for the difference.
   * @default 'stream'
   */
  waitMode: WaitMode;
  /** Poll interval in poll mode, and between stream reconnects. @default 500 ms (fal's own default) */
  pollIntervalMs: number;
  /** Deadline of one HTTP call to fal (submit, status, result, cancel). @default 30 s */
  callTimeoutMs: number;
  /**
   * Longest a row waits for its fal request (queue + inference) before falbatch cancels it and
   * retries. Generous: fal queues indefinitely under load.
   * @default 15 min
   */
  waitBudgetMs: number;
  /**
   * fal's start timeout (X-Fal-Request-Timeout): fal gives up on a request not started by then.
   * Unset by default (fal queues without limit).
   */
  startTimeoutSeconds: number | undefined;
  /**
   * What a call costs, for the cost estimate (dry run, report, status): `--price 0.0005/s` (per
   * second of fal's inference time) or `--price 0.002/call`. Unset: asked of fal's pricing API
   * for the endpoint when there is a key; without either, no cost is shown.
   */
  price: Price | undefined;
  /** How long 429s may keep a row waiting in total before it fails. @default 30 min */
  rateLimitBudgetMs: number;
  /**
   * How long a row keeps reading the result of a request fal said COMPLETED without error, while
   * the reads fail (5xx, cut connections). Such a request is paid for, so it is never submitted
   * again; past this budget the row fails as `result_unavailable`, keeping its request id, and
   * `falbatch retry --error result_unavailable` reads it again later. fal keeps results for
   * 30 days; a longer budget holds a batch open through a longer gateway outage.
   * @default 1 h (flag --result-budget)
   */
  resultBudgetMs: number;
  /** Rows per addBulk call. @default 500 */
  enqueueChunk: number;
  /**
   * The queue's cap on waiting jobs (`--max-waiting`): a BullMQ job costs about 1 KB of Redis, so
   * a million-row manifest is not all jobs at once. Rows past it wait in their batch's backlog as
   * compact rows (queue/backlog.ts) and become jobs as workers drain the queue; the producer
   * never waits. The last producer's value is the queue's (workers read it from Redis).
   * @default 10,000
   */
  maxWaiting: number;
  /**
   * Largest image falbatch reads: a local file's size (before any --max-side downscale), or the
   * decoded bytes of a data URI in the manifest (URLs are fetched by fal and not checked). A larger
   * one rejects its row. The producer holds a few such files in memory at once; with inlineImages,
   * every job that carries one is that much larger in Redis and in the request to fal.
   * @default 10 MiB (flag --max-image-bytes)
   */
  maxInlineImageBytes: number;
  /**
   * Send local images inside the jobs as data URIs instead of uploading them to fal storage. Needs
   * no fal credentials at enqueue time and no fal storage, but every row carries its image's bytes
   * (a third more as base64) through Redis and in its request to fal, however many rows share it.
   * @default false: uploaded once per content, jobs carry the URL (flag --inline-images)
   */
  inlineImages: boolean;
  /**
   * Uploads of local images (and checks of cached upload URLs) in flight at once while enqueueing.
   * More overlaps more network round trips; fal storage may answer 429 past some rate (retried).
   * @default 8 (flag --upload-concurrency)
   */
  uploadConcurrency: number;
  /**
   * Downscale local images whose longer side exceeds this many pixels to fit inside N×N (aspect
   * kept, never enlarged) before they go to fal: fewer bytes to upload, store and send, and llava
   * works at a few hundred pixels anyway. The file itself is never modified. A row's identity
   * names the setting (`sha256:<file>@<N>px`), so another value calls fal again. Unset: images go
   * as they are.
   * @default undefined (flag --max-side)
   */
  maxImageSide: number | undefined;
  /**
   * How long an uploaded image's URL is reused (by later rows, batches and runs) after its upload.
   * fal keeps uploads "at least 7 days by default"; the cache must forget a URL before fal does, with
   * a margin for the jobs that carry it to be worked. A longer time saves uploads on reruns spread
   * over days; a shorter one leaves jobs more time before their image URL expires (a URL reused at
   * the end of this time still lives at least a day).
   * @default 6 days
   */
  uploadCacheTtlMs: number;
  /**
   * Longest prompt, in characters. llava's context holds a few thousand tokens, so a longer prompt
   * is a mistake (a column shifted, a file pasted in), rejected on its row before it is paid for.
   * @default 20,000 (flag --max-prompt-chars)
   */
  maxPromptChars: number;
  /**
   * Longest manifest record, in bytes of the file: one line, or the lines a quoted field spans. A
   * longer line is skipped without being held in memory and rejected on its line; a quote still open
   * past it is rejected on the line it opened on; either way reading goes on with the next line.
   * Large enough for a data URI of maxInlineImageBytes (base64 adds a third); the producer holds up
   * to about this much at a time.
   * @default 16 MiB (flag --max-record-bytes)
   */
  maxRecordBytes: number;
  /**
   * Text encoding of the manifest: utf-8, latin1 (= windows-1252), utf-16le, or any other label
   * Node's TextDecoder knows. A byte order mark (UTF-8, UTF-16) wins over it. A line with bytes not
   * valid in it is rejected, never sent with replacement characters.
   * @default 'utf-8' (flag --encoding)
   */
  encoding: string;
  /**
   * Format of a manifest file: csv, jsonl or parquet. Unset, its name tells (.csv, .jsonl or
   * .ndjson, .parquet; .gz after a text one for gzip), and a name that tells none is read as CSV.
   * For a file whose name says nothing (a URL without an extension, `manifest.txt`).
   * @default undefined (flag --manifest-format)
   */
  manifestFormat: ManifestFormat | undefined;
  /** Folder local image paths must stay inside. Default: the manifest's folder. */
  filesRoot: string | undefined;
  /**
   * The object store's endpoint for `s3://` locations: R2 (`https://<account>.r2.cloudflarestorage.com`),
   * MinIO, GCS (`https://storage.googleapis.com`, HMAC keys). Requests then go path-style. Credentials
   * come from the AWS SDK's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance
   * role) and are never read into the config.
   * @default AWS S3 (env AWS_ENDPOINT_URL, flag --s3-endpoint)
   */
  s3Endpoint: string | undefined;
  /**
   * How long a presigned URL for an `s3://` image stays valid. The worker signs it just before it
   * submits the row, so it must cover fal's queue wait and the fetch; a URL that expired before fal
   * fetched it is signed again and the row submitted again (fal does not bill a download that
   * failed). Longer rides out longer queues; shorter limits what a leaked URL exposes. SigV4 allows
   * at most 7 days.
   * @default 1 hour (flag --presign-expiry)
   */
  presignExpiryMs: number;
  /**
   * `s3://` images go into fal storage at enqueue (like local images: once per content, through the
   * upload cache, keyed by the object's ETag and size so a cached one is never read), the job
   * carrying the fal storage URL, instead of a URL the worker signs. For stores fal cannot reach
   * (a private network), or to read each object once whatever the retries.
   * @default false (flag --upload-images)
   */
  uploadS3Images: boolean;
  /** SIGTERM grace: in-flight rows get this long to finish before they are handed back. @default 30 s */
  graceMs: number;
  /**
   * How long a worker's claim on a row lasts without renewal (renewed every half). A row whose
   * worker died is resumed by another worker after about this long.
   * @default 30 s
   */
  lockDurationMs: number;
  /**
   * How long a new batch's results, row list, figures and the answers it paid for are kept after
   * the batch was last written to (enqueued, a row ended): then they expire, and the batch leaves
   * the list. Each batch keeps the retention it was enqueued with (`--retention` on run or enqueue
   * sets it, for that batch); this is the one a batch gets when nothing says otherwise, and the one
   * answers of batches that are gone, and batches from before retention, get. Longer keeps more
   * to export and more answers to reuse for free, in Redis memory; `Infinity` (`forever`) keeps
   * them until `falbatch prune`. At least 1 s.
   * @default 30 days (flag --retention on run and enqueue, per batch)
   */
  retentionMs: number;
  /**
   * The shortest a batch with rows still to end (or a producer writing it) is kept after its last
   * write, whatever its retention: a batch whose workers are down, or whose queue is paused, is
   * not dropped mid-run. Its retention applies from its last row's end. 0: an unfinished batch
   * expires like a finished one (only for tests and very short retentions).
   * @default 7 days
   */
  unfinishedRetentionMs: number;
}

export const DEFAULT_CONFIG = {
  redisUrl: 'redis://127.0.0.1:6379',
  redisCluster: false,
  prefix: 'falbatch',
  queue: 'jobs',
  falKey: undefined,
  falBaseUrl: undefined,
  endpoint: 'fal-ai/llava-next',
  input: undefined,
  outputField: 'output',
  imageColumns: [],
  promptTemplate: undefined,
  concurrency: 8,
  autoConcurrency: false,
  globalConcurrency: undefined,
  attempts: 5,
  backoffBaseMs: 2 * SECOND,
  backoffMaxMs: 2 * MINUTE,
  waitMode: 'stream',
  pollIntervalMs: 500,
  callTimeoutMs: 30 * SECOND,
  waitBudgetMs: 15 * MINUTE,
  startTimeoutSeconds: undefined,
  price: undefined,
  rateLimitBudgetMs: 30 * MINUTE,
  resultBudgetMs: 60 * MINUTE,
  enqueueChunk: 500,
  maxWaiting: 10_000,
  maxInlineImageBytes: 10 * 1024 * 1024,
  inlineImages: false,
  uploadConcurrency: 8,
  maxImageSide: undefined,
  uploadCacheTtlMs: 6 * 24 * HOUR,
  maxPromptChars: 20_000,
  maxRecordBytes: DEFAULT_MAX_RECORD_BYTES,
  encoding: DEFAULT_ENCODING,
  manifestFormat: undefined,
  filesRoot: undefined,
  s3Endpoint: undefined,
  presignExpiryMs: HOUR,
  uploadS3Images: false,
  graceMs: 30 * SECOND,
  lockDurationMs: 30 * SECOND,
  retentionMs: 30 * 24 * HOUR,
  unfinishedRetentionMs: 7 * 24 * HOUR,
} satisfies Config;

/** Validated configuration: what the library runs with. */
export type ResolvedConfig = Readonly<Config>;

export type ConfigOverrides = { [K in keyof Config]?: Config[K] | undefined };

/**
 * Defaults, then the environment, then explicit overrides (flags); validated once, here, with
 * messages that name the setting, what it expects and what it got.
 */
export function resolveConfig(env: Record<string, string | undefined> = {}, overrides: ConfigOverrides = {}): ResolvedConfig {
  const fromEnv: ConfigOverrides = {
    redisUrl: nonEmpty(env['REDIS_URL']),
    redisCluster: booleanEnv('REDIS_CLUSTER', env['REDIS_CLUSTER']),
    prefix: nonEmpty(env['FALBATCH_PREFIX']),
    queue: nonEmpty(env['FALBATCH_QUEUE']),
    falKey: nonEmpty(env['FAL_KEY']) ?? keyPair(env['FAL_KEY_ID'], env['FAL_KEY_SECRET']),
    falBaseUrl: nonEmpty(env['FAL_BASE_URL']),
    s3Endpoint: nonEmpty(env['AWS_ENDPOINT_URL_S3']) ?? nonEmpty(env['AWS_ENDPOINT_URL']),
  };
  const merged = { ...DEFAULT_CONFIG } as Config;
  for (const source of [fromEnv, overrides]) {
    for (const [key, value] of Object.entries(source)) {
      if (value !== undefined) (merged as unknown as Record<string, unknown>)[key] = value;
    }
  }
  validate(merged);
  return Object.freeze(merged);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function booleanEnv(name: string, value: string | undefined): boolean | undefined {
  const text = nonEmpty(value)?.toLowerCase();
  if (text === undefined) return undefined;
  if (['1', 'true', 'yes', 'on'].includes(text)) return true;
  if (['0', 'false', 'no', 'off'].includes(text)) return false;
  throw new ConfigError(`Expected ${name} to be 1 or 0 (true/false, yes/no), got "${value}"`);
}

function keyPair(id: string | undefined, secret: string | undefined): string | undefined {
  return nonEmpty(id) && nonEmpty(secret) ? `${id}:${secret}` : undefined;
}

function validate(c: Config): void {
  integer('--concurrency', c.concurrency, 1, 10_000);
  if (c.globalConcurrency !== undefined) integer('--global-concurrency', c.globalConcurrency, 1, 100_000);
  integer('attempts', c.attempts, 1, 1000);
  integer('enqueueChunk', c.enqueueChunk, 1, 5000);
  integer('--max-waiting', c.maxWaiting, 1, 100_000_000);
  integer('--max-image-bytes', c.maxInlineImageBytes, 1, 1024 * 1024 * 1024);
  integer('--upload-concurrency', c.uploadConcurrency, 1, 256);
  if (c.maxImageSide !== undefined) integer('--max-side', c.maxImageSide, 16, 16_384);
  // fal keeps uploads at least 7 days: a cache that outlives them hands out dead URLs.
  integer('uploadCacheTtlMs', c.uploadCacheTtlMs, SECOND, 7 * 24 * HOUR);
  if (typeof c.uploadS3Images !== 'boolean') throw new ConfigError(`Expected uploadS3Images to be true or false, got ${String(c.uploadS3Images)}`);
  if (typeof c.inlineImages !== 'boolean') throw new ConfigError(`Expected inlineImages to be true or false, got ${String(c.inlineImages)}`);
  integer('--max-prompt-chars', c.maxPromptChars, 1, 10_000_000);
  // Above 512 MiB a record no longer fits in one JavaScript string.
  integer('--max-record-bytes', c.maxRecordBytes, 1024, 512 * 1024 * 1024);
  if (typeof c.encoding !== 'string') throw new ConfigError(`Expected --encoding to be a text encoding name, got ${String(c.encoding)}`);
  resolveEncoding(c.encoding);
  parseManifestFormat('--manifest-format', c.manifestFormat);
  for (const [name, value] of [
    ['backoffBaseMs', c.backoffBaseMs],
    ['backoffMaxMs', c.backoffMaxMs],
    ['pollIntervalMs', c.pollIntervalMs],
    ['callTimeoutMs', c.callTimeoutMs],
    ['waitBudgetMs', c.waitBudgetMs],
    ['rateLimitBudgetMs', c.rateLimitBudgetMs],
    ['--result-budget', c.resultBudgetMs],
    ['--grace', c.graceMs],
    ['lockDurationMs', c.lockDurationMs],
  ] as const) {
    if (!Number.isFinite(value) || value < 0) throw new ConfigError(`Expected ${name} to be a duration ≥ 0, got ${value}`);
  }
  if (c.startTimeoutSeconds !== undefined && !(c.startTimeoutSeconds > 1)) {
    throw new ConfigError(`Expected the start timeout to be more than 1 second (fal's minimum), got ${c.startTimeoutSeconds}`);
  }
  // Infinity is `forever`; anything shorter than a second would expire a batch between two of its writes.
  if (c.retentionMs !== Number.POSITIVE_INFINITY && !(Number.isInteger(c.retentionMs) && c.retentionMs >= SECOND)) {
    throw new ConfigError(`Expected the retention to be a duration of at least 1s (e.g. 30d, 12h), or forever, got ${String(c.retentionMs)}`);
  }
  integer('unfinishedRetentionMs', c.unfinishedRetentionMs, 0, Number.MAX_SAFE_INTEGER);
  if (c.waitMode !== 'stream' && c.waitMode !== 'poll') throw new ConfigError(`Expected --wait to be "stream" or "poll", got "${String(c.waitMode)}"`);
  // No braces (the hash tag) and no `:` (the key separator).
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(c.queue)) {
    throw new ConfigError(`Expected --queue to be 1-64 letters, digits, ".", "_" or "-" (starting with a letter or digit), got "${c.queue}"`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(c.prefix)) {
    throw new ConfigError(`Expected --prefix to be 1-64 letters, digits, ".", "_" or "-" (starting with a letter or digit), got "${c.prefix}"`);
  }
  if (!/^[A-Za-z0-9][\w.-]*\/[\w.-]+(\/[\w./-]+)?$/.test(c.endpoint)) {
    throw new ConfigError(`Expected --endpoint to be a fal endpoint id like fal-ai/llava-next, got "${c.endpoint}"`);
  }
  // The batch's row mapping: the template syntax, --output-field, --image-columns, and how they combine.
  createRowMapping(c);
  if (typeof c.redisCluster !== 'boolean') throw new ConfigError(`Expected redisCluster to be true or false, got ${String(c.redisCluster)}`);
  redisTarget(c.redisUrl, c.redisCluster);
  if (c.falBaseUrl !== undefined) checkUrl('FAL_BASE_URL', c.falBaseUrl, ['http:', 'https:']);
  if (c.s3Endpoint !== undefined) checkUrl('--s3-endpoint (AWS_ENDPOINT_URL)', c.s3Endpoint, ['http:', 'https:']);
  // SigV4 presigned URLs last at most 7 days; under a minute would expire in fal's queue.
  integer('--presign-expiry', c.presignExpiryMs, MINUTE, 7 * 24 * HOUR);
}

function integer(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`Expected ${name} to be an integer from ${min} to ${max}, got ${String(value)}`);
  }
}

function checkUrl(name: string, value: string, protocols: string[]): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`Expected ${name} to be a URL (${protocols.map((p) => `${p}//…`).join(' or ')}), got "${redactUrl(value)}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`Expected ${name} to start with ${protocols.map((p) => `${p}//`).join(' or ')}, got "${redactUrl(value)}"`);
  }
}

/** A URL (or REDIS_URL's comma-separated list of them) safe to print: passwords (in the user part or a `password=` parameter) replaced. */
export function redactUrl(value: string): string {
  return value.includes(',') ? value.split(',').map(redactOneUrl).join(',') : redactOneUrl(value);
}

function redactOneUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password) url.password = '***';
    if (url.searchParams.has('password')) url.searchParams.set('password', '***');
    return url.toString().replace('password=%2A%2A%2A', 'password=***');
  } catch {
    return value.replace(/\/\/[^@/]*@/, '//***@').replace(/([?&]password=)[^&]*/i, '$1***');
  }
}

/** Every Redis password in REDIS_URL (one per URL of a Cluster's node list). */
export function redisPasswords(url: string): string[] {
  return url
    .split(',')
    .map((item) => passwordOf(item.trim()))
    .filter((p): p is string => p !== undefined);
}

function passwordOf(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    const password = parsed.password ? decodeURIComponent(parsed.password) : parsed.searchParams.get('password');
    return password || undefined;
  } catch {
    return undefined;
  }
}

/** Values that must never be written anywhere: the fal key and the Redis password. */
export function secretsOf(config: Pick<Config, 'falKey' | 'redisUrl'>): string[] {
  return [config.falKey, ...redisPasswords(config.redisUrl)].filter((s): s is string => s !== undefined);
}

/** Where REDIS_URL points: one Redis, or the seed nodes of a Cluster, and how to log in. */
export interface RedisTarget {
  readonly cluster: boolean;
  /** One node for a single Redis; the seed nodes of a Cluster (the rest are discovered). */
  readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
  /** The database (a Cluster has only 0). */
  readonly db: number;
}

/**
 * Reads REDIS_URL: `redis[s]://[user:password@]host[:port][/db]`, or for a Cluster a comma-separated
 * list of seed nodes whose first URL gives the scheme and credentials of all (later items may be
 * plain `host:port`). Throws ConfigError naming what does not fit.
 */
export function redisTarget(value: string, cluster: boolean): RedisTarget {
  const items = value.split(',').map((item) => item.trim());
  if (items.length > 1 && !cluster) {
    throw new ConfigError(
      `Expected REDIS_URL to name one Redis, got a list of ${items.length} (${redactUrl(value)}): a list of nodes is for a Redis Cluster; set REDIS_CLUSTER=1 (or --redis-cluster)`,
    );
  }
  const first = items[0] ?? '';
  checkUrl('REDIS_URL', first, ['redis:', 'rediss:']);
  const head = new URL(first);
  const nodes = items.map((item, index) => {
    if (item === '')
      throw new ConfigError(`Expected REDIS_URL to be a comma-separated list of nodes, got an empty item at position ${index + 1} in "${redactUrl(value)}"`);
    const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(item) ? item : `${head.protocol}//${item}`;
    if (index > 0) {
      checkUrl('REDIS_URL', url, ['redis:', 'rediss:']);
      const node = new URL(url);
      if (
        node.protocol !== head.protocol ||
        (node.password !== '' && node.password !== head.password) ||
        (node.username !== '' && node.username !== head.username)
      ) {
        throw new ConfigError(
          `Expected every node in REDIS_URL to use the first one's scheme and credentials (one Cluster, one login), got "${redactOneUrl(item)}" after "${redactOneUrl(first)}"`,
        );
      }
    }
    const parsed = new URL(url);
    const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
    if (host === '') throw new ConfigError(`Expected REDIS_URL to name a host, got "${redactOneUrl(item)}"`);
    const port = parsed.port === '' ? 6379 : Number(parsed.port);
    return { host, port };
  });
  const dbText = head.pathname.replace(/^\//, '') || head.searchParams.get('db') || '0';
  if (!/^\d+$/.test(dbText)) throw new ConfigError(`Expected the database in REDIS_URL to be a number, got "${dbText}" in "${redactOneUrl(first)}"`);
  const db = Number(dbText);
  if (cluster && db !== 0)
    throw new ConfigError(`Expected no database in REDIS_URL with REDIS_CLUSTER (a Redis Cluster has only database 0), got ${db} in "${redactOneUrl(first)}"`);
  return {
    cluster,
    nodes,
    username: head.username === '' ? undefined : decodeURIComponent(head.username),
    password: passwordOf(first),
    tls: head.protocol === 'rediss:',
    db,
  };
}

/** Parses a flag value that is a duration ("30s", "500ms"), naming the flag when it is not. */
export function durationOption(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined) throw new ConfigError(`Expected ${flag} to be a duration like 30s or 500ms, got "${text}"`);
  return ms;
}

/** Parses a flag value that is an integer, naming the flag when it is not. */
export function integerOption(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text.trim())) throw new ConfigError(`Expected ${flag} to be an integer, got "${text}"`);
  return Number(text);
}
