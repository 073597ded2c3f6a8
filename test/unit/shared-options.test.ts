import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { overridesFrom, withManifestOptions, type RawFlags } from '../../src/cli/shared-options.js';
import { ConfigError } from '../../src/errors.js';

function manifestFlags(argv: string[]): RawFlags {
  let flags: RawFlags = {};
  const command = withManifestOptions(new Command('enqueue'))
    .exitOverride()
    .action((_manifest: string, parsed: RawFlags) => {
      flags = parsed;
    });
  command.parse(['m.csv', ...argv], { from: 'user' });
  return flags;
}

describe('manifest flags', () => {
  it('maps the manifest limits and the encoding to config', () => {
    const flags = manifestFlags(['--max-prompt-chars', '500', '--max-record-bytes', '2097152', '--max-image-bytes', '1000', '--encoding', 'latin1']);
    expect(overridesFrom(flags)).toMatchObject({ maxPromptChars: 500, maxRecordBytes: 2_097_152, maxInlineImageBytes: 1000, encoding: 'latin1' });
  });

  it('names the flag whose value is not a number', () => {
    expect(() => overridesFrom(manifestFlags(['--max-prompt-chars', 'many']))).toThrow(ConfigError);
    expect(() => overridesFrom(manifestFlags(['--max-prompt-chars', 'many']))).toThrow('Expected --max-prompt-chars to be an integer, got "many"');
  });
});

describe('--concurrency', () => {
  it('takes auto or a number; anything else is refused with a message that offers both', () => {
    expect(overridesFrom({ concurrency: 'auto' })).toMatchObject({ autoConcurrency: true });
    expect(overridesFrom({ concurrency: '12' })).toMatchObject({ concurrency: 12, autoConcurrency: false });
    for (const bad of ['lots', '0', '-3', '2.5']) {
      expect(() => overridesFrom({ concurrency: bad })).toThrow(ConfigError);
      expect(() => overridesFrom({ concurrency: bad })).toThrow(
        `Expected --concurrency to be auto (learn the account's fal concurrency, the default) or an integer ≥ 1, got "${bad}"`,
      );
    }
  });
});
