/**
 * The batch's row keys hash (queue/keys.ts: row key → fingerprint) stores an empty value for a
 * row without an id: its key is its fingerprint, and 32 characters fewer a row is about a
 * quarter of what the hash costs (BENCHMARKS.md, "Redis per waiting row"). Readers go through
 * fingerprintOf (the Lua scripts do the same: begin-row, record-result). Values written before
 * hold the fingerprint itself, which reads the same.
 */
export function storedFingerprint(key: string, fingerprint: string): string {
  return key === fingerprint ? '' : fingerprint;
}

/** A row key's fingerprint from what the row keys hash holds for it (null: not there). */
export function fingerprintOf(key: string, stored: string | null | undefined): string | null {
  if (stored === null || stored === undefined) return null;
  return stored === '' ? key : stored;
}
