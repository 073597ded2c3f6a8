import { ConfigError } from '../errors.js';
import { DEFAULT_OUTPUT_FIELD, ENDPOINTS, isEndpointId, isOutputField, knownEndpoints, type EndpointSpec } from '../fal/endpoints.js';
import { BUILT_IN_LAYOUT, KNOWN_COLUMNS, type ColumnLayout } from './columns.js';
import {
  compileInputTemplate,
  compileTextTemplate,
  placeholdersOf,
  templateColumns,
  withPrompt,
  type InputTemplate,
  type TemplateNode,
} from './input-template.js';

/** A batch's mapping settings (config input, outputField, imageColumns, promptTemplate). */
export interface MappingSettings {
  /** The endpoint of rows without an endpoint cell (config endpoint, --endpoint). */
  endpoint?: string | undefined;
  input?: Readonly<Record<string, unknown>> | undefined;
  outputField?: string | undefined;
  imageColumns?: readonly string[] | undefined;
  promptTemplate?: string | undefined;
}

/** How rows for one endpoint become its input, and where its answer is. */
export interface EndpointMapping {
  readonly template: InputTemplate;
  readonly outputField: string;
  /**
   * The built-in mappings keep their original fingerprint (endpoint, prompt, images' identities,
   * parameters), which batches and the paid-answers ledger already hold: the same rows stay the
   * same calls across versions. Template mappings fingerprint the whole input.
   */
  readonly builtIn: boolean;
  /** Why the row's cells cannot be sent to this endpoint (a column it does not take is set), if so. */
  refusal(cell: (key: string) => string | undefined): string | undefined;
  /** Why the row has too many images for a column, if it does. */
  tooManyImages(column: string, count: number, single: boolean): string | undefined;
}

/** One manifest, one mapping: the header it needs, and each row's endpoint's mapping. */
export interface RowMapping {
  readonly layout: ColumnLayout;
  /** What makes this mapping's inputs differ from the built-in one (part of the default batch name); undefined for the built-in one. */
  readonly signature: string | undefined;
  /** The mapping of a row's endpoint, or why the row cannot be called. */
  forEndpoint(endpoint: string): EndpointMapping | { reason: string };
}

/**
 * Builds (and so checks) a batch's mapping: the built-in endpoints' (their prompt filled by
 * --prompt-template when set), or one --input template for every row's endpoint. Bad settings
 * throw a ConfigError naming the flag.
 */
export function createRowMapping(settings: MappingSettings = {}): RowMapping {
  const outputField = settings.outputField ?? DEFAULT_OUTPUT_FIELD;
  const imageColumns = settings.imageColumns ?? [];
  if (typeof outputField !== 'string' || !isOutputField(outputField)) {
    throw new ConfigError(`Expected --output-field to be a field name or a dotted path like choices.0.text, got ${JSON.stringify(outputField)}`);
  }
  if (settings.input === undefined) {
    if (outputField !== DEFAULT_OUTPUT_FIELD) {
      throw new ConfigError(
        `--output-field ${outputField} needs --input: the built-in endpoints (${knownEndpoints()}) answer in their "${DEFAULT_OUTPUT_FIELD}" field; to call another endpoint, map the columns into its input with --input`,
      );
    }
    if (settings.endpoint !== undefined && !ENDPOINTS.has(settings.endpoint)) {
      throw new ConfigError(
        `--endpoint ${settings.endpoint} has no built-in mapping (${knownEndpoints()} do); map the manifest's columns into its input with --input, e.g. --input '{"image_url":"{image_url:image}","prompt":"{prompt}"}'`,
      );
    }
    if (imageColumns.length > 0) {
      throw new ConfigError(`--image-columns needs --input: the built-in endpoints (${knownEndpoints()}) read their images from the image_url column`);
    }
    return settings.promptTemplate === undefined ? BUILT_IN : builtInMapping(settings.promptTemplate);
  }
  if (settings.promptTemplate !== undefined) {
    throw new ConfigError(
      '--prompt-template fills the built-in endpoints\' prompt; with --input, write the prompt in the template itself, e.g. "prompt": "Describe the {subject}"',
    );
  }
  return templateMapping(settings.input, outputField, imageColumns);
}

