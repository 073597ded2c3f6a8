import { createHash } from 'node:crypto';

/** A Pydantic v2 error item, as fal's FastAPI apps return them in a 422 `detail` array. */
export interface ValidationIssue {
  type: string;
  loc: Array<string | number>;
  msg: string;
  input?: unknown;
  ctx?: Record<string, unknown>;
  url?: string;
}

/** What an image reference is, for the model: its content's identity, or why it can't be loaded. */
export type ImageLookup = { ok: true; identity: string } | { ok: false; reason: string /** fal's error type; default image_load_error. */; type?: string };

export type ImageResolver = (url: string) => ImageLookup;

export interface ModelRun {
  output: Record<string, unknown>;
}

/** An emulated fal app: validates input like its Pydantic model and answers deterministically. */
export interface EmulatedModel {
  id: string;
  /** Returns the 422 issues, or the output. */
  run(input: unknown, resolveImage: ImageResolver): { issues: ValidationIssue[] } | ModelRun;
}

const PYDANTIC_URL = 'https://errors.pydantic.dev/2.10/v/';

function issue(type: string, loc: Array<string | number>, msg: string, input: unknown, ctx?: Record<string, unknown>): ValidationIssue {
  return { type, loc: ['body', ...loc], msg, input, ...(ctx ? { ctx } : {}), url: `${PYDANTIC_URL}${type}` };
}

type Fields = Record<string, unknown>;

function asObject(input: unknown, issues: ValidationIssue[]): Fields | undefined {
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) return input as Fields;
  issues.push({ type: 'model_attributes_type', loc: ['body'], msg: 'Input should be a valid dictionary or object to extract fields from', input });
  return undefined;
}

function requireString(fields: Fields, name: string, issues: ValidationIssue[]): string | undefined {
  const value = fields[name];
  if (value === undefined) {
    issues.push(issue('missing', [name], 'Field required', fields));
    return undefined;
  }
  if (typeof value !== 'string') {
    issues.push(issue('string_type', [name], 'Input should be a valid string', value));
    return undefined;
  }
  return value;
}

function optionalNumber(
  fields: Fields,
  name: string,
  rule: { integer?: boolean; gt?: number; ge?: number; le?: number },
  issues: ValidationIssue[],
): number | undefined {
  const value = fields[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    issues.push(issue(rule.integer ? 'int_type' : 'float_type', [name], `Input should be a valid ${rule.integer ? 'integer' : 'number'}`, value));
    return undefined;
  }
  if (rule.integer && !Number.isInteger(value)) {
    issues.push(issue('int_from_float', [name], 'Input should be a valid integer, got a number with a fractional part', value));
    return undefined;
  }
  if (rule.gt !== undefined && !(value > rule.gt)) {
    issues.push(issue('greater_than', [name], `Input should be greater than ${rule.gt}`, value, { gt: rule.gt }));
    return undefined;
  }
  if (rule.ge !== undefined && !(value >= rule.ge)) {
    issues.push(issue('greater_than_equal', [name], `Input should be greater than or equal to ${rule.ge}`, value, { ge: rule.ge }));
    return undefined;
  }
  if (rule.le !== undefined && !(value <= rule.le)) {
    issues.push(issue('less_than_equal', [name], `Input should be less than or equal to ${rule.le}`, value, { le: rule.le }));
    return undefined;
  }
  return value;
}

function loadImage(url: string | undefined, loc: Array<string | number>, resolve: ImageResolver, issues: ValidationIssue[]): string | undefined {
  if (url === undefined) return undefined;
  const lookup = resolve(url);
  if (lookup.ok) return lookup.identity;
  issues.push(issue(lookup.type ?? 'image_load_error', loc, `Could not load the image: ${lookup.reason}`, url.length > 120 ? `${url.slice(0, 120)}…` : url));
  return undefined;
}

const WORDS = [
  'a',
  'the',
  'small',
  'bright',
  'quiet',
  'weathered',
  'red',
  'blue',
  'golden',
  'wooden',
  'stone',
  'glass',
  'portrait',
  'landscape',
  'street',
  'harbor',
  'garden',
  'kitchen',
  'mountain',
  'river',
  'window',
  'table',
  'woman',
  'man',
  'child',
  'dog',
  'cat',
  'bird',
  'boat',
  'car',
  'tree',
  'flower',
  'lamp',
  'book',
  'standing',
  'sitting',
  'resting',
  'walking',
  'beside',
  'under',
  'near',
  'against',
  'with',
  'in',
  'soft',
  'morning',
  'evening',
  'light',
  'shadow',
  'background',
  'foreground',
  'painted',
  'photographed',
  'detailed',
];

