import { hostname } from 'node:os';
import { resolveConfig } from '../config.js';
import type { FalbatchContext } from '../context.js';
import { ConfigError, FalbatchError } from '../errors.js';
import type { FalCaller } from '../fal/fal-caller.js';
import type { CheckedUploads } from '../manifest/upload-images.js';
import { resolvePrice } from '../fal/pricing.js';
import { displayUrl, fetchManifest, isManifestUrl, type FetchedManifest } from '../manifest/fetch-manifest.js';
import type { ManifestRow } from '../manifest/validate-row.js';
import { BatchBusyError, enqueueManifest, type EnqueueSummary } from '../queue/enqueue.js';
import type { Price } from '../fal/price.js';
import { forecastCost } from './estimate.js';
import { tickRecord, type ScheduleDefinition, type TickRecord } from './schedules.js';

/** What a tick's rows are forecast to cost, per call, for an endpoint (in the price's currency). */
export interface CallCost {
  amount: number;
  currency: string;
}

export interface Admission {
  /** EnqueueOptions.admit: how many of these rows (in manifest order), from the first, to add now. */
  admit(rows: readonly ManifestRow[]): Promise<number>;
  /** Rows admitted so far, which cap stopped admitting (if one did), and the forecast spend of the admitted rows. */
  readonly admitted: number;
  readonly capped: 'max-rows' | 'max-spend' | undefined;
  readonly spend: CallCost | undefined;
}

export interface AdmissionOptions {
  maxRows?: number | undefined;
  maxSpend?: number | undefined;
  /** The forecast cost of one call to the endpoint (throws when it cannot be forecast). Needed with maxSpend. */
  costPerCall?: (endpoint: string) => Promise<CallCost>;
  /** For each row, whether its answer is already paid for (an identical row in the ledger): free. */
  alreadyPaid?: (rows: readonly ManifestRow[]) => Promise<boolean[]>;
}

/**
 * The per-tick caps as an admission rule: rows are admitted in manifest order while fewer than
 * maxRows were, and while the forecast cost of the admitted rows stays within maxSpend (a row whose
 * answer is already paid for costs nothing). The first row refused stops the tick's admissions,
 * so a tick adds exactly the first rows of the manifest that fit, and the next tick goes on from there.
 */
export function createAdmission(options: AdmissionOptions): Admission {
  let admitted = 0;
  let spent = 0;
  let currency: string | undefined;
  let capped: Admission['capped'];
  return {
    get admitted() {
      return admitted;
    },
    get capped() {
      return capped;
    },
    get spend() {
      return options.maxSpend === undefined ? undefined : { amount: spent, currency: currency ?? 'USD' };
    },
    async admit(rows) {
      if (capped) return 0;
      let count = rows.length;
      if (options.maxRows !== undefined && admitted + count > options.maxRows) {
        count = Math.max(0, options.maxRows - admitted);
        capped = 'max-rows';
      }
      if (options.maxSpend !== undefined && count > 0) {
        const costPerCall = options.costPerCall;
        if (!costPerCall) throw new ConfigError('--max-spend needs a way to forecast the cost of a call');
        const paid = options.alreadyPaid ? await options.alreadyPaid(rows.slice(0, count)) : [];
        for (let i = 0; i < count; i++) {
          const row = rows[i] as ManifestRow;
          const cost = paid[i] ? { amount: 0, currency: currency ?? 'USD' } : await costPerCall(row.endpoint);
          if (currency !== undefined && cost.amount > 0 && cost.currency !== currency) {
            throw new ConfigError(`--max-spend: the rows' endpoints are priced in ${currency} and ${cost.currency}; give one --price for all`);
          }
          if (cost.amount > 0) currency = cost.currency;
          // A tiny tolerance: 10 calls at 0.1 fit in 1.0 despite binary fractions.
          if (spent + cost.amount > options.maxSpend * (1 + 1e-9)) {
            count = i;
            capped = 'max-spend';
            break;
          }
          spent += cost.amount;
        }
      }
      admitted += count;
      return count;
    },
  };
}

/**
 * The forecast cost of one call to an endpoint: the price per call, or the price per second times
 * the mean inference seconds per call measured over the namespace (ops/estimate.ts). Throws a
 * ConfigError saying why when there is no price, or no measure to apply a per-second price to.
 */
export async function forecastCallCost(ctx: FalbatchContext, price: Price | undefined, note: string | undefined, endpoint: string): Promise<CallCost> {
  if (!price)
    throw new ConfigError(
      `--max-spend needs a price for ${endpoint} to forecast what rows cost, and there is none (${note ?? 'no price'}): add --price 0.002/call (or …/s) to the schedule`,
    );
  if (price.unit === 'call') return { amount: price.amount, currency: price.currency };
  const forecast = await forecastCost(ctx, 1, price);
  if (forecast.secondsPerCall === undefined) {
    throw new ConfigError(
      `--max-spend with a price per second (${price.amount} ${price.currency}/s for ${endpoint}) needs the mean inference time of a call, and no call was measured in this namespace yet: ` +
        'give the schedule a price per call (--price 0.002/call), or run a batch first',
    );
  }
  return { amount: price.amount * forecast.secondsPerCall, currency: price.currency };
}

