import { unitHash } from './seeded.js';

/** The fal operations a fault can hit. */
export type EmulatedOperation = 'submit' | 'status' | 'stream' | 'result' | 'cancel' | 'run' | 'upload';

export const EMULATED_OPERATIONS: readonly EmulatedOperation[] = ['submit', 'status', 'stream', 'result', 'cancel', 'run', 'upload'];

/** Faults that answer (or don't answer) one HTTP request. */
export type RequestFaultKind =
  | '429' // rate limited, with Retry-After
  | '429-no-retry-after'
  | '500'
  | '502'
  | '503'
  | '504'
  | 'drop' // the request is carried out, then the connection is cut before the answer
  | 'truncate' // the request is carried out, then the answer breaks off halfway through its body
  | 'slow' // the request is carried out at once, and answered SLOW_ANSWER_MS later
  | 'hang'; // the request is never answered

/** Faults that decide how an accepted job ends. */
export type JobFaultKind =
  | 'job-error' // completes with a server error (runner disconnected): not billed, submit again
  | 'model-error' // completes with a 422 from the model: billed, permanent
  | 'user-timeout' // completes with 504 X-Fal-Request-Timeout-Type: user
  | 'stuck'; // the runner never finishes (until the request is cancelled)

export type FaultKind = RequestFaultKind | JobFaultKind;

const REQUEST_FAULTS: readonly RequestFaultKind[] = ['429', '429-no-retry-after', '500', '502', '503', '504', 'drop', 'truncate', 'slow', 'hang'];

/** How late a `slow` fault answers: long enough for a client to stall in the middle of a call. */
export const SLOW_ANSWER_MS = 2000;
const JOB_FAULTS: readonly JobFaultKind[] = ['job-error', 'model-error', 'user-timeout', 'stuck'];

export interface RequestFault {
  kind: RequestFaultKind;
  /** Which operation it hits; `submit` when left out. */
  op: EmulatedOperation;
  /** Probability in [0, 1] per request. */
  rate: number;
  /** Inject it at most this many times (e.g. "the first submit fails"). Unlimited when left out. */
  max?: number;
}

export interface JobFault {
  kind: JobFaultKind;
  rate: number;
  max?: number;
}

export type FaultSpec = RequestFault | JobFault;

export function isJobFault(spec: FaultSpec): spec is JobFault {
  return (JOB_FAULTS as readonly string[]).includes(spec.kind);
}

/**
 * Parses `KIND[@OP]=RATE[xMAX]`, e.g. `503@submit=0.05`, `429=0.1`, `model-error=0.01`, or
 * `503@submit=1x1` (the first submit fails, the rest don't). Throws an Error whose message says
 * what is accepted.
 */
export function parseFaultSpec(text: string): FaultSpec {
  const match = /^([a-z0-9-]+)(?:@([a-z]+))?=(\d*\.?\d+)(?:x(\d+))?$/.exec(text.trim());
  const usage =
    `expected KIND[@OP]=RATE[xMAX], e.g. 503@submit=0.05, model-error=0.01 or 503@submit=1x1; ` +
    `kinds: ${[...REQUEST_FAULTS, ...JOB_FAULTS].join(', ')}; ops: ${EMULATED_OPERATIONS.join(', ')}`;
  if (!match) throw new Error(`Invalid fault "${text}": ${usage}`);
  const [, kind = '', op, rateText = '', maxText] = match;
  const rate = Number(rateText);
  if (!(rate >= 0 && rate <= 1)) throw new Error(`Invalid fault "${text}": the rate must be between 0 and 1, got ${rateText}`);
  const max = maxText === undefined ? {} : { max: Number(maxText) };
  if ((JOB_FAULTS as readonly string[]).includes(kind)) {
    if (op !== undefined) throw new Error(`Invalid fault "${text}": ${kind} decides how a job ends and takes no @${op}`);
    return { kind: kind as JobFaultKind, rate, ...max };
  }
  if (!(REQUEST_FAULTS as readonly string[]).includes(kind)) throw new Error(`Invalid fault "${text}": unknown kind "${kind}"; ${usage}`);
  if (op !== undefined && !(EMULATED_OPERATIONS as readonly string[]).includes(op)) {
    throw new Error(`Invalid fault "${text}": unknown operation "${op}"; ${usage}`);
  }
  return { kind: kind as RequestFaultKind, op: (op ?? 'submit') as EmulatedOperation, rate, ...max };
}

/** The spec back in `KIND[@OP]=RATE[xMAX]` form. */
export function formatFaultSpec(spec: FaultSpec): string {
  const op = isJobFault(spec) ? '' : `@${spec.op}`;
  return `${spec.kind}${op}=${spec.rate}${spec.max === undefined ? '' : `x${spec.max}`}`;
}

/** Decides, reproducibly from the seed, which fault (if any) hits a request or a job. */
export class FaultPlan {
  #requestFaults: RequestFault[] = [];
  #jobFaults: JobFault[] = [];
  readonly #injected = new Map<FaultSpec, number>();

  constructor(
    private readonly seed: number,
    specs: readonly FaultSpec[] = [],
  ) {
    this.set(specs);
  }

  set(specs: readonly FaultSpec[]): void {
    this.#requestFaults = specs.filter((s): s is RequestFault => !isJobFault(s));
    this.#jobFaults = specs.filter(isJobFault);
    this.#injected.clear();
  }

  list(): FaultSpec[] {
    return [...this.#requestFaults, ...this.#jobFaults];
  }

  /** `key` names the request (e.g. input fingerprint + nth submit of it, or request id + nth poll). */
  forRequest(op: EmulatedOperation, key: string): RequestFault | undefined {
    for (const fault of this.#requestFaults) {
      if (fault.op === op && this.#draw(fault, 'request', op, key)) return fault;
    }
    return undefined;
  }

  forJob(key: string): JobFault | undefined {
    for (const fault of this.#jobFaults) {
      if (this.#draw(fault, 'job', '', key)) return fault;
    }
    return undefined;
  }

  #draw(fault: FaultSpec, scope: string, op: string, key: string): boolean {
    if (fault.rate <= 0) return false;
    const injected = this.#injected.get(fault) ?? 0;
    if (fault.max !== undefined && injected >= fault.max) return false;
    if (unitHash(this.seed, scope, fault.kind, op, key) >= fault.rate) return false;
    this.#injected.set(fault, injected + 1);
    return true;
  }
}
