import { describe, expect, it } from 'vitest';
import { overridesFrom, type RawFlags } from '../../src/cli/shared-options.js';
import { resolveConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { readAnswer } from '../../src/fal/endpoints.js';
import { mapColumns } from '../../src/manifest/columns.js';
import { compileInputTemplate, compileTextTemplate, renderTemplate, type InputTemplate } from '../../src/manifest/input-template.js';
import type { ImageResolver } from '../../src/manifest/resolve-images.js';
import { createRowMapping } from '../../src/manifest/row-mapping.js';
import { validateRow, type RowContext } from '../../src/manifest/validate-row.js';

/** Images without files: `ref:<cell>` goes to fal, `id:<cell>` is the identity, non-URLs count as local files. */
const images: ImageResolver = {
  async resolve(cell, column) {
    const parts = cell.split('|').map((p) => p.trim());
    if (cell.trim() === '') return { ok: false, reason: `${column} is empty` };
    if (parts.includes('missing.png')) return { ok: false, reason: `local file "missing.png" not found (${column})` };
    return {
      ok: true,
      references: parts.map((p) => `ref:${p}`),
      identities: parts.map((p) => `id:${p}`),
      localFiles: parts.filter((p) => !p.startsWith('http')).map((p) => `/data/${p}`),
    };
  },
};

async function render(template: InputTemplate, cells: Record<string, string>, maxTextChars = 1000) {
  const folded = new Map(Object.entries(cells).map(([k, v]) => [k.toLowerCase(), v]));
  return renderTemplate(template, (key) => folded.get(key), { images, maxTextChars });
}

const compile = (json: unknown, imageColumns: string[] = []): InputTemplate => compileInputTemplate(json, { flag: '--input', imageColumns });

describe('input templates: what a row becomes', () => {
  it.each<[string, unknown, Record<string, string>, Record<string, unknown>]>([
    ['a string that is exactly {column} becomes the cell (trimmed)', { question: '{q}' }, { q: '  What is it?  ' }, { question: 'What is it?' }],
    [
      'placeholders inside a longer string are substituted as text',
      { prompt: 'Q: {q} (answer in {lang})' },
      { q: 'why', lang: 'French' },
      { prompt: 'Q: why (answer in French)' },
    ],
    [
      'literals stay as written: numbers, booleans, null, nested objects and arrays',
      { q: '{q}', seed: 42, opts: { fast: true, none: null, list: [1, 'two', { three: 3 }] } },
      { q: 'x' },
      { q: 'x', seed: 42, opts: { fast: true, none: null, list: [1, 'two', { three: 3 }] } },
    ],
    [
      '{{ and }} are literal braces; a string without placeholders is a literal',
      { p: '{{json}} {q}', style: '{{x}}' },
      { q: 'y' },
      { p: '{json} y', style: '{x}' },
    ],
    ['column names are matched without case or surrounding spaces', { q: '{ Question }' }, { question: 'hi' }, { q: 'hi' }],
    ['int: a whole number, sent as a number', { steps: '{steps:int}' }, { steps: '12' }, { steps: 12 }],
    ['int: exponent notation that is whole', { steps: '{steps:int}' }, { steps: '1e2' }, { steps: 100 }],
    ['number: any finite number', { t: '{temp:number}' }, { temp: '-0.5' }, { t: -0.5 }],
    ['bool: true or false, any case', { fast: '{fast:bool}', slow: '{slow:bool}' }, { fast: 'TRUE', slow: 'false' }, { fast: true, slow: false }],
    ['typed placeholders inside text are checked, then written as the cell', { p: 'Use {n:int} words' }, { n: '7' }, { p: 'Use 7 words' }],
    ['optional: an empty cell drops the key', { q: '{q}', seed: '{seed:int?}', note: '{note?}' }, { q: 'x', seed: '', note: ' ' }, { q: 'x' }],
    ['optional: a set cell is sent', { q: '{q}', seed: '{seed:int?}' }, { q: 'x', seed: '7' }, { q: 'x', seed: 7 }],
    ['optional: an empty cell drops an array item', { tags: ['{a?}', '{b?}', 'fixed'] }, { a: '', b: 'B' }, { tags: ['B', 'fixed'] }],
    ['image: one image, as fal takes it', { image: '{img:image}', q: '{q}' }, { img: 'cat.png', q: 'x' }, { image: 'ref:cat.png', q: 'x' }],
    [
      'image[]: the array item holding it is repeated once per image (the Mantis shape)',
      { prompt: '{q}', images: [{ image_url: '{img:image[]}' }] },
      { img: 'a.png | https://example.com/b.png', q: 'compare' },
      { prompt: 'compare', images: [{ image_url: 'ref:a.png' }, { image_url: 'ref:https://example.com/b.png' }] },
    ],
    [
      'image[]: a list of URLs, after fixed items',
      { urls: ['https://example.com/ref.png', '{img:image[]}'], q: '{q}' },
      { img: 'a.png|b.png', q: 'x' },
      { urls: ['https://example.com/ref.png', 'ref:a.png', 'ref:b.png'], q: 'x' },
    ],
    ['image?: an empty image cell drops the key', { image: '{img:image}', mask: '{mask:image?}' }, { img: 'a.png', mask: '' }, { image: 'ref:a.png' }],
  ])('%s', async (_title, json, cells, expected) => {
    const rendered = await render(compile(json), cells);
    expect(rendered).toMatchObject({ ok: true, input: expected });
  });

  it('--image-columns makes a plain {column} an image', async () => {
    const rendered = await render(compile({ image: '{img}', q: '{q}' }, ['IMG']), { img: 'dog.png', q: 'x' });
    expect(rendered).toMatchObject({ ok: true, input: { image: 'ref:dog.png', q: 'x' }, localFiles: ['/data/dog.png'] });
  });

  it('gives images their identities in a twin input (for the fingerprint), and lists local files', async () => {
    const rendered = await render(compile({ prompt: '{q}', images: [{ image_url: '{img:image[]}' }], seed: 1 }), { img: 'a.png|http://x/b.png', q: 'x' });
    expect(rendered).toEqual({
      ok: true,
      input: { prompt: 'x', images: [{ image_url: 'ref:a.png' }, { image_url: 'ref:http://x/b.png' }], seed: 1 },
      identityInput: { prompt: 'x', images: [{ image_url: 'id:a.png' }, { image_url: 'id:http://x/b.png' }], seed: 1 },
      identities: ['id:a.png', 'id:http://x/b.png'],
      localFiles: ['/data/a.png'],
      numbers: {},
    });
  });

  it.each<[string, unknown, Record<string, string>, string]>([
    ['an empty required cell', { q: '{q}' }, { q: '  ' }, 'q is empty'],
    ['an empty cell inside text', { p: 'Describe the {subject}' }, { subject: '' }, 'subject is empty'],
    ['a column the header lacks', { q: '{q}' }, {}, 'q is empty'],
    ['an int that is not whole', { steps: '{steps:int}' }, { steps: '1.5' }, 'steps must be a whole number, got "1.5"'],
    ['a number that does not parse', { t: '{temp:number}' }, { temp: '0x10' }, 'temp must be a number, got "0x10"'],
    ['an infinite number', { t: '{temp:number}' }, { temp: '1e999' }, 'temp must be a number, got "1e999"'],
    ['a bool that is not true or false', { f: '{fast:bool}' }, { fast: 'yes' }, 'fast must be true or false, got "yes"'],
    ['a typed value inside text', { p: 'Use {n:int} words' }, { n: 'many' }, 'n must be a whole number, got "many"'],
    [
      'several images for one {img:image}',
      { image: '{img:image}' },
      { img: 'a.png|b.png' },
      'img holds 2 images; {img:image} takes one (for several, put {img:image[]} in an array)',
    ],
    ['an empty image cell', { image: '{img:image}' }, { img: '' }, 'img is empty'],
    ['an image the resolver refuses', { image: '{img:image}' }, { img: 'missing.png' }, 'local file "missing.png" not found (img)'],
    ['a text value over the limit', { q: '{q}' }, { q: 'x'.repeat(1001) }, 'q is 1,001 characters long; the most is 1,000 (--max-prompt-chars)'],
    [
      'a filled string over the limit',
      { prompt: 'Say {a} {b}' },
      { a: 'x'.repeat(600), b: 'y'.repeat(600) },
      'prompt is 1,205 characters long; the most is 1,000 (--max-prompt-chars)',
    ],
  ])('rejects a row with %s, naming the column', async (_title, json, cells, reason) => {
    expect(await render(compile(json), cells)).toEqual({ ok: false, reason });
  });

  it('checks the cells in template order, and images only after every other cell', async () => {
    const template = compile({ image: '{img:image}', q: '{q}', steps: '{steps:int}' });
    expect(await render(template, { img: '', q: '', steps: 'x' })).toEqual({ ok: false, reason: 'q is empty' });
    expect(await render(template, { img: '', q: 'ok', steps: 'x' })).toEqual({ ok: false, reason: 'steps must be a whole number, got "x"' });
    expect(await render(template, { img: '', q: 'ok', steps: '3' })).toEqual({ ok: false, reason: 'img is empty' });
  });
});

describe('input templates: mistakes in the template itself', () => {
  it.each<[string, unknown, string[], string]>([
    ['an array', ['{q}'], [], 'Expected --input to be a JSON object (the endpoint\'s input, e.g. {"image_url":"{img:image}","prompt":"{q}"}), got an array'],
    ['a string', '{q}', [], 'Expected --input to be a JSON object'],
    ['no placeholder at all', { prompt: 'Describe', seed: 1 }, [], "--input names no manifest column: write {column} where a row's value goes"],
    [
      'an unknown type',
      { image: '{img:picture}' },
      [],
      '--input: at image: {img:picture}: unknown type "picture"; use text, int, number, bool, image or image[]',
    ],
    [
      'an empty placeholder',
      { q: 'a {} b' },
      [],
      '--input: at q: {} names no column; write {column}, {column:type} or {column?} (or {{ }} for literal braces)',
    ],
    ['a brace never closed', { q: 'a {q b' }, [], '--input: at q: "{" at character 3 of "a {q b" is not closed; write {{ for a literal brace'],
    ['a closing brace alone', { q: '{q} }' }, [], '--input: at q: "}" at character 5 of "{q} }" closes no placeholder; write }} for a literal brace'],
    ['an image inside text', { q: 'look at {img:image}' }, [], '--input: at q: {img:image} is an image: it must be the whole string'],
    [
      'an optional placeholder inside text',
      { q: 'hi {name?}' },
      [],
      '--input: at q: {name?} is optional: it must be the whole string (an empty cell drops the key)',
    ],
    ['image[] outside an array', { images: '{img:image[]}' }, [], '--input: {img:image[]} stands for several images, so it must be inside an array'],
    [
      'two image[] columns in one array item',
      { pairs: [{ a: '{a:image[]}', b: '{b:image[]}' }] },
      [],
      '--input: at pairs[0]: an array item is repeated once per image of one column; this one names {a:image[]} and {b:image[]}',
    ],
    ['a column read as an image and as text', { image: '{img:image}', note: '{img}' }, [], '--input: column "img" is read both as an image and as a value'],
    ['an --image-columns column the template does not use', { q: '{q}' }, ['pic'], '--image-columns names "pic", which --input does not use'],
    ['an --image-columns column read as a number', { n: '{img:int}' }, ['img'], '--input: at n: --image-columns names "img", but {img:int} reads it as int'],
  ])('refuses %s, naming the flag', (_title, json, imageColumns, message) => {
    expect(() => compile(json, imageColumns)).toThrow(ConfigError);
    expect(() => compile(json, imageColumns)).toThrow(message);
  });
});

describe('prompt templates', () => {
  it("fills the built-in endpoints' prompt from other columns", async () => {
    const mapping = createRowMapping({ promptTemplate: 'Describe the {subject} in {style:text} style' });
    const llava = mapping.forEndpoint('fal-ai/llava-next');
    if ('reason' in llava) throw new Error(llava.reason);
    const rendered = await render(llava.template, { image_url: 'a.png', subject: 'cat', style: 'haiku', max_tokens: '5' });
    expect(rendered).toMatchObject({ ok: true, input: { image_url: 'ref:a.png', prompt: 'Describe the cat in haiku style', max_tokens: 5 } });
    expect(mapping.layout.required).toEqual(['image_url', 'subject', 'style']);
  });

  it.each<[string, string]>([
    ['Describe the image', '--prompt-template names no manifest column'],
    ['Look at {img:image}', '--prompt-template: {img:image}: a prompt holds text'],
    ['Say {x?}', '--prompt-template: {x?}: a prompt cannot leave a column out'],
    ['  ', 'Expected --prompt-template to be a text with {column} placeholders'],
  ])('refuses %j', (text, message) => {
    expect(() => compileTextTemplate(text, { flag: '--prompt-template' })).toThrow(message);
  });
});

describe('mapping settings (flags and config)', () => {
  const flags = (raw: RawFlags) => (): unknown => resolveConfig({}, overridesFrom(raw));

  it.each<[string, RawFlags, string]>([
    [
      '--input that is not JSON',
      { input: "{'q': '{q}'}" },
      'Expected --input to be JSON, e.g. \'{"image_url":"{img:image}","prompt":"{q}"}\' (quoted for the shell), got "{\'q\': \'{q}\'}"',
    ],
    ['--input that is JSON but not an object', { input: '"{q}"' }, 'Expected --input to be a JSON object'],
    ['--input with no placeholder', { input: '{"prompt":"hi"}' }, '--input names no manifest column'],
    [
      '--output-field without --input',
      { outputField: 'description' },
      '--output-field description needs --input: the built-in endpoints (fal-ai/llava-next, fal-ai/mantis-llava-7b-v11) answer in their "output" field',
    ],
    [
      '--output-field with an empty segment',
      { input: '{"q":"{q}"}', outputField: 'choices..text' },
      'Expected --output-field to be a field name or a dotted path like choices.0.text, got "choices..text"',
    ],
    ['--image-columns without --input', { imageColumns: 'img' }, '--image-columns needs --input'],
    [
      '--prompt-template with --input',
      { input: '{"q":"{q}"}', promptTemplate: 'Describe {x}' },
      "--prompt-template fills the built-in endpoints' prompt; with --input, write the prompt in the template itself",
    ],
    ['--prompt-template without placeholders', { promptTemplate: 'Describe it' }, '--prompt-template names no manifest column'],
    [
      '--endpoint without a built-in mapping, and no --input',
      { endpoint: 'acme/vision' },
      "--endpoint acme/vision has no built-in mapping (fal-ai/llava-next, fal-ai/mantis-llava-7b-v11 do); map the manifest's columns into its input with --input",
    ],
  ])('refuses %s, naming the flag', (_title, raw, message) => {
    expect(flags(raw)).toThrow(ConfigError);
    expect(flags(raw)).toThrow(message);
  });

  it('accepts a full mapping, and --output-field output on a built-in endpoint', () => {
    const config = resolveConfig(
      {},
      overridesFrom({ endpoint: 'acme/vision', input: '{"image":"{img}","question":"{q}","seed":42}', imageColumns: 'img, ', outputField: 'result.text' }),
    );
    expect(config).toMatchObject({
      endpoint: 'acme/vision',
      input: { image: '{img}', question: '{q}', seed: 42 },
      imageColumns: ['img'],
      outputField: 'result.text',
    });
    expect(resolveConfig({}, { outputField: 'output' }).outputField).toBe('output');
  });
});

describe('readAnswer', () => {
  it.each<[string, unknown, string | undefined, { output: string; partial: boolean } | undefined]>([
    ['the output field by default', { output: 'a cat', partial: false }, undefined, { output: 'a cat', partial: false }],
    ['partial only when the output says so', { output: 'a c', partial: true }, undefined, { output: 'a c', partial: true }],
    ['another field', { description: 'a dog', confidence: 0.9 }, 'description', { output: 'a dog', partial: false }],
    ['a dotted path through arrays', { choices: [{ text: 'first' }, { text: 'second' }] }, 'choices.1.text', { output: 'second', partial: false }],
    ['a number, written out', { confidence: 0.9 }, 'confidence', { output: '0.9', partial: false }],
    ['an object, as JSON', { boxes: [{ x: 1 }] }, 'boxes', { output: '[{"x":1}]', partial: false }],
    ['nothing when the field is missing', { description: 'x' }, 'output', undefined],
    ['nothing when the path runs through a string', { description: 'x' }, 'description.text', undefined],
    ['nothing for null', { output: null }, undefined, undefined],
  ])('reads %s', (_title, body, field, expected) => {
    expect(readAnswer(body, field)).toEqual(expected);
  });
});

describe('validateRow with an --input mapping', () => {
  const header = ['id', 'img', 'q', 'seed', 'note'];
  const mappingOf = (input: Record<string, unknown>, outputField = 'output') => createRowMapping({ input, outputField, imageColumns: ['img'] });
  const ctxFor = (mapping: ReturnType<typeof mappingOf>): RowContext => ({
    columns: mapColumns(header, 'm.csv', mapping.layout),
    defaultEndpoint: 'acme/describe',
    images,
    maxPromptChars: 1000,
    mapping,
  });
  const record = (cells: string[]) => ({ line: 3, fields: cells });

  it('maps the row, carries the other columns, shows the image cell, and keys the row by its whole input', async () => {
    const mapping = mappingOf({ image: '{img}', question: '{q}', seed: '{seed:int?}' });
    const verdict = await validateRow(record(['', 'a.png', 'What?', '7', 'hello']), ctxFor(mapping));
    if (!verdict.ok) throw new Error(verdict.rejected.reason);
    expect(verdict.row).toMatchObject({
      endpoint: 'acme/describe',
      input: { image: 'ref:a.png', question: 'What?', seed: 7 },
      outputField: 'output',
      imageDisplay: 'a.png',
      localImages: ['/data/a.png'],
    });
    // q and seed are read and carried; the image column is shown as image_url.
    expect(verdict.row.extras).toEqual(['What?', '7', 'hello']);
    const fingerprints = new Set<string>();
    for (const [input, field] of [
      [{ image: '{img}', question: '{q}', seed: '{seed:int?}' }, 'output'],
      [{ question: '{q}', seed: '{seed:int?}', image: '{img}' }, 'output'], // the same input, keys in another order
      [{ image: '{img}', question: 'Q: {q}', seed: '{seed:int?}' }, 'output'],
      [{ image: '{img}', question: '{q}', seed: '{seed:int?}' }, 'description'],
    ] as const) {
      const v = await validateRow(record(['', 'a.png', 'What?', '7', 'hello']), ctxFor(mappingOf(input, field)));
      if (!v.ok) throw new Error(v.rejected.reason);
      fingerprints.add(v.row.fingerprint);
    }
    expect(fingerprints.size).toBe(3);
  });

  it('rejects an empty required cell, and an endpoint cell that is not an endpoint id', async () => {
    const mapping = mappingOf({ image: '{img}', question: '{q}' });
    const verdict = await validateRow(record(['', 'a.png', ' ', '', '']), ctxFor(mapping));
    expect(verdict).toMatchObject({ ok: false, rejected: { line: 3, reason: 'q is empty' } });
    const columns = mapColumns(['endpoint', 'img', 'q'], 'm.csv', mapping.layout);
    const bad = await validateRow({ line: 4, fields: ['not an id', 'a.png', 'q'] }, { ...ctxFor(mapping), columns });
    expect(bad).toMatchObject({ ok: false, rejected: { reason: 'endpoint "not an id" is not a fal endpoint id like fal-ai/llava-next' } });
  });

  it('needs every column the template names in the header, naming the missing one', () => {
    const mapping = mappingOf({ image: '{img}', question: '{question}', seed: '{seed:int?}' });
    expect(() => mapColumns(['img', 'q'], 'm.csv', mapping.layout)).toThrow(
      'm.csv: the header (line 1) has no "question" or "seed" column. Found: "img", "q". --input names the columns img, question and seed; id and endpoint are optional.',
    );
  });
});