/**
 * The emulated answer: a caption-like text that is a pure function of the inputs, prefixed with a
 * digest so a test can tell each row got its own answer. `max_tokens` cuts it (one word ≈ one
 * token), and then `partial` is true, as LLaVA reports a cut answer.
 */
export function emulatedCaption(
  model: string,
  prompt: string,
  imageIdentities: string[],
  params: Fields,
  maxTokens: number | undefined,
): { text: string; partial: boolean } {
  const digest = createHash('sha256')
    .update(JSON.stringify([model, prompt, imageIdentities, params]))
    .digest();
  const length = 12 + ((digest[0] ?? 0) % 24);
  const words: string[] = [`[emulated:${digest.subarray(0, 5).toString('hex')}]`];
  for (let i = 0; i < length; i++) words.push(WORDS[(digest[(i + 1) % digest.length] ?? 0) % WORDS.length] ?? 'a');
  const limit = maxTokens ?? Number.POSITIVE_INFINITY;
  const partial = words.length > limit;
  return { text: partial ? words.slice(0, Math.max(1, limit)).join(' ') : words.join(' '), partial };
}

const llavaNext: EmulatedModel = {
  id: 'fal-ai/llava-next',
  run(input, resolveImage) {
    const issues: ValidationIssue[] = [];
    const fields = asObject(input, issues);
    if (!fields) return { issues };
    const imageUrl = requireString(fields, 'image_url', issues);
    const prompt = requireString(fields, 'prompt', issues);
    const maxTokens = optionalNumber(fields, 'max_tokens', { integer: true, gt: 0 }, issues);
    const temperature = optionalNumber(fields, 'temperature', { ge: 0 }, issues);
    const topP = optionalNumber(fields, 'top_p', { ge: 0, le: 1 }, issues);
    const identity = loadImage(imageUrl, ['image_url'], resolveImage, issues);
    if (issues.length > 0 || prompt === undefined || identity === undefined) return { issues };
    const params = { max_tokens: maxTokens ?? 64, temperature: temperature ?? 0.2, top_p: topP ?? 1 };
    const caption = emulatedCaption(this.id, prompt, [identity], params, params.max_tokens);
    return { output: { output: caption.text, partial: caption.partial } };
  },
};

const mantis: EmulatedModel = {
  id: 'fal-ai/mantis-llava-7b-v11',
  run(input, resolveImage) {
    const issues: ValidationIssue[] = [];
    const fields = asObject(input, issues);
    if (!fields) return { issues };
    const prompt = requireString(fields, 'prompt', issues);
    const images = fields['images'];
    const identities: string[] = [];
    if (images === undefined) {
      issues.push(issue('missing', ['images'], 'Field required', fields));
    } else if (!Array.isArray(images)) {
      issues.push(issue('list_type', ['images'], 'Input should be a valid list', images));
    } else if (images.length === 0) {
      issues.push(
        issue('too_short', ['images'], 'List should have at least 1 item after validation, not 0', images, {
          field_type: 'List',
          min_length: 1,
          actual_length: 0,
        }),
      );
    } else {
      images.forEach((item: unknown, index) => {
        const entry = asObject(item, []);
        if (!entry) {
          issues.push(issue('model_type', ['images', index], 'Input should be a valid dictionary or instance of ImageInput', item));
          return;
        }
        const url = entry['image_url'];
        if (typeof url !== 'string') {
          issues.push(
            issue(
              url === undefined ? 'missing' : 'string_type',
              ['images', index, 'image_url'],
              url === undefined ? 'Field required' : 'Input should be a valid string',
              url ?? entry,
            ),
          );
          return;
        }
        const identity = loadImage(url, ['images', index, 'image_url'], resolveImage, issues);
        if (identity !== undefined) identities.push(identity);
      });
    }
    if (issues.length > 0 || prompt === undefined) return { issues };
    const caption = emulatedCaption(this.id, prompt, identities, {}, undefined);
    return { output: { output: caption.text } };
  },
};

/** The apps the emulator serves, by endpoint id (`owner/alias`). */
export const EMULATED_MODELS: ReadonlyMap<string, EmulatedModel> = new Map([
  [llavaNext.id, llavaNext],
  [mantis.id, mantis],
]);

