/**
 * The error taxonomy. Every error falbatch raises on purpose is a FalbatchError with a stable
 * `code`; the CLI maps codes to exit statuses and prints only the message (never a stack) for
 * them. Messages name the item (file, CSV line, column, endpoint, request id) and say what to do.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'FAL_KEY_MISSING'
  | 'MANIFEST_UNREADABLE'
  | 'MANIFEST_INVALID'
  | 'REDIS_UNAVAILABLE'
  | 'REDIS_OUT_OF_MEMORY'
  | 'BATCH_NOT_FOUND'
  | 'BATCH_LOST'
  | 'OUTPUT_UNWRITABLE'
  | 'FAL_HTTP'
  | 'FAL_TRANSPORT'
  | 'FAL_TIMEOUT'
  | 'FAL_PROTOCOL'
  | 'RESULTS_NOT_WRITTEN'
  | 'DEPENDENCY_MISSING'
  | 'STORAGE_DENIED'
  | 'STORAGE_NOT_FOUND'
  | 'STORAGE_UNAVAILABLE';

export interface FalbatchErrorOptions {
  cause?: unknown;
}

export class FalbatchError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: FalbatchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

/** A setting (flag or environment variable) has a value falbatch cannot use. */
export class ConfigError extends FalbatchError {
  constructor(message: string, options: FalbatchErrorOptions = {}) {
    super('CONFIG_INVALID', message, options);
  }
}

/** No fal credentials and no emulator: nothing can be called. */
export class MissingCredentialsError extends FalbatchError {
  /** @param message what needed them and the ways out, when not calling models (e.g. uploading local images). */
  constructor(message?: string) {
    super(
      'FAL_KEY_MISSING',
      message ??
        'FAL_KEY is not set, so falbatch cannot call fal.ai. Create a key at https://fal.ai/dashboard/keys ' +
          'and export FAL_KEY=..., or try everything locally first with --emulate (a built-in fal emulator, no credits spent).',
    );
  }
}

/** The manifest as a whole cannot be used (unreadable, no header, a required column missing, --strict). */
export class ManifestError extends FalbatchError {
  readonly file: string;
  readonly line: number | undefined;
  readonly column: string | undefined;

  constructor(
    code: 'MANIFEST_UNREADABLE' | 'MANIFEST_INVALID',
    message: string,
    where: { file: string; line?: number; column?: string },
    options: FalbatchErrorOptions = {},
  ) {
    super(code, message, options);
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
  }
}

export class RedisUnavailableError extends FalbatchError {
  constructor(message: string, options: FalbatchErrorOptions = {}) {
    super('REDIS_UNAVAILABLE', message, options);
  }
}

/** What frees room in a Redis that refuses writes: said by every command and worker that meets one. */
export const REDIS_MEMORY_ADVICE =
  'Free room: raise maxmemory (CONFIG SET maxmemory 4gb, and in redis.conf), delete finished batches (`falbatch prune`), ' +
  'or keep batches for less time (--retention, e.g. 1d).';

/**
 * Redis refuses writes: it reached its `maxmemory` and, with `noeviction` (the only safe policy
 * for a queue), answers `OOM command not allowed` to anything that needs room. Nothing is wrong
 * with the rows: the command stops (workers wait instead, see worker/redis-memory-pause.ts).
 */
export class RedisOutOfMemoryError extends FalbatchError {
  constructor(cause?: unknown) {
    super(
      'REDIS_OUT_OF_MEMORY',
      `Redis is out of memory: it reached its maxmemory and refuses writes (${oomReplyText(cause)}). ${REDIS_MEMORY_ADVICE} ` +
        'Then run the command again: what it wrote before is kept, and nothing is added or paid twice.',
      cause === undefined ? {} : { cause },
    );
  }
}

/**
 * Whether an error is Redis refusing a write for want of memory: a reply starting `OOM `, or a
 * MULTI that Redis aborted (`EXECABORT`) because one of its commands was refused that way.
 */
export function isRedisOutOfMemory(error: unknown): boolean {
  if (error instanceof RedisOutOfMemoryError) return true;
  if (!(error instanceof Error)) return false;
  if (error.message.startsWith('OOM ')) return true;
  if (!error.message.startsWith('EXECABORT')) return false;
  const previous = (error as Error & { previousErrors?: unknown }).previousErrors;
  return Array.isArray(previous) && previous.some((e) => isRedisOutOfMemory(e));
}

