import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { API_HOST, pricingAnswer, type EmulatedPrice } from './pricing.js';
import { SLOW_ANSWER_MS, type EmulatedOperation, type FaultPlan, type RequestFault } from './faults.js';
import { BodyTooLargeError, canonicalJson, readBody, sendJson, sendTruncated } from './http-io.js';
import { emulatedModel, resolveImageReference } from './models.js';
import type { EmulatedRequest, RequestQueue } from './request-queue.js';
import type { StatsRecorder } from './stats.js';
import type { FileStore } from './file-store.js';
import type { Quirk } from './quirks.js';

const JSON_LIMIT = 32 * 1024 * 1024;
const UPLOAD_LIMIT = 256 * 1024 * 1024;

/** fal's hosts as the routing contract names them: `<base>/<host>/<path>`. */
const QUEUE_HOST = 'queue.fal.run';
const RUN_HOST = 'fal.run';
const REST_HOST = 'rest.fal.ai';
const MEDIA_HOST = 'v3.fal.media';

export interface RouteDeps {
  queue: RequestQueue;
  stats: StatsRecorder;
  faults: FaultPlan;
  files: FileStore;
  key: () => string | undefined;
  locked: () => boolean;
  retryAfterSeconds: number;
  quirks: ReadonlySet<Quirk>;
  onAdmin: (action: string, body: Record<string, unknown>) => unknown;
  /** What fal's pricing API answers, per endpoint id. */
  prices: Readonly<Record<string, EmulatedPrice>>;
  /** Told each job a submit creates. */
  onAccepted?: (requestId: string) => void;
}

interface Target {
  host: string;
  path: string;
  query: URLSearchParams;
}

/**
 * Where a request is meant to go: `x-fal-target-url` (the client's proxy convention) wins;
 * otherwise the first path segment is fal's host (the FAL_BASE_URL routing contract).
 */
export function resolveTarget(req: IncomingMessage): Target | undefined {
  const proxied = req.headers['x-fal-target-url'];
  if (typeof proxied === 'string' && proxied.length > 0) {
    try {
      const url = new URL(proxied);
      return { host: url.host, path: url.pathname, query: url.searchParams };
    } catch {
      return undefined;
    }
  }
  const url = new URL(req.url ?? '/', 'http://emulator');
  const [, host = '', ...rest] = url.pathname.split('/');
  return { host, path: `/${rest.join('/')}`, query: url.searchParams };
}

export class EmulatorRoutes {
  readonly #deps: RouteDeps;
  readonly #submitsByFingerprint = new Map<string, number>();
  #uploadSeq = 0;

  constructor(deps: RouteDeps) {
    this.#deps = deps;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = resolveTarget(req);
    if (!target) return sendJson(res, 400, { detail: 'x-fal-target-url is not a URL' });
    const base = `http://${req.headers.host ?? '127.0.0.1'}`;
    try {
      if (target.host === '_emulator') return await this.#admin(req, res, target);
      if (target.host === QUEUE_HOST) return await this.#queueRoute(req, res, target, base);
      if (target.host === RUN_HOST) return await this.#run(req, res, target);
      if (target.host === REST_HOST) return await this.#rest(req, res, target, base);
      if (target.host === API_HOST) return this.#pricing(req, res, target);
      if (target.host.endsWith('.fal.media')) return await this.#media(req, res, target, base);
      return sendJson(res, 404, { detail: `The fal emulator serves ${QUEUE_HOST}, ${RUN_HOST}, ${REST_HOST} and *.fal.media; got host "${target.host}"` });
    } catch (error) {
      if (error instanceof BodyTooLargeError) return sendJson(res, 413, { detail: error.message });
      if (!res.headersSent) sendJson(res, 500, { detail: `emulator error: ${(error as Error).message}`, error_type: 'internal_error' });
      else res.destroy();
    }
  }

