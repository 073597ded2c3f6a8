import { redactUrl, resolveConfig, secretsOf, type ResolvedConfig } from '../config.js';
import { openContext, type FalbatchContext } from '../context.js';
import { MissingCredentialsError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import type { CliIo } from './io.js';
import { logSettings, overridesFrom, type RawFlags } from './shared-options.js';

export interface SessionOptions {
  /** The command calls fal: it needs FAL_KEY (or FAL_BASE_URL, or --emulate). */
  callsFal?: boolean;
  /** --emulate: an in-process fal emulator (and a private Redis if none answers). */
  emulate?: boolean;
  /** More values the logs must never show (e.g. the dashboard's password). */
  secrets?: ReadonlyArray<string | undefined>;
  /** The command reports cost: ask fal's pricing API while Redis connects rather than after (see `Session.price`). */
  price?: boolean;
}

export interface Session {
  ctx: FalbatchContext;
  config: ResolvedConfig;
  log: Logger;
  /** Answers come from the emulator, not fal.ai. */
  emulated: boolean;
  /** Names what the command is doing ("enqueueing m.csv"): a stop forced after a signal says it. */
  step(what?: string): void;
  /**
   * The price of the configured endpoint (fal/pricing.ts `resolvePrice`: `--price`, else fal's
   * pricing API when there is a key), asked once; with `SessionOptions.price` the question went out
   * before Redis was connected, so its round trip overlaps the connection's.
   */
  price(): Promise<ResolvedPrice>;
}

type ResolvedPrice = Awaited<ReturnType<typeof import('../fal/pricing.js').resolvePrice>>;

/**
 * What every command starts with and ends with: configuration from the environment and the flags,
 * a logger that scrubs secrets, the emulator when asked, a connected context; all closed after
 * `body`, whatever happens in it.
 */
export async function withSession<T>(io: CliIo, flags: RawFlags, options: SessionOptions, body: (session: Session) => Promise<T>): Promise<T> {
  io.mark?.('started');
  let config = resolveConfig(io.env, overridesFrom(flags));
  const settings = logSettings(flags, io.interactive);
  const log = createLogger({ ...settings, color: io.interactive, secrets: [...secretsOf(config), ...(options.secrets ?? [])], write: io.stderr });
  // The emulator's code is loaded only for --emulate.
  const emulation = options.emulate ? await (await import('./emulate.js')).startEmulation(config, log) : undefined;
  try {
    if (emulation) config = resolveConfig(io.env, { ...overridesFrom(flags), ...emulation.overrides });
    else if (options.callsFal && config.falKey === undefined && config.falBaseUrl === undefined) throw new MissingCredentialsError();
    // What a stop forced after a signal names, unless the command says more.
    const redis = `Redis at ${redactUrl(config.redisUrl)}`;
    const step = (what?: string): void => io.stop?.waitingFor(what === undefined ? `waiting for ${redis}` : `${what} (${redis})`);
    const resolved = config;
    const asking = new AbortController();
    let priced: Promise<ResolvedPrice> | undefined;
    // Loaded only by commands that report cost (it brings fal's HTTP transport).
    const price = (): Promise<ResolvedPrice> =>
      (priced ??= import('../fal/pricing.js').then(({ resolvePrice }) => resolvePrice(resolved, resolved.endpoint, asking.signal)));
    if (options.price) void price().catch(() => undefined);
    io.stop?.grace(config.graceMs);
    io.stop?.waitingFor(`connecting to ${redis}`);
    const ctx = await openContext(config, { log }).catch((error: unknown) => {
      // Redis is not there: the answer to the price question is not wanted.
      asking.abort();
      throw error;
    });
    io.mark?.('connected');
    step();
    try {
      return await body({ ctx, config, log, emulated: emulation !== undefined, step, price });
    } finally {
      asking.abort();
      io.stop?.waitingFor(`closing the connection to ${redis}`);
      await ctx.close();
    }
  } finally {
    await emulation?.close();
  }
}
