import { ConfigError } from '../errors.js';
import type { ImageResolver } from './resolve-images.js';

/**
 * The input template language: how a manifest row becomes an endpoint's input (`--input`), or a
 * prompt (`--prompt-template`). A template is JSON; its strings may name manifest columns:
 *
 * - `"{q}"`, a string that is exactly one placeholder, becomes the cell's value (a string, or a
 *   number or boolean with a type); placeholders inside a longer string are substituted as text.
 * - `{column:type}`: `text` (default), `int`, `number`, `bool`, `image` (one image: a URL, a data
 *   URI or a local file, sent as fal takes it), `image[]` (every image of a `|`-separated cell:
 *   the array item holding it is repeated once per image).
 * - `{column?}`, `{column:type?}`: optional; an empty cell drops the key (or the array item).
 * - `{{` and `}}` are literal braces. Numbers, booleans, null, objects, arrays and keys stay as written.
 *
 * Cells are trimmed; column names are matched without case. Compiling checks the template once
 * (ConfigError naming the flag); rendering checks a row (a reason naming the column).
 */
export type PlaceholderType = 'text' | 'int' | 'number' | 'bool' | 'image' | 'image[]';

const TYPES: readonly PlaceholderType[] = ['text', 'int', 'number', 'bool', 'image', 'image[]'];

/** A check of a number beyond its type (the built-in endpoints' parameter ranges). */
export interface NumberRule {
  integer?: boolean;
  gt?: number;
  ge?: number;
  le?: number;
}

export interface Placeholder {
  /** The column as the template writes it: named so in messages. */
  readonly name: string;
  /** The column, folded (trimmed, lower case): how it is looked up in the header. */
  readonly key: string;
  readonly type: PlaceholderType;
  readonly optional: boolean;
  /** Only for int and number. */
  readonly rule: NumberRule | undefined;
}

export type TemplateNode =
  | { readonly kind: 'literal'; readonly value: unknown }
  | { readonly kind: 'value'; readonly placeholder: Placeholder }
  | { readonly kind: 'text'; readonly parts: ReadonlyArray<string | Placeholder>; readonly path: string }
  | { readonly kind: 'object'; readonly entries: ReadonlyArray<readonly [string, TemplateNode]> }
  /** `repeat`: the image column this item is repeated for, once per image. */
  | { readonly kind: 'array'; readonly items: ReadonlyArray<{ readonly node: TemplateNode; readonly repeat: string | undefined }> };

export interface InputTemplate {
  readonly root: Extract<TemplateNode, { kind: 'object' }>;
}

export interface TemplateColumn {
  name: string;
  key: string;
  /** Every placeholder of the column is optional: the header may leave it out (built-in mappings only). */
  optional: boolean;
  image: boolean;
}

export interface CompileOptions {
  /** The flag named in errors: --input, --prompt-template. */
  flag: string;
  /** Columns whose plain `{column}` placeholders are images (--image-columns). */
  imageColumns?: readonly string[];
  /** Checks of int and number columns beyond their type, by column. */
  rules?: Readonly<Record<string, NumberRule>>;
}

/** Compiles an input template (the parsed JSON of --input). */
export function compileInputTemplate(json: unknown, options: CompileOptions): InputTemplate {
  const { flag } = options;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError(
      `Expected ${flag} to be a JSON object (the endpoint's input, e.g. {"image_url":"{img:image}","prompt":"{q}"}), got ${describeJson(json)}`,
    );
  }
  const imageColumns = new Map((options.imageColumns ?? []).map((name) => [fold(name), name]));
  const compiled = compileNode(json, '', { ...options, imageColumns });
  if (compiled.free.size > 0) {
    const [name] = [...compiled.free.values()];
    throw new ConfigError(
      `${flag}: {${name}:image[]} stands for several images, so it must be inside an array: e.g. "images": [{"image_url": "{${name}:image[]}"}] or "image_urls": ["{${name}:image[]}"]; for one image, use {${name}:image}`,
    );
  }
  const template: InputTemplate = { root: compiled.node as InputTemplate['root'] };
  const columns = templateColumns(template);
  if (columns.length === 0) {
    throw new ConfigError(`${flag} names no manifest column: write {column} where a row's value goes, e.g. {"image_url":"{img:image}","prompt":"{question}"}`);
  }
  for (const [key, name] of imageColumns) {
    if (!columns.some((c) => c.key === key))
      throw new ConfigError(`--image-columns names "${name}", which ${flag} does not use; add {${name}} where the image goes, or drop it from --image-columns`);
  }
  return template;
}

