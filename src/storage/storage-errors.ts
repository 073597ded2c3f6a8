import { StorageError } from '../errors.js';

/** The endpoint the store was reached at, for messages: `--s3-endpoint`/`AWS_ENDPOINT_URL`, or AWS S3. */
export type StoreLabel = string;

const CREDENTIALS_HELP =
  'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE for a profile in ~/.aws/config, or run where an instance role applies), ' +
  'and --s3-endpoint (or AWS_ENDPOINT_URL) for R2, MinIO or GCS';

/** What an SDK error says about itself: its name, HTTP status, and system code (for transport failures). */
function describe(error: unknown): { name: string; status: number | undefined; code: string | undefined } {
  const e = error as { name?: unknown; Code?: unknown; code?: unknown; $metadata?: { httpStatusCode?: unknown }; cause?: unknown };
  const name = typeof e?.name === 'string' ? e.name : typeof e?.Code === 'string' ? e.Code : 'Error';
  const status = typeof e?.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  let code: string | undefined;
  for (let at: unknown = error, depth = 0; at && depth < 5 && code === undefined; at = (at as { cause?: unknown }).cause, depth++) {
    const c = (at as { code?: unknown }).code;
    if (typeof c === 'string' && /^E[A-Z_]+$|^UND_ERR/.test(c)) code = c;
  }
  return { name, status, code };
}

/**
 * An SDK failure as a StorageError: one line naming the bucket (and key), what the store said, and
 * what to do. `doing` says what was attempted ("list", "read", "write"). Returns undefined for an
 * error that is not the store's (a bug, an abort): the caller rethrows it as it is.
 */
export function storageErrorOf(
  error: unknown,
  where: { bucket: string; key?: string | undefined },
  doing: string,
  endpoint: StoreLabel,
): StorageError | undefined {
  if (error instanceof StorageError) return error;
  if ((error as { name?: string })?.name === 'AbortError') return undefined;
  const { name, status, code } = describe(error);
  // A HEAD's refusal has no body to name it: its status says it.
  const said = name === 'Unknown' || name === 'Error' ? String(status ?? name) : name;
  const target = where.key === undefined ? `bucket ${where.bucket}` : `s3://${where.bucket}/${where.key}`;
  const at = ` (at ${endpoint})`;
  if (name === 'CredentialsProviderError' || /credential/i.test(name)) {
    return new StorageError('STORAGE_DENIED', `Cannot ${doing} ${target}: no AWS credentials were found; ${CREDENTIALS_HELP}.`, where, { cause: error });
  }
  if (
    ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'Forbidden', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled'].includes(name) ||
    status === 403
  ) {
    return new StorageError(
      'STORAGE_DENIED',
      `Cannot ${doing} ${target}${at}: the store refused the credentials (${said}); check that they are valid and allowed to ${doing} it: ${CREDENTIALS_HELP}.`,
      where,
      { cause: error },
    );
  }
  if (name === 'NoSuchBucket') {
    return new StorageError(
      'STORAGE_NOT_FOUND',
      `Cannot ${doing} ${target}${at}: bucket ${where.bucket} does not exist (check its name, and --s3-endpoint/AWS_ENDPOINT_URL).`,
      where,
      {
        cause: error,
      },
    );
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new StorageError('STORAGE_NOT_FOUND', `Cannot ${doing} ${target}${at}: no such object (check the key and the bucket).`, where, { cause: error });
  }
  if (code !== undefined || name === 'TimeoutError' || (status !== undefined && status >= 500)) {
    return new StorageError(
      'STORAGE_UNAVAILABLE',
      `Cannot ${doing} ${target}: the store at ${endpoint} did not answer (${code ?? status ?? name}); check --s3-endpoint/AWS_ENDPOINT_URL and the network, then run the command again.`,
      where,
      { cause: error },
    );
  }
  if (status !== undefined) {
    return new StorageError(
      'STORAGE_UNAVAILABLE',
      `Cannot ${doing} ${target}${at}: the store answered ${said === String(status) ? said : `${status} ${said}`}.`,
      where,
      { cause: error },
    );
  }
  return undefined;
}