export interface RunTickOptions {
  /** When the tick was due (ms since the epoch). Default: now. */
  scheduledAt?: number;
  signal?: AbortSignal | undefined;
  /** For uploads of local images. Default: one made from the config. */
  fal?: FalCaller | undefined;
  /** The HTTP client for manifest URLs. Default: the global fetch. */
  fetch?: typeof fetch;
  /** Who runs it, for the record. Default: `host:pid`. */
  worker?: string;
  /** Cached upload URLs the process running the ticks checked already (see EnqueueOptions.checkedUploads). */
  checkedUploads?: CheckedUploads | undefined;
}

/**
 * One tick: reads the schedule's manifest (downloading a URL first, within its limits) and enqueues
 * it into the schedule's batch, admitting rows within the per-tick caps. Rows already in the batch
 * add nothing (an unchanged manifest costs nothing); edited rows are called again. Never throws for
 * the manifest's sake: an unreachable or invalid manifest, a cap that cannot be applied, or a batch
 * being enqueued by someone else is the tick's outcome, with the reason. The caller records it.
 */
export async function runScheduleTick(ctx: FalbatchContext, definition: ScheduleDefinition, options: RunTickOptions = {}): Promise<TickRecord> {
  const { clock } = ctx;
  const at = clock.now();
  const record = tickRecord({
    tick: options.scheduledAt ?? at,
    at,
    outcome: 'ok',
    batch: definition.batch,
    worker: options.worker ?? `${hostname()}:${process.pid}`,
  });
  const url = isManifestUrl(definition.manifest) ? definition.manifest : undefined;
  let fetched: FetchedManifest | undefined;
  let caps: Admission | undefined;
  try {
    // The schedule's manifest settings over this process's connection and credentials.
    const config = resolveConfig({}, { ...ctx.config, ...definition.settings });
    const tickCtx: FalbatchContext = { ...ctx, config };
    if (definition.maxRows !== undefined || definition.maxSpend !== undefined) {
      const prices = new Map<string, Promise<CallCost>>();
      const costPerCall = (endpoint: string): Promise<CallCost> => {
        let cost = prices.get(endpoint);
        if (!cost) {
          cost = resolvePrice(config, endpoint).then(({ price, note }) => forecastCallCost(tickCtx, price, note, endpoint));
          prices.set(endpoint, cost);
        }
        return cost;
      };
      // Without a price there is no spending cap to keep: refuse before reading anything.
      if (definition.maxSpend !== undefined) await costPerCall(config.endpoint);
      caps = createAdmission({
        maxRows: definition.maxRows,
        maxSpend: definition.maxSpend,
        costPerCall,
        alreadyPaid: async (rows) => (await ctx.store.ledgerMany(rows.map((row) => row.fingerprint))).map((entry) => entry !== undefined),
      });
    }
    if (url) fetched = await fetchManifest(url, { ...definition.fetch, signal: options.signal, ...(options.fetch ? { fetch: options.fetch } : {}) });
    const summary: EnqueueSummary = await enqueueManifest(tickCtx, {
      manifest: fetched?.path ?? definition.manifest,
      batch: definition.batch,
      prompt: definition.prompt,
      strict: definition.strict,
      ...(definition.retention !== undefined ? { retentionMs: definition.retention === 'forever' ? Number.POSITIVE_INFINITY : definition.retention } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      fal: options.fal,
      checkedUploads: options.checkedUploads,
      ...(caps ? { admit: (rows: readonly ManifestRow[]) => (caps as Admission).admit(rows) } : {}),
      ...(url ? { manifestLabel: displayUrl(url) } : {}),
    });
    Object.assign(record, {
      rows: summary.rows,
      added: summary.added,
      present: summary.present,
      rejected: summary.rejected,
      changed: summary.changedRows,
      deferred: summary.deferred,
    });
  } catch (error) {
    record.outcome = error instanceof BatchBusyError ? 'skipped' : 'failed';
    let reason = error instanceof FalbatchError ? error.message : `${(error as Error)?.name ?? 'Error'}: ${(error as Error)?.message ?? String(error)}`;
    if (options.signal?.aborted) reason = `interrupted: the work process stopped (${reason})`;
    // Messages about the downloaded copy name the URL instead.
    if (fetched && url) reason = reason.split(fetched.path).join(displayUrl(url));
    record.reason = ctx.scrub(reason);
  } finally {
    await fetched?.remove().catch(() => undefined);
  }
  if (caps?.capped) {
    record.capped = caps.capped;
    if (record.outcome === 'ok' && record.deferred > 0) {
      const cap = caps.capped === 'max-rows' ? `--max-rows ${definition.maxRows}` : `--max-spend ${definition.maxSpend}`;
      record.reason = `${cap} reached: ${record.deferred} new row${record.deferred === 1 ? '' : 's'} left for later ticks`;
    }
  }
  if (caps?.spend) record.spend = { amount: Math.round(caps.spend.amount * 1e6) / 1e6, currency: caps.spend.currency };
  record.ms = clock.now() - at;
  return record;
}
