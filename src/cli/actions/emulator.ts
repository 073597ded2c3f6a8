import { integerOption } from '../../config.js';
import { createFalEmulator, type FalEmulator } from '../../emulator/create-fal-emulator.js';
import { parseQuirk } from '../../emulator/quirks.js';
import { ConfigError, EXIT } from '../../errors.js';
import type { EmulatorFlags } from '../commands/emulator.js';
import type { CliIo } from '../io.js';

export async function emulatorAction(io: CliIo, exit: (code: number) => void, flags: EmulatorFlags): Promise<void> {
  let emulator: FalEmulator;
  try {
    emulator = await createFalEmulator({
      port: integerOption('--port', flags.port) ?? 0,
      host: flags.host ?? '127.0.0.1',
      runners: integerOption('--runners', flags.runners) ?? 2,
      latency: flags.latency ?? '300..900ms',
      seed: integerOption('--seed', flags.seed) ?? 1,
      faults: flags.fault ?? [],
      retryAfterSeconds: integerOption('--retry-after', flags.retryAfter) ?? 1,
      locked: flags.locked ?? false,
      quirks: (flags.quirk ?? []).map(parseQuirk),
      ...(flags.key !== undefined ? { key: flags.key } : {}),
    });
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError((error as Error).message);
  }
  io.stdout(`${emulator.url}\n`);
  io.stderr(`fal emulator listening; point falbatch at it with FAL_BASE_URL=${emulator.url}\nstats: ${emulator.url}/_emulator/stats — stop with Ctrl-C\n`);
  await new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    io.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await emulator.close();
  exit(EXIT.ok);
}