/** Compiles a text template (--prompt-template): placeholders of text, int, number or bool columns. */
export function compileTextTemplate(text: string, options: CompileOptions): TemplateNode {
  const { flag } = options;
  if (typeof text !== 'string' || text.trim() === '')
    throw new ConfigError(`Expected ${flag} to be a text with {column} placeholders, got ${JSON.stringify(text)}`);
  const node = parseString(text, 'prompt', { ...options, imageColumns: new Map(), text: true });
  const placeholders =
    node.kind === 'value' ? [node.placeholder] : node.kind === 'text' ? node.parts.filter((p): p is Placeholder => typeof p !== 'string') : [];
  if (placeholders.length === 0)
    throw new ConfigError(`${flag} names no manifest column: write {column} where a row's value goes, e.g. "Describe the {subject}"`);
  // As a whole value, a number or boolean placeholder would make the prompt itself a number.
  if (node.kind === 'value' && node.placeholder.type !== 'text') return { kind: 'text', parts: [node.placeholder], path: 'prompt' };
  return node;
}

/** The template with every `{prompt}` replaced by a prompt template: the built-in endpoints' prompt, filled from other columns. */
export function withPrompt(template: InputTemplate, prompt: TemplateNode): InputTemplate {
  const replace = (node: TemplateNode): TemplateNode => {
    switch (node.kind) {
      case 'value':
        return node.placeholder.key === 'prompt' ? prompt : node;
      case 'object':
        return { kind: 'object', entries: node.entries.map(([key, child]) => [key, replace(child)] as const) };
      case 'array':
        return { kind: 'array', items: node.items.map((item) => ({ node: replace(item.node), repeat: item.repeat })) };
      default:
        return node;
    }
  };
  return { root: replace(template.root) as InputTemplate['root'] };
}

/** Every placeholder, in template order (depth first). */
export function placeholdersOf(node: TemplateNode): Placeholder[] {
  switch (node.kind) {
    case 'value':
      return [node.placeholder];
    case 'text':
      return node.parts.filter((p): p is Placeholder => typeof p !== 'string');
    case 'object':
      return node.entries.flatMap(([, child]) => placeholdersOf(child));
    case 'array':
      return node.items.flatMap((item) => placeholdersOf(item.node));
    default:
      return [];
  }
}

/** The columns a template names, each once, in template order. */
export function templateColumns(template: InputTemplate): TemplateColumn[] {
  const columns = new Map<string, TemplateColumn>();
  for (const p of placeholdersOf(template.root)) {
    const image = p.type === 'image' || p.type === 'image[]';
    const seen = columns.get(p.key);
    if (seen) seen.optional &&= p.optional;
    else columns.set(p.key, { name: p.name, key: p.key, optional: p.optional, image });
  }
  return [...columns.values()];
}

/** A top-level string field of the template filled with the row's cells, unchecked: what outputs show (the prompt). */
export function previewField(template: InputTemplate, field: string, cell: (key: string) => string | undefined): string | undefined {
  const node = template.root.entries.find(([key]) => key === field)?.[1];
  if (!node) return undefined;
  if (node.kind === 'literal') return typeof node.value === 'string' ? node.value : undefined;
  if (node.kind === 'value') return node.placeholder.type === 'text' ? (cell(node.placeholder.key) ?? '').trim() : undefined;
  if (node.kind === 'text') return node.parts.map((p) => (typeof p === 'string' ? p : (cell(p.key) ?? '').trim())).join('');
  return undefined;
}

