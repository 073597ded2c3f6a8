import { ManifestError } from '../errors.js';

/** Columns falbatch reads; any other column is carried through to the output. */
export const KNOWN_COLUMNS = ['id', 'image_url', 'prompt', 'endpoint', 'max_tokens', 'temperature', 'top_p'] as const;
export type KnownColumn = (typeof KNOWN_COLUMNS)[number];
export const REQUIRED_COLUMNS: readonly KnownColumn[] = ['image_url', 'prompt'];

/**
 * What a batch's mapping reads from the header: the built-in endpoints' columns, or those an
 * --input or --prompt-template names.
 */
export interface ColumnLayout {
  /** Columns read and shown in outputs of their own (folded): not carried as extras. */
  consumed: readonly string[];
  /** Columns the header must have (as the mapping names them), in the order they are reported. */
  required: readonly string[];
  /** Image columns (folded). */
  images: readonly string[];
  /** What the missing-column message says a manifest needs. */
  needs: string;
}

/** The built-in endpoints' columns. */
export const BUILT_IN_LAYOUT: ColumnLayout = {
  consumed: KNOWN_COLUMNS,
  required: REQUIRED_COLUMNS,
  images: ['image_url'],
  needs: 'A manifest needs image_url and prompt columns; id, endpoint, max_tokens, temperature and top_p are optional.',
};

export interface ColumnMap {
  /** Field index of each known column present (of those the layout reads). */
  known: Partial<Record<KnownColumn, number>>;
  /** Field index of every column, by folded name: what templates look up. */
  byName: ReadonlyMap<string, number>;
  /** Field indexes of the image columns present. */
  images: number[];
  /** The other columns, in header order: carried through to the output. */
  extras: Array<{ name: string; index: number }>;
  width: number;
}

/**
 * Maps the header row. Names are matched without surrounding spaces and case. A missing required
 * column or a repeated name fails the whole manifest before anything is enqueued. `where` names
 * the header in messages (a Parquet file's columns are its schema, a JSONL file's its first object's keys).
 */
export function mapColumns(header: string[], file: string, layout: ColumnLayout = BUILT_IN_LAYOUT, where = 'the header (line 1)'): ColumnMap {
  const known: Partial<Record<KnownColumn, number>> = {};
  const extras: Array<{ name: string; index: number }> = [];
  const seen = new Map<string, number>();
  header.forEach((raw, index) => {
    const name = raw.trim() === '' ? `column_${index + 1}` : raw.trim();
    const folded = name.toLowerCase();
    const earlier = seen.get(folded);
    if (earlier !== undefined) {
      throw new ManifestError(
        'MANIFEST_INVALID',
        `${file}: line 1: column "${name}" appears twice (columns ${earlier + 1} and ${index + 1}); rename one of them.`,
        {
          file,
          line: 1,
          column: name,
        },
      );
    }
    seen.set(folded, index);
    if (!layout.consumed.includes(folded)) extras.push({ name, index });
    else if ((KNOWN_COLUMNS as readonly string[]).includes(folded)) known[folded as KnownColumn] = index;
  });
  const missing = layout.required.filter((column) => !seen.has(column.trim().toLowerCase()));
  if (missing.length > 0) {
    const found = header.map((h) => `"${h.trim()}"`).join(', ') || '(none)';
    const separator = header.length === 1 && where === 'the header (line 1)' ? [';', '\t', '|'].find((s) => header[0]?.includes(s)) : undefined;
    const hint = separator
      ? ` The header looks separated by ${separator === '\t' ? 'tabs' : `"${separator}"`}: falbatch reads comma-separated CSV (save the file as CSV with commas).`
      : '';
    throw new ManifestError(
      'MANIFEST_INVALID',
      `${file}: ${where} has no ${missing.map((m) => `"${m}"`).join(' or ')} column. Found: ${found}. ${layout.needs}${hint}`,
      { file, line: 1, column: missing[0] as string },
    );
  }
  const images = layout.images.flatMap((name) => {
    const index = seen.get(name);
    return index === undefined ? [] : [index];
  });
  return { known, byName: seen, images, extras, width: header.length };
}
