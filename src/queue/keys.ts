/**
 * The Redis key layout: the one place that knows it. Every key of a queue, BullMQ's and ours,
 * carries the same hash tag `{<queue>}`, so all of them land in one Redis Cluster slot and
 * multi-key scripts keep working when a deployment moves to Cluster.
 *
 *   <prefix>:{<queue>}:<bullmq keys…>            BullMQ (wait, active, job hashes, …)
 *   <prefix>:{<queue>}:batches                   ZSET batch name → created (ms)
 *   <prefix>:{<queue>}:expiries                  ZSET batch name → when its keys expire (ms; +inf: kept for ever). Swept (queue/retention.ts):
 *                                                a name whose time has passed leaves both sets
 *   <prefix>:{<queue>}:ledger:<fingerprint>      STRING a paid answer (final outcome, status ok), reused across batches; PX: the retention
 *                                                of the batch that paid for it, extended by each batch that reuses it
 *   <prefix>:{<queue>}:ledger                    HASH the ledger of versions before retention (fingerprint → answer): read as a fallback,
 *                                                drained into ledger:<fingerprint> keys (on reuse, and by `prune --expired`)
 *   <prefix>:{<queue>}:paused                    STRING why the queue is paused (account-level fal error)
 *   <prefix>:{<queue>}:backlog                   ZSET batches with rows stored but not yet jobs, in serving order (queue/backlog.ts)
 *   <prefix>:{<queue>}:backlog:lock              STRING the process topping the queue up from the backlogs (PX)
 *   <prefix>:{<queue>}:max-waiting               STRING the queue's cap on waiting jobs (the last producer's --max-waiting)
 *   <prefix>:{<queue>}:concurrency               HASH the queue's in-flight cap (BullMQ's global concurrency) and why: mode auto|fixed,
 *                                                slots, target, reason, at, owner; PX: a lease its setter renews (worker/concurrency-control.ts)
 *   <prefix>:{<queue>}:concurrency:load          HASH auto worker id → what its requests do at fal now (running, waiting, in flight, when)
 *   <prefix>:{<queue>}:concurrency:leader        STRING the auto worker that learns the account's slots (PX lease)
 *   <prefix>:{<queue>}:concurrency:slots         STRING the slots last learned (PX a week): where the next run starts
 *   <prefix>:{<queue>}:inflight:<fingerprint>    STRING the row calling fal for this input right now (others wait)
 *   <prefix>:{<queue>}:request:<job id>          STRING the row's fal request: `submitting:<connection>` while a delivery submits, then `rid:<ms>:<id>`
 *   <prefix>:{<queue>}:upload:<store>:<identity> STRING fal storage URL of a local image's upload (PX: inside fal's retention);
 *                                                <store> is `fal`, or `b<hash>` of FAL_BASE_URL (an emulator's URLs are not fal's)
 *   <prefix>:{<queue>}:batch:<name>:meta         HASH settings and counters of the batch
 *   <prefix>:{<queue>}:batch:<name>:rows         LIST an entry per manifest row, in manifest order, a chunk packed per element (queue/batch-rows.ts)
 *   <prefix>:{<queue>}:batch:<name>:keys         HASH row key → fingerprint, for every row key enqueued ('' for a row without an id:
 *                                                its key is its fingerprint; queue/row-keys.ts)
 *   <prefix>:{<queue>}:batch:<name>:results      HASH row key → result (the source of truth for export)
 *   <prefix>:{<queue>}:batch:<name>:counts       HASH status → number of row keys ended so
 *   <prefix>:{<queue>}:batch:<name>:stats        HASH figures of the ended rows (sums, latency histograms, rate ring) for status
 *   <prefix>:{<queue>}:batch:<name>:backlog      LIST rows to call that are not jobs yet (compact entries, manifest order, a chunk packed per element)
 *   <prefix>:{<queue>}:batch:<name>:active       HASH job id → ms, rows calling fal now (an entry whose BullMQ job lock is gone is stale: pruned by status)
 *   <prefix>:{<queue>}:batch:<name>:enqueuing    STRING lease held while a producer writes the batch (`pruned` for 60 s after
 *                                                `prune --force` overrode a producer or rows in flight: they stop, saying why)
 *   <prefix>:{<queue>}:batch:<name>:…            the batch's data keys (BatchKeys.retained) share one PX, its retention, renewed
 *                                                whenever the batch is written to (queue/retention.ts); the enqueue run keys
 *                                                (rows:draft:<run>, ids:<run>, captions…:<run>) live 24 h at most
 *   <prefix>:{<queue>}-ticks:<bullmq keys…>      BullMQ queue of schedule ticks: one job scheduler per schedule (its
 *                                                definition in the template data), served by every `work` process
 *   <prefix>:{<queue>}:schedule:<name>:ticks     LIST the schedule's last tick records (JSON, newest first, bounded)
 */
export interface BatchKeys {
  meta: string;
  rows: string;
  keys: string;
  results: string;
  counts: string;
  /** Aggregates of the ended rows (see results/batch-figures.ts), kept as rows end. */
  stats: string;
  /** Rows calling fal right now: job id → when it began (ms). See ResultStore.inFlight. */
  active: string;
  /** Rows stored to call that are not jobs yet (see queue/backlog.ts). */
  backlog: string;
  enqueuing: string;
  /**
   * The batch's data keys: they live and die together, under the batch's retention (one PX for
   * all, renewed whenever the batch is written to: see queue/retention.ts). A new per-batch key
   * that outlives nothing else belongs here, or it never expires.
   */
  retained: readonly string[];
  /** Glob matching every key of the batch (names cannot hold glob characters or `:`). */
  pattern: string;
  /** Rows list being written by one enqueue run, renamed over `rows` when it completes. */
  rowsDraft(run: string): string;
  /** Ids seen by one enqueue run, to reject a repeated id. */
  idsSeen(run: string): string;
  /** Caption files the rows of one enqueue run would write, to find two images sharing one. */
  captionTargets(run: string): string;
  /** Lines of one enqueue run whose caption file another row's image would share: line → why. */
  captionClashes(run: string): string;
}