export interface RenderOptions {
  images: ImageResolver;
  /** Longest text value, in characters (config maxPromptChars). */
  maxTextChars: number;
  /** A check run once every cell but the images is read, before any image is (the endpoint's own rules). */
  beforeImages?: () => string | undefined;
  /**
   * Why a cell holds too many images for its column, if it does. `single`: a placeholder takes
   * one image. Default: only a `single` column with several images is refused.
   */
  tooManyImages?: (column: string, count: number, single: boolean) => string | undefined;
}

export type Rendered =
  | {
      ok: true;
      /** The endpoint's input. */
      input: Record<string, unknown>;
      /** The same input with each image replaced by its content identity: what makes two rows the same call. */
      identityInput: Record<string, unknown>;
      /** Every image's identity, in template order. */
      identities: string[];
      /** Absolute paths of the local image files. */
      localFiles: string[];
      /** The int and number values, by column name. */
      numbers: Record<string, number>;
    }
  | { ok: false; reason: string };

type Bound = { kind: 'absent' } | { kind: 'value'; value: string | number | boolean; text: string };
type BoundImages = { kind: 'absent' } | { kind: 'images'; references: string[]; identities: string[] };

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A template's placeholders, worked out once per template (renderTemplate runs once per row). */
const placeholdersByTemplate = new WeakMap<InputTemplate, Placeholder[]>();

/** Fills a template from one row's cells (`cell(key)`: the trimmed-or-not cell, undefined when the header lacks the column). */
export async function renderTemplate(template: InputTemplate, cell: (key: string) => string | undefined, options: RenderOptions): Promise<Rendered> {
  let placeholders = placeholdersByTemplate.get(template);
  if (!placeholders) {
    placeholders = placeholdersOf(template.root);
    placeholdersByTemplate.set(template, placeholders);
  }
  const values = new Map<Placeholder, Bound>();
  const numbers: Record<string, number> = {};
  for (const p of placeholders) {
    if (p.type === 'image' || p.type === 'image[]') continue;
    const bound = bindValue(p, (cell(p.key) ?? '').trim(), options.maxTextChars);
    if ('reason' in bound) return { ok: false, reason: bound.reason };
    values.set(p, bound);
    if (bound.kind === 'value' && typeof bound.value === 'number') numbers[p.name] = bound.value;
  }
  for (const node of textNodes(template.root)) {
    const text = fillText(node, values);
    if (text.length > options.maxTextChars) return { ok: false, reason: tooLong(node.path, text.length, options.maxTextChars) };
  }
  const early = options.beforeImages?.();
  if (early !== undefined) return { ok: false, reason: early };

  const images = new Map<string, BoundImages>();
  const identities: string[] = [];
  const localFiles: string[] = [];
  for (const p of placeholders) {
    if ((p.type !== 'image' && p.type !== 'image[]') || images.has(p.key)) continue;
    const ofColumn = placeholders.filter((q) => q.key === p.key);
    const text = (cell(p.key) ?? '').trim();
    if (text === '' && ofColumn.every((q) => q.optional)) {
      images.set(p.key, { kind: 'absent' });
      continue;
    }
    const count = text.split('|').length;
    const single = ofColumn.some((q) => q.type === 'image');
    if (text !== '') {
      const tooMany = options.tooManyImages
        ? options.tooManyImages(p.name, count, single)
        : single && count > 1
          ? `${p.name} holds ${count} images; {${p.name}:image} takes one (for several, put {${p.name}:image[]} in an array)`
          : undefined;
      if (tooMany !== undefined) return { ok: false, reason: tooMany };
    }
    const resolved = await options.images.resolve(text, p.name);
    if (!resolved.ok) return { ok: false, reason: resolved.reason };
    images.set(p.key, { kind: 'images', references: resolved.references, identities: resolved.identities });
    identities.push(...resolved.identities);
    localFiles.push(...resolved.localFiles);
  }

  const build = (use: 'references' | 'identities'): Record<string, unknown> =>
    buildNode(template.root, { values, images, use, index: new Map() }) as Record<string, unknown>;
  return { ok: true, input: build('references'), identityInput: build('identities'), identities, localFiles, numbers };
}