  #authorized(req: IncomingMessage, res: ServerResponse): boolean {
    const key = this.#deps.key();
    if (key === undefined) return true;
    if (req.headers.authorization === `Key ${key}`) return true;
    this.#deps.stats.count('authFailures');
    sendJson(res, 401, { detail: 'Invalid or missing credentials: send "Authorization: Key <FAL_KEY>"' });
    return false;
  }

  /** Answers with the fault (`answered`), or returns it for the caller to apply after the work (`drop`, `truncate`), or undefined. */
  #requestFault(res: ServerResponse, op: EmulatedOperation, key: string): RequestFault | 'answered' | undefined {
    const fault = this.#deps.faults.forRequest(op, key);
    if (!fault) return undefined;
    this.#deps.stats.fault(`${fault.kind}@${op}`);
    switch (fault.kind) {
      case 'drop':
      case 'truncate':
      case 'slow':
        return fault;
      case 'hang':
        // Never answered: the socket stays open until the client gives up or the emulator closes.
        return 'answered';
      case '429':
        sendJson(res, 429, { detail: 'Too many requests: the rate limit for this key is exceeded' }, { 'retry-after': this.#retryAfter() });
        return 'answered';
      case '429-no-retry-after':
        sendJson(res, 429, { detail: 'Too many requests: the rate limit for this key is exceeded' });
        return 'answered';
      default: {
        const [type, detail] = SERVER_ERRORS[fault.kind];
        sendJson(res, Number(fault.kind), { detail, error_type: type }, { 'x-fal-error-type': type });
        return 'answered';
      }
    }
  }

  #retryAfter(): string {
    const seconds = this.#deps.retryAfterSeconds;
    // An HTTP date has whole seconds: round up, so the wait is never shorter than asked.
    return this.#deps.quirks.has('retry-after-date') ? new Date(Math.ceil(Date.now() / 1000 + seconds) * 1000).toUTCString() : String(seconds);
  }

  /** The request-id header, unless the no-request-id-header quirk is on. */
  #idHeader(id: string): Record<string, string> {
    return this.#deps.quirks.has('no-request-id-header') ? {} : { 'x-fal-request-id': id };
  }

  async #queueRoute(req: IncomingMessage, res: ServerResponse, target: Target, base: string): Promise<void> {
    if (!this.#authorized(req, res)) return;
    const segments = target.path.split('/').filter(Boolean);
    const [owner, alias] = segments;
    const endpoint = owner && alias ? `${owner}/${alias}` : '';
    const requestsAt = segments.indexOf('requests', 2);
    if (requestsAt === -1) {
      if (req.method !== 'POST') return sendJson(res, 405, { detail: `Use POST to submit to ${endpoint}` });
      return this.#submit(req, res, endpoint, base);
    }
    const id = segments[requestsAt + 1] ?? '';
    const rest = segments.slice(requestsAt + 2).join('/');
    const request = this.#deps.queue.get(id);
    if (!request || request.endpoint !== endpoint) {
      this.#deps.stats.count(rest === 'status' ? 'statusCalls' : rest === '' ? 'resultCalls' : 'statusCalls');
      return sendJson(res, 404, { status: 'NOT_FOUND', detail: `Request ${id} not found for ${endpoint || 'this endpoint'}` });
    }
    const urls = requestUrls(base, endpoint, id);
    if (rest === 'status' && req.method === 'GET') return this.#status(res, request, urls, target.query.get('logs') === '1');
    if (rest === 'status/stream' && req.method === 'GET') return this.#stream(req, res, request, urls, target.query.get('logs') === '1');
    if (rest === '' && req.method === 'GET') return this.#result(res, request);
    if (rest === 'cancel' && req.method === 'PUT') return this.#cancel(res, request);
    return sendJson(res, 404, { detail: `No route ${req.method} ${target.path}` });
  }

  async #submit(req: IncomingMessage, res: ServerResponse, endpoint: string, base: string): Promise<void> {
    const { stats, queue } = this.#deps;
    stats.count('submits');
    const priority = req.headers['x-fal-queue-priority'];
    stats.priority(typeof priority === 'string' && priority !== '' ? priority : 'none');
    const model = emulatedModel(endpoint);
    if (!model) return sendJson(res, 404, { detail: `Application "${endpoint}" not found` });
    if (this.#deps.locked()) return sendJson(res, 403, { detail: LOCKED_DETAIL });
    const input = await this.#readJson(req, res);
    if (input === NO_INPUT) return;
    const fingerprint = fingerprintOf(endpoint, input);
    const nth = (this.#submitsByFingerprint.get(fingerprint) ?? 0) + 1;
    this.#submitsByFingerprint.set(fingerprint, nth);
    const fault = this.#requestFault(res, 'submit', `${fingerprint}#${nth}`);
    if (fault === 'answered') return;
    if (this.#deps.quirks.has('validate-on-submit')) {
      const checked = model.run(input, this.resolveImage);
      if ('issues' in checked) return sendJson(res, 422, { detail: checked.issues });
    }
    const timeoutHeader = req.headers['x-fal-request-timeout'];
    const startTimeoutMs = typeof timeoutHeader === 'string' && Number(timeoutHeader) > 0 ? Number(timeoutHeader) * 1000 : undefined;
    const request = queue.submit(model, input, fingerprint, `${fingerprint}#${nth}`, startTimeoutMs);
    stats.count('accepted');
    this.#deps.onAccepted?.(request.id);
    const urls = requestUrls(base, endpoint, request.id);
    answer(res, fault, 200, { status: 'IN_QUEUE', request_id: request.id, ...urls, queue_position: queue.position(request) }, this.#idHeader(request.id));
  }

  #statusBody(request: EmulatedRequest, urls: RequestUrls, logs: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = { status: request.state, request_id: request.id, ...urls };
    if (request.state === 'IN_QUEUE') body['queue_position'] = this.#deps.queue.position(request);
    if (logs && request.state !== 'IN_QUEUE') body['logs'] = emulatedLogs(request);
    else if (request.state !== 'IN_QUEUE') body['logs'] = null;
    if (request.state === 'COMPLETED') {
      const outcome = request.outcome;
      body['metrics'] = outcome?.inferenceSeconds === undefined ? {} : { inference_time: outcome.inferenceSeconds };
      if (outcome?.error && !this.#deps.quirks.has('no-completed-error')) {
        body['error'] = outcome.error.message;
        body['error_type'] = outcome.error.type;
      }
    }
    return body;
  }

  #status(res: ServerResponse, request: EmulatedRequest, urls: RequestUrls, logs: boolean): void {
    this.#deps.stats.count('statusCalls');
    const fault = this.#requestFault(res, 'status', `${request.id}#${request.calls++}`);
    if (fault === 'answered') return;
    const running = this.#deps.quirks.has('status-200') ? 200 : 202;
    answer(res, fault, request.state === 'COMPLETED' ? 200 : running, this.#statusBody(request, urls, logs), this.#idHeader(request.id));
  }

  #stream(req: IncomingMessage, res: ServerResponse, request: EmulatedRequest, urls: RequestUrls, logs: boolean): void {
    this.#deps.stats.count('streamCalls');
    if (this.#deps.quirks.has('no-stream')) return sendJson(res, 404, { detail: 'Not Found' });
    const fault = this.#requestFault(res, 'stream', `${request.id}#${request.calls++}`);
    if (fault === 'answered') return;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...this.#idHeader(request.id),
    });
    const quirks = this.#deps.quirks;
    const stayOpen = quirks.has('stream-stays-open') || quirks.has('stream-silent');
    const keepAlive = stayOpen ? setInterval(() => res.write(': keep-alive\n\n'), 200) : undefined;
    this.#deps.stats.gauge('openStreams', 1);
    res.once('close', () => {
      clearInterval(keepAlive);
      this.#deps.stats.gauge('openStreams', -1);
    });
    if (quirks.has('stream-bad-event')) res.write('data: {not json\n\n');
    if (quirks.has('stream-silent')) return;
    let last = '';
    const send = (): void => {
      const body = this.#statusBody(request, urls, logs);
      const text = JSON.stringify(body);
      if (text !== last) {
        last = text;
        res.write(`data: ${text}\n\n`);
      }
      if (fault?.kind === 'drop' || fault?.kind === 'truncate') {
        // A stream cut after its first event, as a proxy dropping long connections would.
        unsubscribe();
        res.destroy();
      } else if (request.state === 'COMPLETED') {
        unsubscribe();
        if (!stayOpen) res.end();
      }
    };
    const unsubscribe = this.#deps.queue.subscribe(request, send);
    req.once('close', unsubscribe);
    send();
  }

  #result(res: ServerResponse, request: EmulatedRequest): void {
    this.#deps.stats.count('resultCalls');
    const fault = this.#requestFault(res, 'result', `${request.id}#${request.calls++}`);
    if (fault === 'answered') return;
    if (request.state !== 'COMPLETED' || !request.outcome) {
      return sendJson(res, 400, { detail: 'Request is still in progress' }, this.#idHeader(request.id));
    }
    if (fault === undefined) this.#deps.queue.markResultFetched(request);
    const { httpStatus, body, headers } = request.outcome;
    answer(res, fault, httpStatus, body, { ...headers, ...this.#idHeader(request.id) });
  }

  #cancel(res: ServerResponse, request: EmulatedRequest): void {
    const fault = this.#requestFault(res, 'cancel', `${request.id}#${request.calls++}`);
    if (fault === 'answered') return;
    const cancelled = this.#deps.queue.cancel(request);
    if (cancelled === 'already-completed') return sendJson(res, 400, { status: 'ALREADY_COMPLETED' });
    this.#deps.stats.count('cancels');
    answer(res, fault, 202, { status: 'CANCELLATION_REQUESTED' });
  }

  async #run(req: IncomingMessage, res: ServerResponse, target: Target): Promise<void> {
    if (!this.#authorized(req, res)) return;
    const { stats, queue } = this.#deps;
    stats.count('runs');
    const [owner, alias] = target.path.split('/').filter(Boolean);
    const endpoint = `${owner ?? ''}/${alias ?? ''}`;
    const model = emulatedModel(endpoint);
    if (req.method !== 'POST') return sendJson(res, 405, { detail: `Use POST to run ${endpoint}` });
    if (!model) return sendJson(res, 404, { detail: `Application "${endpoint}" not found` });
    if (this.#deps.locked()) return sendJson(res, 403, { detail: LOCKED_DETAIL });
    const input = await this.#readJson(req, res);
    if (input === NO_INPUT) return;
    const fingerprint = fingerprintOf(endpoint, input);
    const nth = (this.#submitsByFingerprint.get(fingerprint) ?? 0) + 1;
    this.#submitsByFingerprint.set(fingerprint, nth);
    const fault = this.#requestFault(res, 'run', `${fingerprint}#${nth}`);
    if (fault === 'answered') return;
    const request = queue.submit(model, input, fingerprint, `${fingerprint}#${nth}`, undefined);
    await new Promise<void>((resolve) => {
      if (request.state === 'COMPLETED') return resolve();
      const unsubscribe = queue.subscribe(request, () => {
        if (request.state !== 'COMPLETED') return;
        unsubscribe();
        resolve();
      });
    });
    queue.markResultFetched(request);
    const outcome = request.outcome;
    if (!outcome) return sendJson(res, 500, { detail: 'no outcome', error_type: 'internal_error' });
    answer(res, fault, outcome.httpStatus, outcome.body, { ...outcome.headers, ...this.#idHeader(request.id) });
  }

  #pricing(req: IncomingMessage, res: ServerResponse, target: Target): void {
    if (!this.#authorized(req, res)) return;
    if (req.method !== 'GET' || target.path !== '/v1/models/pricing')
      return sendJson(res, 404, { detail: `No route ${req.method} ${target.path} on ${API_HOST}` });
    sendJson(res, 200, pricingAnswer(target.query, this.#deps.prices));
  }

  async #rest(req: IncomingMessage, res: ServerResponse, target: Target, base: string): Promise<void> {
    if (!this.#authorized(req, res)) return;
    const multipart = target.path === '/storage/upload/initiate-multipart';
    if (req.method !== 'POST' || (target.path !== '/storage/upload/initiate' && !multipart)) {
      return sendJson(res, 404, { detail: `No route ${req.method} ${target.path} on ${REST_HOST}` });
    }
    const fault = this.#requestFault(res, 'upload', `initiate#${this.#uploadSeq++}`);
    if (fault === 'answered') return;
    const input = await this.#readJson(req, res);
    if (input === NO_INPUT) return;
    const fields = (typeof input === 'object' && input !== null ? input : {}) as Record<string, unknown>;
    const contentType = typeof fields['content_type'] === 'string' ? fields['content_type'] : 'application/octet-stream';
    const fileName = typeof fields['file_name'] === 'string' ? fields['file_name'] : 'upload.bin';
    const { token, name } = this.#deps.files.initiate(fileName, contentType, multipart);
    this.#deps.stats.gauge('uploadsInProgress', 1);
    answer(res, fault, 200, {
      upload_url: `${base}/${MEDIA_HOST}/${multipart ? 'multipart' : 'upload'}/${token}`,
      file_url: `${base}/${MEDIA_HOST}/files/emulated/${name}`,
    });
  }

  async #media(req: IncomingMessage, res: ServerResponse, target: Target, base: string): Promise<void> {
    const { files, stats } = this.#deps;
    const [kind, token, part] = target.path.split('/').filter(Boolean);
    if ((req.method === 'GET' || req.method === 'HEAD') && kind === 'files') {
      stats.count('fileReads');
      const stored = files.get(target.path);
      // Expired or never stored: fal's CDN answers 404 (HEAD included, without a body).
      if (!stored) return sendJson(res, 404, { detail: 'File not found' });
      res.writeHead(200, { 'content-type': stored.contentType, 'content-length': stored.bytes.length });
      // Node sends no body for a HEAD.
      res.end(stored.bytes);
      return;
    }
    if (req.method === 'PUT' && kind === 'upload' && token) {
      const bytes = await readBody(req, UPLOAD_LIMIT);
      if (!files.complete(token, bytes)) return sendJson(res, 404, { detail: 'Unknown or used upload URL' });
      stats.count('uploads');
      stats.count('uploadedBytes', bytes.length);
      stats.gauge('uploadsInProgress', -1);
      stats.gauge('storedFiles', 1);
      res.writeHead(200).end();
      return;
    }
    if (kind === 'multipart' && token) {
      if (req.method === 'PUT' && part && /^\d+$/.test(part)) {
        const bytes = await readBody(req, UPLOAD_LIMIT);
        if (!files.putPart(token, Number(part), bytes)) return sendJson(res, 404, { detail: 'Unknown multipart upload' });
        return sendJson(res, 200, { partNumber: Number(part), etag: createHash('md5').update(bytes).digest('hex') });
      }
      if (req.method === 'POST' && part === 'complete') {
        const name = files.completeMultipart(token);
        if (!name) return sendJson(res, 404, { detail: 'Unknown multipart upload' });
        stats.count('uploads');
        stats.count('uploadedBytes', files.get(`/files/emulated/${name}`)?.bytes.length ?? 0);
        stats.gauge('uploadsInProgress', -1);
        stats.gauge('storedFiles', 1);
        return sendJson(res, 200, { file_url: `${base}/${MEDIA_HOST}/files/emulated/${name}` });
      }
    }
    return sendJson(res, 404, { detail: `No route ${req.method} ${target.path}` });
  }

  async #admin(req: IncomingMessage, res: ServerResponse, target: Target): Promise<void> {
    const action = target.path.replace(/^\//, '');
    const body = req.method === 'POST' ? await this.#readJson(req, res) : {};
    if (body === NO_INPUT) return;
    try {
      const answer = this.#deps.onAdmin(`${req.method} ${action}`, (body ?? {}) as Record<string, unknown>);
      if (answer === undefined) return sendJson(res, 404, { detail: `Unknown emulator admin route ${req.method} /_emulator/${action}` });
      sendJson(res, 200, answer);
    } catch (error) {
      sendJson(res, 400, { detail: (error as Error).message });
    }
  }

  async #readJson(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const raw = await readBody(req, JSON_LIMIT);
    if (raw.length === 0) return {};
    try {
      return JSON.parse(raw.toString('utf8')) as unknown;
    } catch (error) {
      sendJson(res, 422, { detail: [{ type: 'json_invalid', loc: ['body'], msg: `JSON decode error: ${(error as Error).message}`, input: {} }] });
      return NO_INPUT;
    }
  }

  /**
   * The model's view of an image reference; files uploaded here are looked up by their bytes. A
   * storage URL whose file expired cannot be downloaded: the model fails to load it (a 422), as on fal.
   */
  resolveImage = (url: string): ReturnType<typeof resolveImageReference> => {
    const parsed = URL.canParse(url) ? new URL(url) : undefined;
    if (parsed && this.#deps.files.isGone(parsed)) return { ok: false, reason: `could not download ${url} (404: the file expired or was never stored)` };
    return resolveImageReference(url, (stored) => this.#deps.files.lookupUrl(stored)?.bytes);
  };

  /** Expires every stored file, as fal's retention does: their URLs answer 404 from now on. */
  expireFiles(): number {
    const count = this.#deps.files.expireAll();
    this.#deps.stats.expired(count);
    return count;
  }
}

/** Answers, unless a `drop`, `truncate` or `slow` fault was drawn for this request: then it cuts or delays the answer. */
function answer(res: ServerResponse, fault: RequestFault | undefined, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (fault?.kind === 'slow') {
    const timer = setTimeout(() => {
      if (!res.destroyed) sendJson(res, status, body, headers);
    }, SLOW_ANSWER_MS);
    res.once('close', () => clearTimeout(timer));
  } else if (fault?.kind === 'drop') res.socket?.destroy();
  else if (fault?.kind === 'truncate') sendTruncated(res, status, body, headers);
  else sendJson(res, status, body, headers);
}

const NO_INPUT = Symbol('no input');

const LOCKED_DETAIL = 'User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.';

const SERVER_ERRORS: Record<'500' | '502' | '503' | '504', [string, string]> = {
  '500': ['internal_error', 'Internal server error'],
  '502': ['runner_incomplete_response', 'Runner returned an incomplete response'],
  '503': ['runner_scheduling_failure', 'Could not schedule a runner for the request'],
  '504': ['request_timeout', 'Request timed out'],
};

interface RequestUrls {
  response_url: string;
  status_url: string;
  cancel_url: string;
}

function requestUrls(base: string, endpoint: string, id: string): RequestUrls {
  const response = `${base}/${QUEUE_HOST}/${endpoint}/requests/${id}`;
  return { response_url: response, status_url: `${response}/status`, cancel_url: `${response}/cancel` };
}

export function fingerprintOf(endpoint: string, input: unknown): string {
  return createHash('sha256')
    .update(canonicalJson([endpoint, input]))
    .digest('hex')
    .slice(0, 32);
}

function emulatedLogs(request: EmulatedRequest): Array<Record<string, string>> {
  const at = (ms: number | undefined): string => new Date(ms ?? Date.now()).toISOString();
  const logs = [{ message: `Running ${request.endpoint}`, level: 'INFO', source: 'USER', timestamp: at(request.startedAt) }];
  if (request.state === 'COMPLETED') logs.push({ message: 'Done', level: 'INFO', source: 'USER', timestamp: at(request.completedAt) });
  return logs;
}
