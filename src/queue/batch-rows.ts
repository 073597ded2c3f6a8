/** One manifest row as the batch keeps it for export, in manifest order. */
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
}

type Encoded = [number, string, string, string, string, string[], (string | null)?, string?];

export function encodeRowEntry(entry: RowEntry): string {
  const encoded: Encoded = [entry.line, entry.key, entry.imageDisplay, entry.prompt, entry.endpoint, entry.extras];
  if (entry.rejected !== undefined || entry.skipped !== undefined) encoded.push(entry.rejected ?? null);
  if (entry.skipped !== undefined) encoded.push(entry.skipped);
  return JSON.stringify(encoded);
}

export function decodeRowEntry(json: string): RowEntry {
  const [line, key, imageDisplay, prompt, endpoint, extras, rejected, skipped] = JSON.parse(json) as Encoded;
  return {
    line,
    key,
    imageDisplay,
    prompt,
    endpoint,
    extras,
    ...(rejected !== undefined && rejected !== null ? { rejected } : {}),
    ...(skipped !== undefined ? { skipped } : {}),
  };
}
