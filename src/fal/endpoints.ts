/**
 * The fal endpoints falbatch knows, as data: how a manifest row becomes the endpoint's input (an
 * input template, the language of --input: see manifest/input-template.ts), which checks its
 * parameters get, and which field of its output is the answer. Adding an endpoint is adding an
 * entry, not a branch; any other endpoint works through --input and --output-field.
 */
export interface ParamRule {
  integer?: boolean;
  gt?: number;
  ge?: number;
  le?: number;
}

export interface EndpointSpec {
  id: string;
  title: string;
  /** The input template: `{column:type}` placeholders filled from the row (JSON, as --input takes it). */
  input: Readonly<Record<string, unknown>>;
  /** The output field that holds the answer (a dotted path, as --output-field takes it). */
  outputField: string;
  /** Checks of the numeric parameters beyond their type, by column. */
  rules: Readonly<Record<string, ParamRule>>;
  /** Columns of the other endpoints this one does not take: a row that sets one is rejected, not silently cut. */
  refuses: readonly string[];
  /** Most images one row may carry. */
  maxImages: number;
  /** What to suggest to a row with more images than maxImages. */
  moreImages?: string;
}

/** Where an endpoint's answer is, unless the endpoint or --output-field says otherwise. */
export const DEFAULT_OUTPUT_FIELD = 'output';

const SAMPLING = ['max_tokens', 'temperature', 'top_p'] as const;

export const ENDPOINTS: ReadonlyMap<string, EndpointSpec> = new Map<string, EndpointSpec>([
  [
    'fal-ai/llava-next',
    {
      id: 'fal-ai/llava-next',
      title: 'LLaVA v1.6 34B',
      input: {
        image_url: '{image_url:image}',
        prompt: '{prompt}',
        max_tokens: '{max_tokens:int?}',
        temperature: '{temperature:number?}',
        top_p: '{top_p:number?}',
      },
      outputField: DEFAULT_OUTPUT_FIELD,
      rules: { max_tokens: { integer: true, gt: 0 }, temperature: { ge: 0 }, top_p: { ge: 0, le: 1 } },
      refuses: [],
      maxImages: 1,
      moreImages: 'use fal-ai/mantis-llava-7b-v11 for several images',
    },
  ],
  [
    'fal-ai/mantis-llava-7b-v11',
    {
      id: 'fal-ai/mantis-llava-7b-v11',
      title: 'Mantis LLaVA 7B v1.1',
      input: { prompt: '{prompt}', images: [{ image_url: '{image_url:image[]}' }] },
      outputField: DEFAULT_OUTPUT_FIELD,
      rules: {},
      refuses: SAMPLING,
      maxImages: 16,
    },
  ],
]);

export function knownEndpoints(): string {
  return [...ENDPOINTS.keys()].join(', ');
}

/** `owner/alias[/path]`, as fal names its endpoints. */
const ENDPOINT_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+(\/[\w./-]+)?$/;

export function isEndpointId(text: string): boolean {
  return ENDPOINT_ID.test(text);
}

/** `description`, `choices.0.text`: names of fields, and indexes of arrays, separated by dots. */
export function isOutputField(text: string): boolean {
  return text.split('.').every((segment) => segment.trim() !== '' && segment === segment.trim());
}

export interface Answer {
  /** The answer, as text: a string as it is; a number or boolean written out; an object or array as JSON. */
  output: string;
  /** The endpoint said the answer was cut short (`partial: true` in its output). */
  partial: boolean;
}

/**
 * The answer in an endpoint's output: the value at `outputField` (a dotted path; digits index
 * arrays). Undefined when the output has nothing there: it is not of the shape the mapping expects.
 */
export function readAnswer(body: unknown, outputField: string = DEFAULT_OUTPUT_FIELD): Answer | undefined {
  let value: unknown = body;
  for (const segment of outputField.split('.')) {
    if (Array.isArray(value) && /^\d+$/.test(segment)) value = value[Number(segment)];
    else if (typeof value === 'object' && value !== null && !Array.isArray(value)) value = (value as Record<string, unknown>)[segment];
    else return undefined;
  }
  if (value === undefined || value === null) return undefined;
  const output = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  const partial = typeof body === 'object' && body !== null && (body as Record<string, unknown>)['partial'] === true;
  return { output, partial };
}
