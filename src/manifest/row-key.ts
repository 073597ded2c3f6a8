import { createHash } from 'node:crypto';

/**
 * A row's content fingerprint: endpoint, prompt, parameters and the images' identities (bytes for
 * local files and data URIs, the URL otherwise). Equal fingerprints are the same paid call.
 */
export function rowFingerprint(endpoint: string, prompt: string, imageIdentities: readonly string[], params: Readonly<Record<string, number>>): string {
  const sortedParams = Object.keys(params)
    .sort()
    .map((name) => [name, params[name]]);
  return createHash('sha256')
    .update(JSON.stringify([endpoint, prompt, imageIdentities, sortedParams]))
    .digest('hex')
    .slice(0, 32);
}

/**
 * The fingerprint of a row mapped by an --input template: endpoint, the whole input with each image
 * replaced by its identity, and the output field (two batches reading different fields of the same
 * call must not share the ledger's answer). The template itself is not in it: two templates that
 * make the same input make the same call.
 */
export function inputFingerprint(endpoint: string, identityInput: Readonly<Record<string, unknown>>, outputField: string): string {
  return createHash('sha256')
    .update(JSON.stringify(['input', endpoint, canonical(identityInput), outputField]))
    .digest('hex')
    .slice(0, 32);
}

/** Objects with their keys sorted: the same input written in another key order is the same call. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (typeof value !== 'object' || value === null) return value;
  const record = value as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(record)
      .sort()
      .map((key) => [key, canonical(record[key])]),
  );
}

/** Longest `id` a manifest row may carry. */
export const MAX_ID_LENGTH = 200;

/**
 * BullMQ job id for a row: batch and row key, with `:` (not allowed by BullMQ) escaped. A row with
 * an id also carries its content's fingerprint: an edited row (same id, new prompt or image) is a
 * new job, whatever became of the old one. (A row without an id is keyed by its fingerprint.)
 */
export function jobIdFor(batch: string, key: string, fingerprint: string = key): string {
  const base = `${batch}/${encodeURIComponent(key)}`;
  return fingerprint === key ? base : `${base}~${fingerprint.slice(0, 12)}`;
}

/** Batch names: safe in Redis keys, job ids and file names. */
export const BATCH_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
