import { resolveConfig, secretsOf, type ResolvedConfig } from '../config.js';
import { openContext, type FalbatchContext } from '../context.js';
import { MissingCredentialsError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { startEmulation } from './emulate.js';
import type { CliIo } from './io.js';
import { logSettings, overridesFrom, type RawFlags } from './shared-options.js';

export interface SessionOptions {
  /** The command calls fal: it needs FAL_KEY (or FAL_BASE_URL, or --emulate). */
  callsFal?: boolean;
  /** --emulate: an in-process fal emulator (and a private Redis if none answers). */
  emulate?: boolean;
}

export interface Session {
  ctx: FalbatchContext;
  config: ResolvedConfig;
  log: Logger;
  /** Answers come from the emulator, not fal.ai. */
  emulated: boolean;
}

/**
 * What every command starts with and ends with: configuration from the environment and the flags,
 * a logger that scrubs secrets, the emulator when asked, a connected context; all closed after
 * `body`, whatever happens in it.
 */
export async function withSession<T>(io: CliIo, flags: RawFlags, options: SessionOptions, body: (session: Session) => Promise<T>): Promise<T> {
  let config = resolveConfig(io.env, overridesFrom(flags));
  const log = createLogger({ ...logSettings(flags), secrets: secretsOf(config), write: io.stderr });
  const emulation = options.emulate ? await startEmulation(config, log) : undefined;
  try {
    if (emulation) config = resolveConfig(io.env, { ...overridesFrom(flags), ...emulation.overrides });
    else if (options.callsFal && config.falKey === undefined && config.falBaseUrl === undefined) throw new MissingCredentialsError();
    const ctx = await openContext(config, { log });
    try {
      return await body({ ctx, config, log, emulated: emulation !== undefined });
    } finally {
      await ctx.close();
    }
  } finally {
    await emulation?.close();
  }
}
