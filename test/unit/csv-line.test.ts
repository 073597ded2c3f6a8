import { stringify } from 'csv-stringify/sync';
import { describe, expect, it } from 'vitest';
import type { OutputRow } from '../../src/results/output-row.js';
import { csvLine } from '../../src/results/row-sinks.js';

// The results CSV was written by csv-stringify; csvLine writes it now (faster, see row-sinks.ts).
// A reader of the file must not see a byte of difference.
const CAST = { boolean: (value: boolean): string => (value ? 'true' : 'false') };

const values = [
  'plain',
  '',
  ' leading and trailing spaces ',
  'a, comma',
  'a "quoted" word',
  '"',
  '""',
  'line\nbreak',
  'carriage\rreturn',
  'crlf\r\nend',
  '=1+2',
  '-minus',
  '@at',
  '\ttab',
  'ünïcödé 漢字 🙂',
  'https://example.com/a.jpg?x=1&y=2',
  '[emulated:f7e7a0cbe0] a caption',
  0,
  -1.5,
  1e21,
  123456789,
  0.1,
  true,
  false,
  null,
];

describe('csvLine', () => {
  it('writes each value exactly as csv-stringify did, alone and in every pair', () => {
    const columns = ['a', 'b', 'meta.source'];
    const rows: OutputRow[] = [];
    for (const a of values) for (const b of values) rows.push({ a, b, 'meta.source': typeof a === 'string' ? `${a}|${String(b)}` : b });
    const expected = stringify(rows, { columns, cast: CAST });
    expect(rows.map((row) => csvLine(columns.map((column) => row[column]))).join('')).toBe(expected);
  });

  it('writes an empty cell for a column a row lacks', () => {
    expect(csvLine(['x', undefined, 'y'])).toBe(stringify([{ a: 'x', c: 'y' }], { columns: ['a', 'b', 'c'], cast: CAST }));
  });
});
