import { describe, expect, it } from 'vitest';
import { ManifestError } from '../../src/errors.js';
import { mapColumns } from '../../src/manifest/columns.js';

describe('mapColumns', () => {
  it('finds the known columns whatever their case, spaces and order, and carries the others', () => {
    const map = mapColumns([' Prompt ', 'note', 'IMAGE_URL', 'id', ''], 'm.csv');
    expect(map.known).toEqual({ prompt: 0, image_url: 2, id: 3 });
    expect(map.extras).toEqual([
      { name: 'note', index: 1 },
      { name: 'column_5', index: 4 },
    ]);
  });

  it('names the missing required column and the columns found', () => {
    expect(() => mapColumns(['image', 'prompt'], 'm.csv')).toThrow('m.csv: the header (line 1) has no "image_url" column. Found: "image", "prompt".');
  });

  it('says when a file looks separated by something other than commas', () => {
    expect(() => mapColumns(['image_url;prompt'], 'm.csv')).toThrow(/looks separated by ";": falbatch reads comma-separated CSV/);
    expect(() => mapColumns(['image_url\tprompt'], 'm.csv')).toThrow(/looks separated by tabs/);
  });

  it('refuses a column named twice', () => {
    const error = (() => {
      try {
        mapColumns(['image_url', 'prompt', 'Prompt'], 'm.csv');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as ManifestError).message).toContain('column "Prompt" appears twice (columns 2 and 3)');
  });
});
