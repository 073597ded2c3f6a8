import type { RedisClient } from './connection.js';
import { packEntries, unpackEntries } from './packed-entries.js';

/**
 * One manifest row as the batch keeps it for export, in manifest order. The batch's rows list
 * holds them a chunk to an element, packed (queue/packed-entries.ts): what the producer wrote in
 * one go.
 */
export interface RowEntry {
  line: number;
  /** Row key (id or content fingerprint); for a rejected row, its id if it had one. */
  key: string;
  imageDisplay: string;
  prompt: string;
  endpoint: string;
  extras: string[];
  /** Set when the row was rejected: why. */
  rejected?: string;
  /** Set when the row needs no call (e.g. its image already has a caption file): why. */
  skipped?: string;
  /**
   * The row's local image files, relative to the batch's files root (its meta `files_root`), `/`
   * separated: where caption files go, and the `file_name` of Hugging Face imagefolder metadata.
   */
  files?: string[];
}

/** Positions after `extras` are optional; a missing one is null when a later one is set. */
type Encoded = [number, string, string, string, string, string[], (string | null)?, (string | null)?, string[]?];

export function encodeRowEntry(entry: RowEntry): string {
  const encoded: Encoded = [entry.line, entry.key, entry.imageDisplay, entry.prompt, entry.endpoint, entry.extras];
  const tail: [string | null, string | null, string[] | null] = [
    entry.rejected ?? null,
    entry.skipped ?? null,
    entry.files && entry.files.length > 0 ? entry.files : null,
  ];
  while (tail.length > 0 && tail[tail.length - 1] === null) tail.pop();
  return JSON.stringify([...encoded, ...tail]);
}

export function decodeRowEntry(json: string): RowEntry {
  const [line, key, imageDisplay, prompt, endpoint, extras, rejected, skipped, files] = JSON.parse(json) as Encoded;
  return {
    line,
    key,
    imageDisplay,
    prompt,
    endpoint,
    extras,
    ...(rejected !== undefined && rejected !== null ? { rejected } : {}),
    ...(skipped !== undefined && skipped !== null ? { skipped } : {}),
    ...(files !== undefined && files !== null ? { files } : {}),
  };
}

/** A chunk of row entries as one element of the rows list. */
export function packRowEntries(entries: readonly RowEntry[]): Buffer {
  return packEntries(entries.map(encodeRowEntry));
}

/** Rows export handles at once (their results are read in one HMGET). */
const PAGE_ROWS = 1000;

/**
 * The entries of a rows list in manifest order, about a thousand at a time: as many elements at
 * once as hold that many rows (one, for the chunks a producer writes; a thousand, for a list
 * written one row an element by an earlier version).
 */
export async function* rowEntryPages(redis: RedisClient, rows: string): AsyncGenerator<RowEntry[]> {
  let start = 0;
  let perPage = 1;
  for (;;) {
    const elements = await redis.lrangeBuffer(rows, start, start + perPage - 1);
    if (elements.length === 0) return;
    start += elements.length;
    const page = elements.flatMap((element) => unpackEntries(element).map(decodeRowEntry));
    perPage = Math.max(1, Math.floor(PAGE_ROWS / Math.max(1, page.length / elements.length)));
    yield page;
  }
}
