import type { ColumnMap, KnownColumn } from './columns.js';
import { placeholdersOf, previewField, renderTemplate } from './input-template.js';
import type { ImageResolver } from './resolve-images.js';
import { MAX_ID_LENGTH, inputFingerprint, rowFingerprint } from './row-key.js';
import { BUILT_IN_MAPPING, type EndpointMapping, type RowMapping } from './row-mapping.js';

/** A manifest row ready to call fal with. */
export interface ManifestRow {
  line: number;
  /** The `id` column's value, when the manifest has one. */
  id: string | undefined;
  /** id, or the content fingerprint: the row's identity in its batch. */
  key: string;
  fingerprint: string;
  endpoint: string;
  input: Record<string, unknown>;
  /** The output field that holds the answer (`output` but for --output-field). */
  outputField: string;
  /** Shown in outputs: the image cell as written (data URIs abbreviated). */
  imageDisplay: string;
  prompt: string;
  extras: string[];
  /** Absolute paths of the row's local image files (caption files go beside them). */
  localImages: string[];
}

/** A row that will not be called, with what to show for it in the output. */
export interface RejectedRow {
  line: number;
  reason: string;
  id: string | undefined;
  endpoint: string;
  imageDisplay: string;
  prompt: string;
  extras: string[];
}

export type RowVerdict = { ok: true; row: ManifestRow } | { ok: false; rejected: RejectedRow };

export interface RowContext {
  columns: ColumnMap;
  defaultEndpoint: string;
  /** Where the row's images come from, and what goes to fal for them. */
  images: ImageResolver;
  /** Longest prompt, in characters (config maxPromptChars, flag --max-prompt-chars). */
  maxPromptChars: number;
  /** How rows become fal inputs (config input, promptTemplate, …). Default: the built-in endpoints' mappings. */
  mapping?: RowMapping;
}

/**
 * C0 controls but tab, LF and CR; DEL; C1 controls. Never meant in a prompt, an id, a path or a
 * note: mostly the sign of a damaged or mis-decoded file (UTF-16 read as UTF-8 is half NULs).
 */
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;
const CONTROLS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/g;