/** Redis's own words, first sentence only (a script's sha and line are no use to a person). */
function oomReplyText(cause: unknown): string {
  const message = cause instanceof Error ? cause.message : '';
  const oom = message.startsWith('OOM ')
    ? message
    : (((cause as { previousErrors?: unknown } | undefined)?.previousErrors as unknown[] | undefined)?.find(
        (e): e is Error => e instanceof Error && e.message.startsWith('OOM '),
      )?.message ?? '');
  const sentence = /^OOM [^.]*/.exec(oom)?.[0];
  return sentence ?? "OOM command not allowed when used memory > 'maxmemory'";
}

export class BatchNotFoundError extends FalbatchError {
  /** @param hint what else may explain it (e.g. a Redis that keeps nothing on disk and restarted). */
  constructor(batch: string, hint?: string) {
    super(
      'BATCH_NOT_FOUND',
      `No batch named "${batch}" in this Redis namespace. Run \`falbatch status\` to list the batches ` +
        '(and check REDIS_URL and --prefix point where the batch was enqueued).' +
        (hint ? ` ${hint}` : ''),
    );
  }
}

/**
 * The batch's state vanished from Redis while the batch was live: Redis was flushed, or restarted
 * without persistence. Nothing more is written under its keys.
 */
export class BatchLostError extends FalbatchError {
  readonly batch: string;

  constructor(batch: string) {
    super(
      'BATCH_LOST',
      `Redis lost the state of batch "${batch}" while it ran: was Redis restarted without persistence (no AOF, no RDB), or flushed? ` +
        'Its rows and results are gone from Redis; answers that came in after the loss were kept for reuse. ' +
        'Enqueue (or run) the manifest again to finish it: rows whose answers were kept are not paid again. ' +
        'To keep batches across restarts, turn on AOF (appendonly yes) in Redis.',
    );
    this.batch = batch;
  }
}

export class OutputError extends FalbatchError {
  constructor(message: string, options: FalbatchErrorOptions = {}, code: 'OUTPUT_UNWRITABLE' | 'RESULTS_NOT_WRITTEN' = 'OUTPUT_UNWRITABLE') {
    super(code, message, options);
  }
}

/**
 * The results file could not be written, but the results are in Redis (the batch ran, or export
 * found it): nothing is lost, nothing is paid for again, and `falbatch export` writes them
 * elsewhere. Its own exit status (3), so scripts can tell "safe in Redis, just export them".
 */
export class ResultsNotWrittenError extends OutputError {
  readonly batch: string;
  readonly out: string;
  /** The command that writes them, e.g. `falbatch export --batch m-1a2b3c4d --out /data/out.csv`. */
  readonly exportCommand: string;
  /** Why the file could not be written. */
  readonly reason: string;

  constructor(reason: string, where: { batch: string; out: string; exportCommand: string; ran?: string | undefined }, options: FalbatchErrorOptions = {}) {
    super(
      `${reason}\n${where.ran ? `${where.ran}. Its results` : `The results of batch ${where.batch}`} are kept in Redis: nothing is lost, and nothing already answered is paid for again. ` +
        `Write them (to this file once its folder takes files again, or to another one) with:\n  ${where.exportCommand}`,
      options,
      'RESULTS_NOT_WRITTEN',
    );
    this.batch = where.batch;
    this.out = where.out;
    this.exportCommand = where.exportCommand;
    this.reason = reason;
  }
}

/**
 * A package falbatch loads only when a feature needs it (sharp for --max-side, prom-client for
 * --metrics-port, ...) could not be loaded: not installed, or its native part missing.
 */
export class DependencyError extends FalbatchError {
  /** The package, e.g. `sharp`. */
  readonly dependency: string;

  /** @param purpose what needed it, e.g. "Downscaling images (--max-side)". */
  constructor(dependency: string, purpose: string, cause: unknown) {
    super(
      'DEPENDENCY_MISSING',
      `${purpose} needs the ${dependency} package, which could not be loaded: ${(cause as Error)?.message ?? String(cause)}\n` +
        "Reinstall falbatch's dependencies (npm ci in a checkout, npm install where falbatch is a dependency).",
      { cause },
    );
    this.dependency = dependency;
  }
}

/**
 * An object store (S3, R2, MinIO, GCS) refused or could not serve what a command needs: no or
 * denied credentials (`STORAGE_DENIED`), a bucket or object that does not exist
 * (`STORAGE_NOT_FOUND`), an endpoint that does not answer (`STORAGE_UNAVAILABLE`). The message
 * names the bucket and key, and what to set; it never holds a credential.
 */
export class StorageError extends FalbatchError {
  readonly bucket: string;
  readonly key: string | undefined;

  constructor(
    code: 'STORAGE_DENIED' | 'STORAGE_NOT_FOUND' | 'STORAGE_UNAVAILABLE',
    message: string,
    where: { bucket: string; key?: string | undefined },
    options: FalbatchErrorOptions = {},
  ) {
    super(code, message, options);
    this.bucket = where.bucket;
    this.key = where.key;
  }
}

