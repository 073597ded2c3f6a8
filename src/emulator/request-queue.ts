import { randomUUID } from 'node:crypto';
import type { Clock, DurationRange } from '../time.js';
import type { FaultPlan, JobFaultKind } from './faults.js';
import type { EmulatedModel, ImageResolver } from './models.js';
import { unitHash } from './seeded.js';
import type { StatsRecorder } from './stats.js';

export type RequestState = 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED';

/** How a job ended: the result GET answers with exactly this. */
export interface JobOutcome {
  httpStatus: number;
  body: unknown;
  headers: Record<string, string>;
  /** For a failed job: the `error` / `error_type` its COMPLETED status carries. */
  error?: { message: string; type: string };
  billed: boolean;
  inferenceSeconds: number | undefined;
}

export interface EmulatedRequest {
  readonly id: string;
  readonly endpoint: string;
  readonly model: EmulatedModel;
  readonly fingerprint: string;
  readonly submittedAt: number;
  state: RequestState;
  startedAt: number | undefined;
  completedAt: number | undefined;
  outcome: JobOutcome | undefined;
  resultFetched: boolean;
  /** Nth status/stream/result call on this request, for reproducible fault decisions. */
  calls: number;
  /** Internal bookkeeping. */
  input: unknown;
  readonly seq: number;
  readonly latencyMs: number;
  readonly jobFault: JobFaultKind | undefined;
  readonly startTimeoutMs: number | undefined;
  /** Cancels the runner's work (fal's cancel); made only when there is work to cancel. */
  abort: AbortController | undefined;
  /** Cancels the start-timeout timer once the request starts or ends; only with a start timeout. */
  startTimer: AbortController | undefined;
  cancelled: boolean;
  readonly listeners: Set<() => void>;
}

export interface RequestQueueOptions {
  runners: number;
  latency: DurationRange;
  seed: number;
  clock: Clock;
  faults: FaultPlan;
  stats: StatsRecorder;
  resolveImage: ImageResolver;
  /** Downloads what the runner must fetch before the model runs (presigned image URLs); returns a release. */
  prefetchImages?: (input: unknown) => Promise<() => void>;
  /** How many finished requests to remember (oldest forgotten first). */
  retainCompleted: number;
}

/**
 * fal's capacity as one account sees it: N runners (the per-account concurrency), an unbounded
 * FIFO queue in front of them with real positions, and a processing time per request.
 */
export class RequestQueue {
  readonly #opts: RequestQueueOptions;
  readonly #requests = new Map<string, EmulatedRequest>();
  readonly #queued: EmulatedRequest[] = [];
  #queueHead = 0;
  /** Sequence number of the next request and how many queued ones were removed ahead of the head. */
  #seq = 0;
  #startedOrRemoved = 0;
  #removedAhead: number[] = [];
  #busy = 0;
  readonly #finishedOrder: string[] = [];
  #closed = false;
  #runners: number;

  constructor(options: RequestQueueOptions) {
    this.#opts = options;
    this.#runners = options.runners;
  }

  get runners(): number {
    return this.#runners;
  }

  setRunners(n: number): void {
    this.#runners = n;
    this.#dispatch();
  }

  get(id: string): EmulatedRequest | undefined {
    return this.#requests.get(id);
  }

  /** Accepts a job; `submitKey` names this submission for reproducible latency and faults. */
  submit(model: EmulatedModel, input: unknown, fingerprint: string, submitKey: string, startTimeoutMs: number | undefined): EmulatedRequest {
    const { clock, latency, seed, faults, stats } = this.#opts;
    const latencyMs = Math.round(latency.min + unitHash(seed, 'latency', submitKey) * (latency.max - latency.min));
    const jobFault = faults.forJob(submitKey)?.kind;
    if (jobFault) stats.fault(jobFault);
    const request: EmulatedRequest = {
      id: randomUUID(),
      endpoint: model.id,
      model,
      fingerprint,
      submittedAt: clock.now(),
      state: 'IN_QUEUE',
      startedAt: undefined,
      completedAt: undefined,
      outcome: undefined,
      resultFetched: false,
      calls: 0,
      input,
      seq: this.#seq++,
      latencyMs,
      jobFault,
      startTimeoutMs,
      // Controllers only where needed: at thousands of requests a second, each one (and the
      // DOMException its abort makes) shows in the profile.
      abort: undefined,
      startTimer: undefined,
      cancelled: false,
      listeners: new Set(),
    };
    this.#requests.set(request.id, request);
    this.#queued.push(request);
    stats.gauge('inQueue', 1);
    stats.gauge('outstanding', 1);
    if (startTimeoutMs !== undefined) this.#armStartTimeout(request, startTimeoutMs);
    this.#dispatch();
    return request;
  }

