import { createHash } from 'node:crypto';
import { ENDPOINTS, knownEndpoints, type ParamName } from '../fal/endpoints.js';
import type { ColumnMap, KnownColumn } from './columns.js';
import { sniffImageType, type LocalImageReader } from './local-image.js';
import { MAX_ID_LENGTH, rowFingerprint } from './row-key.js';

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
  /** Shown in outputs: the image cell as written (data URIs abbreviated). */
  imageDisplay: string;
  prompt: string;
  extras: string[];
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
  images: LocalImageReader;
}

const PARAM_RULES: Record<ParamName, { test: (n: number) => boolean; integer: boolean; expected: string }> = {
  max_tokens: { test: (n) => Number.isInteger(n) && n > 0, integer: true, expected: 'a whole number greater than 0' },
  temperature: { test: (n) => n >= 0, integer: false, expected: 'a number ≥ 0' },
  top_p: { test: (n) => n >= 0 && n <= 1, integer: false, expected: 'a number from 0 to 1' },
};

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

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

type Images = { ok: true; references: string[]; identities: string[] } | { ok: false; reason: string };

async function resolveImages(cell: string, reader: LocalImageReader): Promise<Images> {
  const parts = cell.split('|').map((p) => p.trim());
  if (parts.some((p) => p === '')) return { ok: false, reason: cell.trim() === '' ? 'image_url is empty' : 'image_url has an empty entry between "|" separators' };
  const references: string[] = [];
  const identities: string[] = [];
  for (const part of parts) {
    if (/^https?:\/\//i.test(part)) {
      try {
        new URL(part);
      } catch {
        return { ok: false, reason: `image_url "${part}" is not a valid URL` };
      }
      references.push(part);
      identities.push(`url:${part}`);
      continue;
    }
    if (part.startsWith('data:')) {
      const match = /^data:([\w.+-]+\/[\w.+-]+)?(;[\w-]+=[\w.-]+)*;base64,([A-Za-z0-9+/]*={0,2})$/.exec(part);
      if (!match) return { ok: false, reason: `image_url holds a data URI that is not base64 image data (expected data:image/<type>;base64,<data>)` };
      const bytes = Buffer.from(match[3] ?? '', 'base64');
      if (!sniffImageType(bytes)) return { ok: false, reason: 'image_url holds a data URI whose bytes are not a PNG, JPEG, WebP, GIF or BMP image' };
      references.push(part);
      identities.push(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
      continue;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(part)) return { ok: false, reason: `image_url "${part}" uses an unsupported scheme; use http(s), a data URI or a local path` };
    const local = await reader.load(part);
    if (!local.ok) return local;
    references.push(local.image.reference);
    identities.push(local.image.identity);
  }
  return { ok: true, references, identities };
}

/** Turns one CSV record into a row to call, or a rejection that says what is wrong and how to fix it. */
export async function validateRow(record: { line: number; fields: string[] }, ctx: RowContext): Promise<RowVerdict> {
  const { columns } = ctx;
  const field = (name: KnownColumn): string | undefined => {
    const index = columns.known[name];
    return index === undefined ? undefined : record.fields[index];
  };
  const idCell = field('id')?.trim();
  const id = idCell === undefined || idCell === '' ? undefined : idCell;
  const endpoint = field('endpoint')?.trim() || ctx.defaultEndpoint;
  const imageCell = field('image_url') ?? '';
  const prompt = (field('prompt') ?? '').trim();
  const extras = columns.extras.map(({ index }) => record.fields[index] ?? '');
  const shown = { id, endpoint, imageDisplay: abbreviateImage(imageCell), prompt, extras };
  const reject = (reason: string): RowVerdict => ({ ok: false, rejected: { line: record.line, reason, ...shown } });

  if (record.fields.length > columns.width) {
    return reject(`${record.fields.length} fields, but the header has ${columns.width} columns; quote fields that contain commas`);
  }
  if (id !== undefined && id.length > MAX_ID_LENGTH) return reject(`id is ${id.length} characters long; the most is ${MAX_ID_LENGTH}`);
  const spec = ENDPOINTS.get(endpoint);
  if (!spec) return reject(`endpoint "${endpoint}" is not supported; use one of ${knownEndpoints()}`);
  if (prompt === '') return reject('prompt is empty');

  const params: Partial<Record<ParamName, number>> = {};
  for (const name of Object.keys(PARAM_RULES) as ParamName[]) {
    const text = field(name)?.trim();
    if (text === undefined || text === '') continue;
    if (!spec.params.includes(name)) return reject(`${name} is not an input of ${endpoint} (it takes prompt and images); leave the cell empty`);
    const rule = PARAM_RULES[name];
    const value = Number(text);
    if (!NUMBER.test(text) || !Number.isFinite(value) || !rule.test(value)) return reject(`${name} must be ${rule.expected}, got "${text}"`);
    params[name] = value;
  }

  const imageCount = imageCell.split('|').length;
  if (imageCell.trim() !== '' && imageCount > spec.maxImages) {
    return reject(
      spec.maxImages === 1
        ? `${endpoint} takes one image, this row has ${imageCount}; use fal-ai/mantis-llava-7b-v11 for several images`
        : `${endpoint} takes at most ${spec.maxImages} images, this row has ${imageCount}`,
    );
  }
  const images = await resolveImages(imageCell, ctx.images);
  if (!images.ok) return reject(images.reason);

  const fingerprint = rowFingerprint(endpoint, prompt, images.identities, params);
  return {
    ok: true,
    row: {
      ...shown,
      line: record.line,
      key: id ?? fingerprint,
      fingerprint,
      input: spec.toInput({ prompt, images: images.references, params }),
    },
  };
}