export interface KeyLayout {
  /** BullMQ `prefix` option. */
  readonly bullPrefix: string;
  /** BullMQ queue name (carries the hash tag). */
  readonly queueName: string;
  /** BullMQ queue of schedule ticks (same hash tag: one Cluster slot with the rows it enqueues). */
  readonly ticksQueueName: string;
  readonly batches: string;
  /** When each batch's keys expire (see queue/retention.ts). */
  readonly expiries: string;
  /** A paid answer, by row fingerprint (see results/result-store.ts). */
  ledger(fingerprint: string): string;
  /** The ledger hash of versions before retention: read as a fallback, drained. */
  readonly legacyLedger: string;
  readonly paused: string;
  /** BullMQ's own meta hash of the row queue (its `paused` field is the queue-wide pause): read, never written, by falbatch. */
  readonly queueMeta: string;
  /** A short-lived key workers write to learn whether a Redis out of memory accepts writes again. */
  readonly memoryProbe: string;
  /** Batches with rows in their backlog, in the order they are served (see queue/backlog.ts). */
  readonly backlog: string;
  /** Held by the process topping the queue up from the backlogs. */
  readonly backlogLock: string;
  /** The queue's cap on waiting jobs (the last producer's --max-waiting). */
  readonly maxWaiting: string;
  /** The in-flight cap of the queue and why: learned (--concurrency auto) or fixed (--global-concurrency); a lease. */
  readonly concurrency: string;
  /** What each auto worker's requests are doing at fal now: worker → running, waiting, in flight, when. */
  readonly falLoad: string;
  /** The auto worker that learns the account's slots for the queue (a lease). */
  readonly concurrencyLeader: string;
  /** The slots last learned for a fal account (a digest of its key), to start the next run from (kept a week). */
  learnedSlots(account: string): string;
  inflight(fingerprint: string): string;
  /** A row's fal request state, by job id (any delivery of the row reads it). */
  request(jobId: string): string;
  /** The cached upload of a local image's content (`sha256:<hex>[@<N>px]`) to one fal storage. */
  upload(store: string, identity: string): string;
  batch(name: string): BatchKeys;
  /** A schedule's last tick records (newest first). */
  scheduleTicks(name: string): string;
  /** BullMQ's hash for a job id. */
  job(jobId: string): string;
  /** BullMQ's lock of a job (`<job hash>:lock`): present while a live worker holds the job. */
  jobLock(jobId: string): string;
}

export const DEFAULT_QUEUE = 'jobs';

/** The namespace emulated runs (`--emulate`) use: never the one real runs use. */
export function emulatedPrefix(prefix: string): string {
  return prefix.endsWith('-emulated') ? prefix : `${prefix.slice(0, 55)}-emulated`;
}

/** The key layout of the emulated runs' namespace beside this one (same queue, same Cluster slot), or undefined when this is it. */
export function emulatedTwin(keys: KeyLayout): KeyLayout | undefined {
  const twin = emulatedPrefix(keys.bullPrefix);
  return twin === keys.bullPrefix ? undefined : createKeyLayout(twin, keys.queueName.slice(1, -1));
}

export function createKeyLayout(prefix: string, queue: string = DEFAULT_QUEUE): KeyLayout {
  const queueName = `{${queue}}`;
  const base = `${prefix}:${queueName}`;
  return {
    bullPrefix: prefix,
    queueName,
    ticksQueueName: `${queueName}-ticks`,
    batches: `${base}:batches`,
    expiries: `${base}:expiries`,
    ledger: (fingerprint) => `${base}:ledger:${fingerprint}`,
    legacyLedger: `${base}:ledger`,
    paused: `${base}:paused`,
    queueMeta: `${base}:meta`,
    memoryProbe: `${base}:memory-probe`,
    backlog: `${base}:backlog`,
    backlogLock: `${base}:backlog:lock`,
    maxWaiting: `${base}:max-waiting`,
    concurrency: `${base}:concurrency`,
    falLoad: `${base}:concurrency:load`,
    concurrencyLeader: `${base}:concurrency:leader`,
    learnedSlots: (account) => `${base}:concurrency:slots:${account}`,
    inflight: (fingerprint) => `${base}:inflight:${fingerprint}`,
    request: (jobId) => `${base}:request:${jobId}`,
    upload: (store, identity) => `${base}:upload:${store}:${identity}`,
    batch(name) {
      const at = `${base}:batch:${name}`;
      const data = {
        meta: `${at}:meta`,
        rows: `${at}:rows`,
        keys: `${at}:keys`,
        results: `${at}:results`,
        counts: `${at}:counts`,
        stats: `${at}:stats`,
        active: `${at}:active`,
        backlog: `${at}:backlog`,
      };
      return {
        ...data,
        retained: Object.values(data),
        pattern: `${at}:*`,
        enqueuing: `${at}:enqueuing`,
        rowsDraft: (run) => `${at}:rows:draft:${run}`,
        idsSeen: (run) => `${at}:ids:${run}`,
        captionTargets: (run) => `${at}:captions:${run}`,
        captionClashes: (run) => `${at}:caption-clashes:${run}`,
      };
    },
    scheduleTicks: (name) => `${base}:schedule:${name}:ticks`,
    job: (jobId) => `${base}:${jobId}`,
    jobLock: (jobId) => `${base}:${jobId}:lock`,
  };
}