function bindValue(p: Placeholder, text: string, maxTextChars: number): Bound | { reason: string } {
  if (text === '') return p.optional ? { kind: 'absent' } : { reason: `${p.name} is empty` };
  switch (p.type) {
    case 'bool': {
      const lower = text.toLowerCase();
      if (lower !== 'true' && lower !== 'false') return { reason: `${p.name} must be true or false, got "${text}"` };
      return { kind: 'value', value: lower === 'true', text };
    }
    case 'int':
    case 'number': {
      const value = Number(text);
      const rule: NumberRule = { ...p.rule, ...(p.type === 'int' ? { integer: true } : {}) };
      if (!NUMBER.test(text) || !Number.isFinite(value) || !satisfies(value, rule))
        return { reason: `${p.name} must be ${expectedNumber(rule)}, got "${text}"` };
      return { kind: 'value', value, text };
    }
    default:
      if (text.length > maxTextChars) return { reason: tooLong(p.name, text.length, maxTextChars) };
      return { kind: 'value', value: text, text };
  }
}

function tooLong(name: string, length: number, max: number): string {
  return `${name} is ${length.toLocaleString('en-US')} characters long; the most is ${max.toLocaleString('en-US')} (--max-prompt-chars)`;
}

function satisfies(value: number, rule: NumberRule): boolean {
  if (rule.integer && !Number.isInteger(value)) return false;
  if (rule.gt !== undefined && !(value > rule.gt)) return false;
  if (rule.ge !== undefined && !(value >= rule.ge)) return false;
  return rule.le === undefined || value <= rule.le;
}

/** "a whole number greater than 0", "a number ≥ 0", "a number from 0 to 1". */
export function expectedNumber(rule: NumberRule): string {
  const noun = rule.integer ? 'a whole number' : 'a number';
  if (rule.ge !== undefined && rule.le !== undefined) return `${noun} from ${rule.ge} to ${rule.le}`;
  const bounds = [
    ...(rule.gt !== undefined ? [`greater than ${rule.gt}`] : []),
    ...(rule.ge !== undefined ? [`≥ ${rule.ge}`] : []),
    ...(rule.le !== undefined ? [`≤ ${rule.le}`] : []),
  ];
  return [noun, ...bounds].join(' ');
}

function textNodes(node: TemplateNode): Array<Extract<TemplateNode, { kind: 'text' }>> {
  switch (node.kind) {
    case 'text':
      return [node];
    case 'object':
      return node.entries.flatMap(([, child]) => textNodes(child));
    case 'array':
      return node.items.flatMap((item) => textNodes(item.node));
    default:
      return [];
  }
}

function fillText(node: Extract<TemplateNode, { kind: 'text' }>, values: ReadonlyMap<Placeholder, Bound>): string {
  return node.parts
    .map((part) => {
      if (typeof part === 'string') return part;
      const bound = values.get(part);
      return bound?.kind === 'value' ? bound.text : '';
    })
    .join('');
}

interface BuildState {
  values: ReadonlyMap<Placeholder, Bound>;
  images: ReadonlyMap<string, BoundImages>;
  use: 'references' | 'identities';
  /** Which image of a repeated column the item being built stands for. */
  index: ReadonlyMap<string, number>;
}

/** Dropped from its object or array: an optional placeholder whose cell is empty. */
const ABSENT = Symbol('absent');