const GENERIC_FIELDS = ['image', 'question', 'seed'];

/**
 * Any other vision app, with field names unlike LLaVA's, so that a mapping (--input,
 * --output-field) is really exercised: input `image` (a URL or data URI, required), `question`
 * (required), `seed` (optional integer ≥ 0), and nothing else (extra fields are refused, as a
 * Pydantic model with `extra="forbid"` does, so a mapping's stray key shows); output
 * `{description, confidence}`, deterministic from the input.
 */
export function genericModel(endpoint: string): EmulatedModel {
  return {
    id: endpoint,
    run(input, resolveImage) {
      const issues: ValidationIssue[] = [];
      const fields = asObject(input, issues);
      if (!fields) return { issues };
      const image = requireString(fields, 'image', issues);
      const question = requireString(fields, 'question', issues);
      const seed = optionalNumber(fields, 'seed', { integer: true, ge: 0 }, issues);
      for (const name of Object.keys(fields)) {
        if (!GENERIC_FIELDS.includes(name)) issues.push(issue('extra_forbidden', [name], 'Extra inputs are not permitted', fields[name]));
      }
      const identity = loadImage(image, ['image'], resolveImage, issues);
      if (issues.length > 0 || question === undefined || identity === undefined) return { issues };
      const caption = emulatedCaption(endpoint, question, [identity], { seed: seed ?? null }, undefined);
      const digest = createHash('sha256').update(caption.text).digest();
      return { output: { description: caption.text, confidence: Math.round((0.5 + ((digest[0] ?? 0) / 255) * 0.5) * 1000) / 1000 } };
    },
  };
}

/**
 * The app serving an endpoint id: llava-next and mantis as themselves, any other id as the generic
 * vision app, but ids whose alias starts with `no-such-` (e.g. `fal-ai/no-such-model`), which are
 * not found (404), as an endpoint that does not exist is on fal.
 */
export function emulatedModel(endpoint: string): EmulatedModel | undefined {
  const known = EMULATED_MODELS.get(endpoint);
  if (known) return known;
  const [owner, alias] = endpoint.split('/');
  if (!owner || !alias || alias.startsWith('no-such-')) return undefined;
  return genericModel(endpoint);
}

const IMAGE_SIGNATURES: Array<[string, number[]]> = [
  ['png', [0x89, 0x50, 0x4e, 0x47]],
  ['jpeg', [0xff, 0xd8, 0xff]],
  ['gif', [0x47, 0x49, 0x46, 0x38]],
  ['webp', [0x52, 0x49, 0x46, 0x46]],
  ['bmp', [0x42, 0x4d]],
];

/** True when the bytes start like an image the models can decode. */
export function looksLikeImage(bytes: Uint8Array): boolean {
  return IMAGE_SIGNATURES.some(([, signature]) => signature.every((byte, i) => bytes[i] === byte));
}

/** sha256 of bytes, the identity of an image's content. */
export function contentIdentity(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * Resolves a data URI or an http(s) URL. Hosts under `.invalid` (RFC 2606) stand for images that
 * can't be downloaded, so tests can make an unreachable image on purpose.
 */
export function resolveImageReference(url: string, lookupStored: (url: URL) => Uint8Array | undefined): ImageLookup {
  if (url.startsWith('data:')) {
    const comma = url.indexOf(',');
    if (comma < 0) return { ok: false, reason: 'malformed data URI (no comma)' };
    const meta = url.slice(5, comma);
    if (!meta.endsWith(';base64')) return { ok: false, reason: 'data URI is not base64-encoded' };
    const payload = url.slice(comma + 1);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload)) return { ok: false, reason: 'data URI has invalid base64' };
    const bytes = Buffer.from(payload, 'base64');
    if (!looksLikeImage(bytes)) return { ok: false, reason: 'the data is not a PNG, JPEG, GIF, WebP or BMP image' };
    return { ok: true, identity: contentIdentity(bytes) };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: 'not a URL or a data URI' };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return { ok: false, reason: `unsupported URL scheme ${parsed.protocol}` };
  if (parsed.hostname.endsWith('.invalid')) return { ok: false, reason: `could not download ${parsed.hostname}` };
  const stored = lookupStored(parsed);
  if (stored) return looksLikeImage(stored) ? { ok: true, identity: contentIdentity(stored) } : { ok: false, reason: 'the uploaded file is not an image' };
  return { ok: true, identity: `url:${url}` };
}