/** What fal's answer said, kept for classification and for the row's error column. */
export interface FalHttpErrorDetails {
  status: number;
  endpoint: string;
  operation: FalOperation;
  /** Parsed JSON body, or the text body, or undefined. */
  body: unknown;
  requestId: string | undefined;
  /** From `Retry-After` (seconds or an HTTP date), in milliseconds. */
  retryAfterMs: number | undefined;
  /** `X-Fal-Error-Type` header or the body's `error_type`. */
  errorType: string | undefined;
  /** `X-Fal-Request-Timeout-Type` (`user` for a start-timeout expiry). */
  timeoutType: string | undefined;
  /** `X-Fal-Retryable` when fal says. */
  retryable: boolean | undefined;
}

export type FalOperation = 'submit' | 'status' | 'stream' | 'result' | 'cancel' | 'run' | 'upload';

/** fal answered with a non-2xx status. */
export class FalHttpError extends FalbatchError implements FalHttpErrorDetails {
  readonly status: number;
  readonly endpoint: string;
  readonly operation: FalOperation;
  readonly body: unknown;
  readonly requestId: string | undefined;
  readonly retryAfterMs: number | undefined;
  readonly errorType: string | undefined;
  readonly timeoutType: string | undefined;
  readonly retryable: boolean | undefined;

  constructor(details: FalHttpErrorDetails) {
    super('FAL_HTTP', describeFalHttpError(details));
    this.status = details.status;
    this.endpoint = details.endpoint;
    this.operation = details.operation;
    this.body = details.body;
    this.requestId = details.requestId;
    this.retryAfterMs = details.retryAfterMs;
    this.errorType = details.errorType;
    this.timeoutType = details.timeoutType;
    this.retryable = details.retryable;
  }
}

/** The request never got an HTTP answer: connection refused or reset, DNS, socket closed. */
export class FalTransportError extends FalbatchError {
  readonly operation: FalOperation;
  readonly endpoint: string;
  /** ECONNRESET, UND_ERR_SOCKET, ...: the lowest system code found. */
  readonly transportCode: string | undefined;

  constructor(operation: FalOperation, endpoint: string, transportCode: string | undefined, detail: string) {
    // The original error is deliberately not kept as `cause`: @fal-ai/client walks the cause chain
    // for transport codes and would retry on its own, and falbatch owns every retry (see fal/README).
    super('FAL_TRANSPORT', `${operation} ${endpoint}: no complete answer from fal (${transportCode ?? detail})`);
    this.operation = operation;
    this.endpoint = endpoint;
    this.transportCode = transportCode;
  }
}

/** A deadline of falbatch's own passed (per-call time-out or the wait budget of a request). */
export class FalTimeoutError extends FalbatchError {
  readonly operation: FalOperation;
  readonly requestId: string | undefined;

  constructor(operation: FalOperation, message: string, requestId?: string) {
    super('FAL_TIMEOUT', message);
    this.operation = operation;
    this.requestId = requestId;
  }
}

/** fal answered 2xx with something that is not what its protocol promises. */
export class FalProtocolError extends FalbatchError {
  constructor(message: string) {
    super('FAL_PROTOCOL', message);
  }
}

function describeFalHttpError(d: FalHttpErrorDetails): string {
  const where = `${d.operation} ${d.endpoint}${d.requestId ? ` (request ${d.requestId})` : ''}`;
  return `${where}: fal answered ${d.status}${d.errorType ? ` ${d.errorType}` : ''}: ${falDetailText(d.body)}`;
}

/** fal's error bodies carry `detail` as a string or a Pydantic list; render either for a person. */
export function falDetailText(body: unknown): string {
  if (body === undefined || body === null || body === '') return 'no details';
  if (typeof body === 'string') return body.slice(0, 500);
  if (typeof body !== 'object') return String(body);
  const record = body as Record<string, unknown>;
  const detail = record['detail'] ?? record['message'] ?? record['error'];
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (typeof item !== 'object' || item === null) return String(item);
        const entry = item as Record<string, unknown>;
        const loc = Array.isArray(entry['loc']) ? entry['loc'].filter((p) => p !== 'body').join('.') : '';
        return `${loc ? `${loc}: ` : ''}${String(entry['msg'] ?? 'invalid')}`;
      })
      .join('; ');
  }
  return JSON.stringify(body).slice(0, 500);
}

/** Exit statuses of the CLI: documented in the README. */
export const EXIT = {
  ok: 0,
  fatal: 1,
  rowsFailed: 2,
  /** The batch ran (or export found it) but its results file could not be written: they are in Redis. */
  resultsNotWritten: 3,
  interrupted: 130,
} as const;