function buildNode(node: TemplateNode, state: BuildState): unknown {
  switch (node.kind) {
    case 'literal':
      return structuredClone(node.value);
    case 'text':
      return fillText(node, state.values);
    case 'value': {
      const p = node.placeholder;
      if (p.type === 'image' || p.type === 'image[]') {
        const bound = state.images.get(p.key);
        if (!bound || bound.kind === 'absent') return ABSENT;
        return bound[state.use][p.type === 'image' ? 0 : (state.index.get(p.key) ?? 0)];
      }
      const bound = state.values.get(p);
      return !bound || bound.kind === 'absent' ? ABSENT : bound.value;
    }
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [key, child] of node.entries) {
        const value = buildNode(child, state);
        if (value !== ABSENT) out[key] = value;
      }
      return out;
    }
    case 'array': {
      const out: unknown[] = [];
      for (const item of node.items) {
        if (item.repeat === undefined) {
          const value = buildNode(item.node, state);
          if (value !== ABSENT) out.push(value);
          continue;
        }
        const bound = state.images.get(item.repeat);
        const count = bound?.kind === 'images' ? bound.references.length : 0;
        for (let i = 0; i < count; i++) {
          const value = buildNode(item.node, { ...state, index: new Map([...state.index, [item.repeat, i]]) });
          if (value !== ABSENT) out.push(value);
        }
      }
      return out;
    }
  }
}

interface ParseOptions {
  flag: string;
  imageColumns: ReadonlyMap<string, string>;
  rules?: Readonly<Record<string, NumberRule>> | undefined;
  /** A text template (--prompt-template): no images, nothing optional. */
  text?: boolean;
}

/** `free`: image[] columns not yet inside an array (the nearest array item around them repeats). */
function compileNode(value: unknown, path: string, options: ParseOptions): { node: TemplateNode; free: Map<string, string> } {
  if (typeof value === 'string') {
    const node = parseString(value, path, options);
    const free = new Map<string, string>();
    if (node.kind === 'value' && node.placeholder.type === 'image[]') free.set(node.placeholder.key, node.placeholder.name);
    return { node, free };
  }
  if (Array.isArray(value)) {
    const items = value.map((item: unknown, i) => {
      const compiled = compileNode(item, `${path}[${i}]`, options);
      if (compiled.free.size > 1) {
        const names = [...compiled.free.values()];
        throw new ConfigError(
          `${options.flag}: at ${path}[${i}]: an array item is repeated once per image of one column; this one names ${names.map((n) => `{${n}:image[]}`).join(' and ')}: put each in an item of its own`,
        );
      }
      const [repeat] = [...compiled.free.keys()];
      return { node: compiled.node, repeat };
    });
    return { node: { kind: 'array', items }, free: new Map() };
  }
  if (typeof value === 'object' && value !== null) {
    const free = new Map<string, string>();
    const entries = Object.entries(value as Record<string, unknown>).map(([key, child]) => {
      const compiled = compileNode(child, path === '' ? key : `${path}.${key}`, options);
      for (const [k, name] of compiled.free) free.set(k, name);
      return [key, compiled.node] as const;
    });
    checkColumnUses(
      entries.flatMap(([, node]) => placeholdersOf(node)),
      options.flag,
    );
    return { node: { kind: 'object', entries }, free };
  }
  return { node: { kind: 'literal', value }, free: new Map() };
}

/** A column is an image everywhere the template names it, or nowhere. */
function checkColumnUses(placeholders: Placeholder[], flag: string): void {
  const kinds = new Map<string, { image: boolean; name: string }>();
  for (const p of placeholders) {
    const image = p.type === 'image' || p.type === 'image[]';
    const seen = kinds.get(p.key);
    if (seen && seen.image !== image)
      throw new ConfigError(`${flag}: column "${p.name}" is read both as an image and as a value; a column is one or the other`);
    kinds.set(p.key, { image, name: p.name });
  }
}

