import { deflateRawSync, inflateRawSync } from 'node:zlib';

/**
 * Many short JSON entries packed into one Redis list element: the entries joined by newlines
 * (JSON.stringify never writes one), deflated, behind a version byte. A million rows stored one
 * element each cost Redis its per-element overhead and the entries' repeated text (endpoint, URL
 * stem, prompt template) a million times; packed a chunk at a time, the repeats compress away and
 * a row costs what little is unique to it (its fingerprint, the digits of its URL). See
 * BENCHMARKS.md, "Redis per waiting row".
 *
 * An element written before packing (one entry, JSON, so starting with `[`) reads as a pack of
 * one: lists a previous version wrote keep working.
 */
const PACKED_V1 = 0x01;
/** The first byte of an entry written one per element (a JSON array). */
const LEGACY = 0x5b;

export function packEntries(entries: readonly string[]): Buffer {
  const body = deflateRawSync(entries.join('\n'));
  const packed = Buffer.allocUnsafe(body.length + 1);
  packed[0] = PACKED_V1;
  body.copy(packed, 1);
  return packed;
}

export function unpackEntries(element: Buffer): string[] {
  if (element[0] === LEGACY) return [element.toString('utf8')];
  if (element[0] !== PACKED_V1) throw new Error(`unknown packed entries (first byte ${element[0]}): written by a newer falbatch?`);
  return inflateRawSync(element.subarray(1)).toString('utf8').split('\n');
}