function list(names: readonly string[]): string {
  return names.length <= 1 ? (names[0] ?? '') : `${names.slice(0, -1).join(', ')} and ${names.at(-1) ?? ''}`;
}

function compileSpec(spec: EndpointSpec, prompt: TemplateNode | undefined): EndpointMapping {
  const compiled = compileInputTemplate(spec.input, { flag: `the ${spec.id} template`, rules: spec.rules });
  const template = prompt === undefined ? compiled : withPrompt(compiled, prompt);
  const takes = list(Object.keys(spec.input));
  return {
    template,
    outputField: spec.outputField,
    builtIn: true,
    refusal(cell) {
      const set = spec.refuses.find((column) => (cell(column) ?? '').trim() !== '');
      return set === undefined ? undefined : `${set} is not an input of ${spec.id} (it takes ${takes}); leave the cell empty`;
    },
    tooManyImages(_column, count) {
      if (count <= spec.maxImages) return undefined;
      const hint = spec.moreImages === undefined ? '' : `; ${spec.moreImages}`;
      return spec.maxImages === 1
        ? `${spec.id} takes one image, this row has ${count}${hint}`
        : `${spec.id} takes at most ${spec.maxImages} images, this row has ${count}${hint}`;
    },
  };
}

function builtInMapping(promptTemplate: string | undefined): RowMapping {
  const prompt = promptTemplate === undefined ? undefined : compileTextTemplate(promptTemplate, { flag: '--prompt-template' });
  const mappings = new Map([...ENDPOINTS].map(([id, spec]) => [id, compileSpec(spec, prompt)]));
  const unsupported = (endpoint: string): { reason: string } => ({
    reason: `endpoint "${endpoint}" is not supported; use one of ${knownEndpoints()}, or map the manifest's columns into its input with --input`,
  });
  if (prompt === undefined) {
    return { layout: BUILT_IN_LAYOUT, signature: undefined, forEndpoint: (endpoint) => mappings.get(endpoint) ?? unsupported(endpoint) };
  }
  // The prompt column gives way to the template's columns (a `prompt` column is then carried like any other).
  const named = [...new Set(placeholdersOf(prompt).map((p) => p.name))];
  const required = [...new Set(['image_url', ...named])];
  return {
    layout: {
      consumed: KNOWN_COLUMNS.filter((column) => column !== 'prompt'),
      required,
      images: ['image_url'],
      needs: `--prompt-template names ${list(named)}; the built-in endpoints also need image_url.`,
    },
    signature: JSON.stringify({ promptTemplate }),
    forEndpoint: (endpoint) => mappings.get(endpoint) ?? unsupported(endpoint),
  };
}

function templateMapping(input: Readonly<Record<string, unknown>>, outputField: string, imageColumns: readonly string[]): RowMapping {
  const template = compileInputTemplate(input, { flag: '--input', imageColumns });
  const columns = templateColumns(template);
  const mapping: EndpointMapping = {
    template,
    outputField,
    builtIn: false,
    refusal: () => undefined,
    tooManyImages(column, count, single) {
      return single && count > 1
        ? `${column} holds ${count} images; {${column}:image} takes one (for several, put {${column}:image[]} in an array)`
        : undefined;
    },
  };
  const images = columns.filter((c) => c.image).map((c) => c.key);
  return {
    layout: {
      consumed: ['id', 'endpoint', ...images],
      // Optional placeholders too: a misspelt column would otherwise be left out of every row, silently.
      required: columns.map((c) => c.name),
      images,
      needs: `--input names the columns ${list(columns.map((c) => c.name))}; id and endpoint are optional.`,
    },
    signature: JSON.stringify({ input, outputField, imageColumns }),
    forEndpoint: (endpoint) => (isEndpointId(endpoint) ? mapping : { reason: `endpoint "${endpoint}" is not a fal endpoint id like fal-ai/llava-next` }),
  };
}

/** The built-in endpoints' mapping, with the prompt from the prompt column. */
const BUILT_IN: RowMapping = builtInMapping(undefined);

export { BUILT_IN as BUILT_IN_MAPPING };
