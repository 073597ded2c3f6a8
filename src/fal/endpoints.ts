/**
 * The fal endpoints falbatch knows, as data: how a manifest row becomes the endpoint's input and
 * how its output becomes a caption. Adding an endpoint is adding an entry, not a branch.
 */
export type ParamName = 'max_tokens' | 'temperature' | 'top_p';

export interface RowInput {
  prompt: string;
  /** Image references as fal takes them: http(s) URLs, data URIs, or fal storage URLs. */
  images: string[];
  params: Partial<Record<ParamName, number>>;
}

export interface EndpointSpec {
  id: string;
  title: string;
  /** Most images one row may carry. */
  maxImages: number;
  /** Per-row parameters the endpoint takes; a row that sets another is rejected, not silently cut. */
  params: readonly ParamName[];
  toInput(row: RowInput): Record<string, unknown>;
  /** The caption in the endpoint's output, or undefined when the output is not of the expected shape. */
  readOutput(data: unknown): { output: string; partial: boolean } | undefined;
}

function outputField(data: unknown): { output: string; partial: boolean } | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const record = data as Record<string, unknown>;
  if (typeof record['output'] !== 'string') return undefined;
  return { output: record['output'], partial: record['partial'] === true };
}

export const ENDPOINTS: ReadonlyMap<string, EndpointSpec> = new Map<string, EndpointSpec>([
  [
    'fal-ai/llava-next',
    {
      id: 'fal-ai/llava-next',
      title: 'LLaVA v1.6 34B',
      maxImages: 1,
      params: ['max_tokens', 'temperature', 'top_p'],
      toInput: ({ prompt, images, params }) => ({ image_url: images[0], prompt, ...params }),
      readOutput: outputField,
    },
  ],
  [
    'fal-ai/mantis-llava-7b-v11',
    {
      id: 'fal-ai/mantis-llava-7b-v11',
      title: 'Mantis LLaVA 7B v1.1',
      maxImages: 16,
      params: [],
      toInput: ({ prompt, images }) => ({ prompt, images: images.map((image_url) => ({ image_url })) }),
      readOutput: outputField,
    },
  ],
]);

export function knownEndpoints(): string {
  return [...ENDPOINTS.keys()].join(', ');
}
