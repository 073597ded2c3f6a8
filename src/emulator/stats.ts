/** What the emulator saw: the evidence tests use for "no double charge" and "the cap held". */
export interface EmulatorStats {
  /** Submit requests received, whatever their answer. */
  submits: number;
  /** Submits by the fal queue priority they asked for (`X-Fal-Queue-Priority`: `normal`, `low`; `none` without the header). */
  submitsByPriority: Record<string, number>;
  /** Jobs created by submits (including those whose answer was then dropped). */
  accepted: number;
  /** Synchronous `fal.run` requests received. */
  runs: number;
  statusCalls: number;
  streamCalls: number;
  resultCalls: number;
  /** Jobs that reached COMPLETED, whatever the outcome. */
  completed: number;
  /** Completed jobs that ran inference (output or model error); server errors and cancels are not billed, as on fal. */
  billed: number;
  /** Billed jobs per input fingerprint (endpoint + input, canonical JSON, sha256). */
  billedByFingerprint: Record<string, number>;
  /** Billed jobs beyond the first for the same input: what a client paid twice. */
  duplicateBilled: number;
  inQueue: number;
  inProgress: number;
  maxInProgress: number;
  /** Accepted jobs whose result was not yet fetched (nor cancelled). */
  outstanding: number;
  maxOutstanding: number;
  /** Cancel requests that were accepted (CANCELLATION_REQUESTED). */
  cancels: number;
  /** Files stored through fal storage (single or multipart), and their bytes. */
  uploads: number;
  uploadedBytes: number;
  /** Uploads initiated whose bytes have not arrived yet, now and at most (what a client's upload concurrency reached). */
  uploadsInProgress: number;
  maxUploadsInProgress: number;
  /** Files in storage now (a gauge), and files expired (`expireFiles`). */
  storedFiles: number;
  expiredFiles: number;
  /** GET and HEAD requests on stored file URLs (a client checking whether a file is still served). */
  fileReads: number;
  /** Presigned object-store URLs (X-Amz-Signature) the runner downloaded, as fal downloads image URLs. */
  imageDownloads: number;
  /** Of those, the ones refused: expired (X-Amz-Date + X-Amz-Expires in the past: 403, as S3 answers) or failing. */
  refusedDownloads: number;
  /** Status stream connections open right now (a client that leaves them open leaks). */
  openStreams: number;
  /** Faults injected, by `kind@op` (request faults) or kind (job faults). */
  faults: Record<string, number>;
  authFailures: number;
}

export function emptyStats(): EmulatorStats {
  return {
    submits: 0,
    submitsByPriority: {},
    accepted: 0,
    runs: 0,
    statusCalls: 0,
    streamCalls: 0,
    resultCalls: 0,
    completed: 0,
    billed: 0,
    billedByFingerprint: {},
    duplicateBilled: 0,
    inQueue: 0,
    inProgress: 0,
    maxInProgress: 0,
    outstanding: 0,
    maxOutstanding: 0,
    cancels: 0,
    uploads: 0,
    uploadedBytes: 0,
    uploadsInProgress: 0,
    maxUploadsInProgress: 0,
    storedFiles: 0,
    expiredFiles: 0,
    fileReads: 0,
    imageDownloads: 0,
    refusedDownloads: 0,
    openStreams: 0,
    faults: {},
    authFailures: 0,
  };
}

/** Mutable counters behind the stats; `snapshot()` copies them for callers. */
export class StatsRecorder {
  #stats: EmulatorStats = emptyStats();
  /** Kept as a Map (an object with 100,000s of keys is slow); copied out by snapshot(). */
  #billed = new Map<string, number>();

  get live(): EmulatorStats {
    return this.#stats;
  }

  reset(keepGauges: { inQueue: number; inProgress: number; outstanding: number }): void {
    const { openStreams, uploadsInProgress, storedFiles } = this.#stats;
    this.#stats = {
      ...emptyStats(),
      ...keepGauges,
      openStreams,
      uploadsInProgress,
      storedFiles,
      maxInProgress: keepGauges.inProgress,
      maxOutstanding: keepGauges.outstanding,
      maxUploadsInProgress: uploadsInProgress,
    };
    this.#billed = new Map();
  }

  count(
    name:
      | 'submits'
      | 'accepted'
      | 'runs'
      | 'statusCalls'
      | 'streamCalls'
      | 'resultCalls'
      | 'cancels'
      | 'uploads'
      | 'uploadedBytes'
      | 'authFailures'
      | 'fileReads'
      | 'imageDownloads'
      | 'refusedDownloads',
    by = 1,
  ): void {
    this.#stats[name] += by;
  }

  /** Files expired: they leave storage. */
  expired(count: number): void {
    this.#stats.expiredFiles += count;
    this.#stats.storedFiles -= count;
  }

  /** A submit asked for this fal queue priority. */
  priority(level: string): void {
    this.#stats.submitsByPriority[level] = (this.#stats.submitsByPriority[level] ?? 0) + 1;
  }

  fault(label: string): void {
    this.#stats.faults[label] = (this.#stats.faults[label] ?? 0) + 1;
  }

  billed(fingerprint: string): void {
    const s = this.#stats;
    s.billed += 1;
    const previous = this.#billed.get(fingerprint) ?? 0;
    if (previous > 0) s.duplicateBilled += 1;
    this.#billed.set(fingerprint, previous + 1);
  }

  gauge(name: 'inQueue' | 'inProgress' | 'outstanding' | 'openStreams' | 'uploadsInProgress' | 'storedFiles', delta: number): void {
    const s = this.#stats;
    s[name] += delta;
    if (name === 'inProgress' && s.inProgress > s.maxInProgress) s.maxInProgress = s.inProgress;
    if (name === 'outstanding' && s.outstanding > s.maxOutstanding) s.maxOutstanding = s.outstanding;
    if (name === 'uploadsInProgress' && s.uploadsInProgress > s.maxUploadsInProgress) s.maxUploadsInProgress = s.uploadsInProgress;
  }

  completed(): void {
    this.#stats.completed += 1;
  }

  snapshot(): EmulatorStats {
    const s = this.#stats;
    return { ...s, billedByFingerprint: Object.fromEntries(this.#billed), faults: { ...s.faults }, submitsByPriority: { ...s.submitsByPriority } };
  }
}