function parseString(text: string, path: string, options: ParseOptions): TemplateNode {
  const where = `${options.flag}: ${path === '' || options.text ? '' : `at ${path}: `}`;
  const parts: Array<string | Placeholder> = [];
  let literal = '';
  let i = 0;
  while (i < text.length) {
    const char = text[i] as string;
    if (char === '{' && text[i + 1] === '{') {
      literal += '{';
      i += 2;
    } else if (char === '}' && text[i + 1] === '}') {
      literal += '}';
      i += 2;
    } else if (char === '}') {
      throw new ConfigError(`${where}"}" at character ${i + 1} of ${JSON.stringify(text)} closes no placeholder; write }} for a literal brace`);
    } else if (char === '{') {
      const end = text.indexOf('}', i + 1);
      const nested = text.indexOf('{', i + 1);
      if (end === -1 || (nested !== -1 && nested < end)) {
        throw new ConfigError(`${where}"{" at character ${i + 1} of ${JSON.stringify(text)} is not closed; write {{ for a literal brace`);
      }
      if (literal !== '') parts.push(literal);
      literal = '';
      parts.push(parsePlaceholder(text.slice(i + 1, end), where, options));
      i = end + 1;
    } else {
      literal += char;
      i++;
    }
  }
  if (literal !== '') parts.push(literal);
  const placeholders = parts.filter((p): p is Placeholder => typeof p !== 'string');
  if (placeholders.length === 0) return { kind: 'literal', value: literal };
  if (parts.length === 1 && placeholders.length === 1 && !options.text) return { kind: 'value', placeholder: placeholders[0] as Placeholder };
  for (const p of placeholders) {
    if (p.type === 'image' || p.type === 'image[]') {
      throw new ConfigError(
        options.text
          ? `${where}{${p.name}:${p.type}}: a prompt holds text; images go in the endpoint's image input (image_url)`
          : `${where}{${p.name}:${p.type}} is an image: it must be the whole string, e.g. "image_url": "{${p.name}:image}", not inside ${JSON.stringify(text)}`,
      );
    }
    if (p.optional) {
      throw new ConfigError(
        options.text
          ? `${where}{${p.name}?}: a prompt cannot leave a column out; drop the "?" (an empty cell then rejects its row)`
          : `${where}{${p.name}?} is optional: it must be the whole string (an empty cell drops the key), not inside ${JSON.stringify(text)}`,
      );
    }
  }
  if (parts.length === 1 && placeholders.length === 1 && options.text) {
    return { kind: 'value', placeholder: placeholders[0] as Placeholder };
  }
  return { kind: 'text', parts, path: path === '' ? 'the input' : path };
}

const PLACEHOLDER = /^([^:?]*?)\s*(?::\s*([^?]*?)\s*)?(\?)?$/;

function parsePlaceholder(inner: string, where: string, options: ParseOptions): Placeholder {
  const match = PLACEHOLDER.exec(inner.trim());
  const name = match?.[1]?.trim() ?? '';
  if (!match || name === '')
    throw new ConfigError(`${where}{${inner}} names no column; write {column}, {column:type} or {column?} (or {{ }} for literal braces)`);
  const written = match[2];
  const key = fold(name);
  const imageColumn = options.imageColumns.get(key);
  if (written !== undefined && !(TYPES as readonly string[]).includes(written)) {
    throw new ConfigError(`${where}{${inner}}: unknown type "${written}"; use ${TYPES.slice(0, -1).join(', ')} or ${TYPES.at(-1)}`);
  }
  let type = (written ?? 'text') as PlaceholderType;
  if (imageColumn !== undefined) {
    if (written === undefined) type = 'image';
    else if (type !== 'image' && type !== 'image[]')
      throw new ConfigError(`${where}--image-columns names "${imageColumn}", but {${inner}} reads it as ${type}`);
  }
  const rule = options.rules?.[key];
  if (rule !== undefined && type !== 'int' && type !== 'number')
    throw new ConfigError(`${where}{${inner}}: a number rule is set for ${name}, so its type must be int or number`);
  return { name, key, type, optional: match[3] === '?', rule };
}

function fold(name: string): string {
  return name.trim().toLowerCase();
}

function describeJson(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'string' ? `a string ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)}` : `${typeof value} ${String(value)}`;
}
