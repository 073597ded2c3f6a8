import { ManifestError } from '../errors.js';

/** Columns falbatch reads; any other column is carried through to the output. */
export const KNOWN_COLUMNS = ['id', 'image_url', 'prompt', 'endpoint', 'max_tokens', 'temperature', 'top_p'] as const;
export type KnownColumn = (typeof KNOWN_COLUMNS)[number];
export const REQUIRED_COLUMNS: readonly KnownColumn[] = ['image_url', 'prompt'];

export interface ColumnMap {
  /** Field index of each known column present. */
  known: Partial<Record<KnownColumn, number>>;
  /** The other columns, in header order: carried through to the output. */
  extras: Array<{ name: string; index: number }>;
  width: number;
}

/**
 * Maps the header row. Names are matched without surrounding spaces and case. A missing required
 * column or a repeated name fails the whole manifest before anything is enqueued.
 */
export function mapColumns(header: string[], file: string): ColumnMap {
  const known: Partial<Record<KnownColumn, number>> = {};
  const extras: Array<{ name: string; index: number }> = [];
  const seen = new Map<string, number>();
  header.forEach((raw, index) => {
    const name = raw.trim() === '' ? `column_${index + 1}` : raw.trim();
    const folded = name.toLowerCase();
    const earlier = seen.get(folded);
    if (earlier !== undefined) {
      throw new ManifestError('MANIFEST_INVALID', `${file}: line 1: column "${name}" appears twice (columns ${earlier + 1} and ${index + 1}); rename one of them.`, {
        file,
        line: 1,
        column: name,
      });
    }
    seen.set(folded, index);
    if ((KNOWN_COLUMNS as readonly string[]).includes(folded)) known[folded as KnownColumn] = index;
    else extras.push({ name, index });
  });
  const missing = REQUIRED_COLUMNS.filter((column) => known[column] === undefined);
  if (missing.length > 0) {
    const found = header.map((h) => `"${h.trim()}"`).join(', ') || '(none)';
    const separator = header.length === 1 ? [';', '\t', '|'].find((s) => header[0]?.includes(s)) : undefined;
    const hint = separator
      ? ` The header looks separated by ${separator === '\t' ? 'tabs' : `"${separator}"`}: falbatch reads comma-separated CSV (save the file as CSV with commas).`
      : '';
    throw new ManifestError(
      'MANIFEST_INVALID',
      `${file}: the header (line 1) has no ${missing.map((m) => `"${m}"`).join(' or ')} column. Found: ${found}. ` +
        `A manifest needs image_url and prompt columns; id, endpoint, max_tokens, temperature and top_p are optional.${hint}`,
      { file, line: 1, column: missing[0] as string },
    );
  }
  return { known, extras, width: header.length };
}
