/**
 * The Redis key layout: the one place that knows it. Every key of a queue, BullMQ's and ours,
 * carries the same hash tag `{<queue>}`, so all of them land in one Redis Cluster slot and
 * multi-key scripts keep working when a deployment moves to Cluster.
 *
 *   <prefix>:{<queue>}:<bullmq keys…>            BullMQ (wait, active, job hashes, …)
 *   <prefix>:{<queue>}:batches                   ZSET batch name → created (ms)
 *   <prefix>:{<queue>}:ledger                    HASH row fingerprint → final outcome (paid answers, reused across batches)
 *   <prefix>:{<queue>}:paused                    STRING why the queue is paused (account-level fal error)
 *   <prefix>:{<queue>}:inflight:<fingerprint>    STRING the row calling fal for this input right now (others wait)
 *   <prefix>:{<queue>}:request:<job id>          STRING the row's fal request: `submitting:<connection>` while a delivery submits, then `rid:<ms>:<id>`
 *   <prefix>:{<queue>}:upload:<store>:<identity> STRING fal storage URL of a local image's upload (PX: inside fal's retention);
 *                                                <store> is `fal`, or `b<hash>` of FAL_BASE_URL (an emulator's URLs are not fal's)
 *   <prefix>:{<queue>}:batch:<name>:meta         HASH settings and counters of the batch
 *   <prefix>:{<queue>}:batch:<name>:rows         LIST one entry per manifest row, in manifest order
 *   <prefix>:{<queue>}:batch:<name>:keys         HASH row key → fingerprint, for every row key enqueued
 *   <prefix>:{<queue>}:batch:<name>:results      HASH row key → result (the source of truth for export)
 *   <prefix>:{<queue>}:batch:<name>:counts       HASH status → number of row keys ended so
 *   <prefix>:{<queue>}:batch:<name>:stats        HASH figures of the ended rows (sums, latency histograms, rate ring) for status
 *   <prefix>:{<queue>}:batch:<name>:enqueuing    STRING lease held while a producer writes the batch
 */
export interface BatchKeys {
  meta: string;
  rows: string;
  keys: string;
  results: string;
  counts: string;
  /** Aggregates of the ended rows (see results/batch-figures.ts), kept as rows end. */
  stats: string;
  enqueuing: string;
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
  readonly batches: string;
  readonly ledger: string;
  readonly paused: string;
  inflight(fingerprint: string): string;
  /** A row's fal request state, by job id (any delivery of the row reads it). */
  request(jobId: string): string;
  /** The cached upload of a local image's content (`sha256:<hex>[@<N>px]`) to one fal storage. */
  upload(store: string, identity: string): string;
  batch(name: string): BatchKeys;
  /** BullMQ's hash for a job id. */
  job(jobId: string): string;
}

export const DEFAULT_QUEUE = 'jobs';

export function createKeyLayout(prefix: string, queue: string = DEFAULT_QUEUE): KeyLayout {
  const queueName = `{${queue}}`;
  const base = `${prefix}:${queueName}`;
  return {
    bullPrefix: prefix,
    queueName,
    batches: `${base}:batches`,
    ledger: `${base}:ledger`,
    paused: `${base}:paused`,
    inflight: (fingerprint) => `${base}:inflight:${fingerprint}`,
    request: (jobId) => `${base}:request:${jobId}`,
    upload: (store, identity) => `${base}:upload:${store}:${identity}`,
    batch(name) {
      const at = `${base}:batch:${name}`;
      return {
        meta: `${at}:meta`,
        rows: `${at}:rows`,
        keys: `${at}:keys`,
        results: `${at}:results`,
        counts: `${at}:counts`,
        stats: `${at}:stats`,
        enqueuing: `${at}:enqueuing`,
        rowsDraft: (run) => `${at}:rows:draft:${run}`,
        idsSeen: (run) => `${at}:ids:${run}`,
        captionTargets: (run) => `${at}:captions:${run}`,
        captionClashes: (run) => `${at}:caption-clashes:${run}`,
      };
    },
    job: (jobId) => `${base}:${jobId}`,
  };
}
