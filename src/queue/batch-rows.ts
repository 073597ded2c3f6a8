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
}

type Encoded = [number, string, string, string, string, string[], string?];

export function encodeRowEntry(entry: RowEntry): string {
  const encoded: Encoded = [entry.line, entry.key, entry.imageDisplay, entry.prompt, entry.endpoint, entry.extras];
  if (entry.rejected !== undefined) encoded.push(entry.rejected);
  return JSON.stringify(encoded);
}

export function decodeRowEntry(json: string): RowEntry {
  const [line, key, imageDisplay, prompt, endpoint, extras, rejected] = JSON.parse(json) as Encoded;
  return { line, key, imageDisplay, prompt, endpoint, extras, ...(rejected !== undefined ? { rejected } : {}) };
}