  /** 0-based position among the requests still waiting, as fal reports `queue_position`. */
  position(request: EmulatedRequest): number {
    if (request.state !== 'IN_QUEUE') return 0;
    let removedAhead = 0;
    for (const seq of this.#removedAhead) if (seq < request.seq) removedAhead++;
    return request.seq - this.#startedOrRemoved - removedAhead;
  }

  subscribe(request: EmulatedRequest, listener: () => void): () => void {
    request.listeners.add(listener);
    if (request.state === 'IN_QUEUE') this.#watchedQueued.add(request);
    return () => {
      request.listeners.delete(listener);
      if (request.listeners.size === 0) this.#watchedQueued.delete(request);
    };
  }

  /** fal's cancel: a queued request is removed, a running one is signalled. */
  cancel(request: EmulatedRequest): 'requested' | 'already-completed' {
    if (request.state === 'COMPLETED') return 'already-completed';
    if (request.state === 'IN_QUEUE') {
      this.#removeQueued(request);
      this.#complete(request, cancelledOutcome());
    } else {
      request.cancelled = true;
      request.abort?.abort();
    }
    return 'requested';
  }

  markResultFetched(request: EmulatedRequest): void {
    if (request.resultFetched || request.state !== 'COMPLETED') return;
    request.resultFetched = true;
    this.#opts.stats.gauge('outstanding', -1);
  }

  counts(): { inQueue: number; inProgress: number; outstanding: number } {
    const live = this.#opts.stats.live;
    return { inQueue: live.inQueue, inProgress: live.inProgress, outstanding: live.outstanding };
  }

  close(): void {
    this.#closed = true;
    for (const request of this.#requests.values()) {
      request.cancelled = true;
      request.abort?.abort();
      request.startTimer?.abort();
    }
  }

  /** Queued requests someone streams the status of: they hear about every position change. */
  readonly #watchedQueued = new Set<EmulatedRequest>();

  #dispatch(): void {
    let moved = false;
    while (!this.#closed && this.#busy < this.#runners && this.#queueHead < this.#queued.length) {
      const next = this.#queued[this.#queueHead];
      this.#queued[this.#queueHead] = undefined as unknown as EmulatedRequest;
      this.#queueHead++;
      if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queued.length) {
        this.#queued.splice(0, this.#queueHead);
        this.#queueHead = 0;
      }
      if (!next) continue;
      // Every request the head passes, started or removed earlier, moves the ones behind it up.
      this.#startedOrRemoved++;
      if (this.#removedAhead.length > 0) this.#removedAhead = this.#removedAhead.filter((seq) => seq > next.seq);
      if (next.state !== 'IN_QUEUE') continue;
      moved = true;
      void this.#run(next);
    }
    if (moved) this.#notifyQueued();
  }

  #notifyQueued(): void {
    for (const request of this.#watchedQueued) for (const listener of request.listeners) listener();
  }

  async #run(request: EmulatedRequest): Promise<void> {
    const { clock, stats } = this.#opts;
    this.#busy++;
    stats.gauge('inQueue', -1);
    stats.gauge('inProgress', 1);
    request.state = 'IN_PROGRESS';
    request.startTimer?.abort();
    this.#watchedQueued.delete(request);
    request.startedAt = clock.now();
    this.#notify(request);
    let outcome: JobOutcome;
    try {
      if (request.jobFault === 'stuck' || request.latencyMs > 0) {
        const abort = (request.abort = new AbortController());
        if (request.cancelled || this.#closed) abort.abort();
        if (request.jobFault === 'stuck') {
          await new Promise<void>((_, reject) => {
            if (abort.signal.aborted) reject(new Error('cancelled'));
            abort.signal.addEventListener('abort', () => reject(new Error('cancelled')), { once: true });
          });
        }
        await clock.sleep(request.latencyMs, abort.signal);
      } else {
        await Promise.resolve();
      }
      if (request.cancelled) throw new Error('cancelled');
      const release = this.#opts.prefetchImages ? await this.#opts.prefetchImages(request.input) : undefined;
      try {
        outcome = this.#decide(request);
      } finally {
        release?.();
      }
    } catch {
      outcome = cancelledOutcome();
    }
    this.#busy--;
    stats.gauge('inProgress', -1);
    this.#complete(request, outcome);
    this.#dispatch();
  }