function codePoint(char: string): string {
  return `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Cell text safe to show in outputs: control characters written as <U+0000>. */
function visible(text: string): string {
  return CONTROL.test(text) ? text.replace(CONTROLS, (char) => `<${codePoint(char)}>`) : text;
}

/** The first cell with a control character, as a reason naming its column and where it is. */
function controlCharacter(fields: string[], columns: ColumnMap): string | undefined {
  const names = new Map<number, string>([...columns.byName].map(([name, index]) => [index, name]));
  for (const { name, index } of columns.extras) names.set(index, name);
  for (const [index, cell] of fields.entries()) {
    const match = CONTROL.exec(cell);
    if (!match) continue;
    return `${names.get(index) ?? `column ${index + 1}`} contains a control character ${codePoint(match[0])} at character ${match.index + 1}; remove it`;
  }
  return undefined;
}

/** `data:image/png;base64,iVBOR…(2.1 KB)`: enough to recognise, never the whole payload. */
export function abbreviateImage(cell: string): string {
  return cell
    .split('|')
    .map((part) => {
      const trimmed = part.trim();
      if (!trimmed.startsWith('data:') || trimmed.length <= 64) return trimmed;
      const comma = trimmed.indexOf(',');
      const head = trimmed.slice(0, comma + 1);
      return `${head}${trimmed.slice(comma + 1, comma + 17)}…(${trimmed.length - comma - 1} chars)`;
    })
    .join('|');
}

/** The image columns of a mapping's template, worked out once per template (not per row). */
const imageColumnsOf = new WeakMap<EndpointMapping['template'], string[]>();

/** What outputs show of a row under a mapping: its image cells (abbreviated) and its prompt. */
function display(mapping: EndpointMapping | undefined, cell: (key: string) => string | undefined): { imageDisplay: string; prompt: string } {
  if (!mapping) return { imageDisplay: abbreviateImage(cell('image_url') ?? ''), prompt: (cell('prompt') ?? '').trim() };
  let imageColumns = imageColumnsOf.get(mapping.template);
  if (!imageColumns) {
    imageColumns = [...new Set(placeholdersOf(mapping.template.root).flatMap((p) => (p.type === 'image' || p.type === 'image[]' ? [p.key] : [])))];
    imageColumnsOf.set(mapping.template, imageColumns);
  }
  return {
    imageDisplay: abbreviateImage(imageColumns.map((key) => cell(key) ?? '').join('|')),
    prompt: previewField(mapping.template, 'prompt', cell) ?? '',
  };
}

/** Turns one CSV record into a row to call, or a rejection that says what is wrong and how to fix it. */
export async function validateRow(record: { line: number; fields: string[] }, ctx: RowContext): Promise<RowVerdict> {
  const { columns } = ctx;
  const rowMapping = ctx.mapping ?? BUILT_IN_MAPPING;
  const cell = (key: string): string | undefined => {
    const index = columns.byName.get(key);
    return index === undefined ? undefined : record.fields[index];
  };
  const field = (name: KnownColumn): string | undefined => {
    const index = columns.known[name];
    return index === undefined ? undefined : record.fields[index];
  };
  const idCell = field('id')?.trim();
  const id = idCell === undefined || idCell === '' ? undefined : idCell;
  const endpoint = field('endpoint')?.trim() || ctx.defaultEndpoint;
  const target = rowMapping.forEndpoint(endpoint);
  const mapping = 'reason' in target ? rowMapping.forEndpoint(ctx.defaultEndpoint) : target;
  const { imageDisplay, prompt } = display('reason' in mapping ? undefined : mapping, cell);
  const extras = columns.extras.map(({ index }) => record.fields[index] ?? '');
  const shown = { id, endpoint, imageDisplay, prompt, extras };
  // A rejected row is shown in the outputs: without control characters, and without a prompt of megabytes.
  const reject = (reason: string): RowVerdict => ({
    ok: false,
    rejected: {
      line: record.line,
      reason,
      id: id === undefined ? undefined : visible(id),
      endpoint: visible(endpoint),
      imageDisplay: visible(shown.imageDisplay),
      prompt: visible(prompt.length > ctx.maxPromptChars ? `${prompt.slice(0, 200)}…(${prompt.length} characters)` : prompt),
      extras: extras.map(visible),
    },
  });

  if (record.fields.length > columns.width) {
    const breaks = record.fields.reduce((count, f) => count + f.split('\n').length - 1, 0);
    // Line breaks in a field: a quote opened and took in the lines after it, commas and all.
    return reject(
      breaks > 0
        ? `${record.fields.length} fields, but the header has ${columns.width} columns: a quoted field opened on line ${record.line} runs on to line ${record.line + breaks} ` +
            `(a stray or unclosed quote?); close it on line ${record.line}, or double quotes inside a quoted field ("")`
        : `${record.fields.length} fields, but the header has ${columns.width} columns; quote fields that contain commas`,
    );
  }
  if (prompt.length > ctx.maxPromptChars) {
    return reject(
      `prompt is ${prompt.length.toLocaleString('en-US')} characters long; the most is ${ctx.maxPromptChars.toLocaleString('en-US')} (--max-prompt-chars)`,
    );
  }
  const control = controlCharacter(record.fields, columns);
  if (control !== undefined) return reject(control);
  if (id !== undefined && id.length > MAX_ID_LENGTH) return reject(`id is ${id.length} characters long; the most is ${MAX_ID_LENGTH}`);
  if ('reason' in target) return reject(target.reason);

  const rendered = await renderTemplate(target.template, cell, {
    images: ctx.images,
    maxTextChars: ctx.maxPromptChars,
    beforeImages: () => target.refusal(cell),
    tooManyImages: (column, count, single) => target.tooManyImages(column, count, single),
  });
  if (!rendered.ok) return reject(rendered.reason);

  const sentPrompt = rendered.input['prompt'];
  const fingerprint = target.builtIn
    ? rowFingerprint(endpoint, typeof sentPrompt === 'string' ? sentPrompt : '', rendered.identities, rendered.numbers)
    : inputFingerprint(endpoint, rendered.identityInput, target.outputField);
  return {
    ok: true,
    row: {
      id,
      endpoint,
      imageDisplay,
      prompt,
      extras,
      line: record.line,
      key: id ?? fingerprint,
      fingerprint,
      localImages: rendered.localFiles,
      input: rendered.input,
      outputField: target.outputField,
    },
  };
}