  #decide(request: EmulatedRequest): JobOutcome {
    const inferenceSeconds = request.latencyMs / 1000;
    const answer = request.model.run(request.input, this.#opts.resolveImage);
    if ('issues' in answer) {
      return {
        httpStatus: 422,
        body: { detail: answer.issues },
        headers: { 'x-fal-retryable': 'false' },
        error: { message: answer.issues.map((i) => i.msg).join('; '), type: 'validation_error' },
        billed: false,
        inferenceSeconds: undefined,
      };
    }
    switch (request.jobFault) {
      case 'model-error':
        return {
          httpStatus: 422,
          body: {
            detail: [
              {
                type: 'model_error',
                loc: ['body'],
                msg: 'The model could not process this input (emulated model error)',
                input: null,
                url: 'https://docs.fal.ai/errors#model_error',
              },
            ],
          },
          headers: { 'x-fal-retryable': 'false' },
          error: { message: 'The model could not process this input (emulated model error)', type: 'model_error' },
          billed: true,
          inferenceSeconds,
        };
      case 'job-error':
        return errorOutcome(503, 'runner_disconnected', 'Runner disconnected while processing the request', false);
      case 'user-timeout':
        return userTimeoutOutcome();
      default:
        return { httpStatus: 200, body: answer.output, headers: {}, billed: true, inferenceSeconds };
    }
  }

  #complete(request: EmulatedRequest, outcome: JobOutcome): void {
    if (request.state === 'COMPLETED') return;
    const { clock, stats } = this.#opts;
    request.state = 'COMPLETED';
    request.startTimer?.abort();
    request.completedAt = clock.now();
    request.outcome = outcome;
    request.input = undefined;
    stats.completed();
    if (outcome.billed) stats.billed(request.fingerprint);
    this.#notify(request);
    request.listeners.clear();
    this.#finishedOrder.push(request.id);
    while (this.#finishedOrder.length > this.#opts.retainCompleted) {
      const oldest = this.#finishedOrder.shift();
      if (oldest !== undefined) this.#requests.delete(oldest);
    }
  }

  #removeQueued(request: EmulatedRequest): void {
    this.#opts.stats.gauge('inQueue', -1);
    this.#removedAhead.push(request.seq);
    this.#watchedQueued.delete(request);
    // The entry stays in the array until the head passes it; dispatch skips it then.
    this.#notifyQueued();
  }

  #armStartTimeout(request: EmulatedRequest, ms: number): void {
    request.startTimer = new AbortController();
    this.#opts.clock.sleep(ms, request.startTimer.signal).then(
      () => {
        if (request.state !== 'IN_QUEUE') return;
        this.#removeQueued(request);
        this.#complete(request, userTimeoutOutcome());
      },
      () => undefined,
    );
  }

  #notify(request: EmulatedRequest): void {
    for (const listener of request.listeners) listener();
  }
}

function errorOutcome(status: number, type: string, message: string, billed: boolean): JobOutcome {
  return {
    httpStatus: status,
    body: { detail: message, error_type: type },
    headers: { 'x-fal-error-type': type },
    error: { message, type },
    billed,
    inferenceSeconds: undefined,
  };
}

function cancelledOutcome(): JobOutcome {
  return errorOutcome(499, 'client_cancelled', 'Request was cancelled by the client', false);
}

function userTimeoutOutcome(): JobOutcome {
  const outcome = errorOutcome(504, 'startup_timeout', 'Request did not start within its start timeout (X-Fal-Request-Timeout)', false);
  outcome.headers['x-fal-request-timeout-type'] = 'user';
  return outcome;
}
