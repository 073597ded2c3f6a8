import { describe, expect, it } from 'vitest';
import { logSettings } from '../../src/cli/shared-options.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger, type LogFormat } from '../../src/log.js';

const SECRET = 'fal-key-9c2e71d4';

function lines(format: LogFormat, color = false): string {
  let out = '';
  const log = createLogger({ format, color, level: 'info', secrets: [SECRET], write: (line) => (out += line) });
  log.debug('not shown');
  log.info(`calling with ${SECRET}`, { batch: 'b', error: `Key ${SECRET} refused`, nested: { deeper: [SECRET] } });
  log.warn('row failed');
  return out;
}

describe('log formats', () => {
  it('pretty on a terminal by default, text otherwise; an unknown format is refused', () => {
    expect(logSettings({}, true)).toEqual({ level: 'info', format: 'pretty' });
    expect(logSettings({}, false)).toEqual({ level: 'info', format: 'text' });
    expect(logSettings({ logFormat: 'json' }, true).format).toBe('json');
    expect(logSettings({ logFormat: 'text' }, true).format).toBe('text');
    expect(() => logSettings({ logFormat: 'yaml' })).toThrow(ConfigError);
  });

  it.each(['text', 'json', 'pretty'] as const)('%s: levels apply and secrets are redacted, in the message and in fields', (format) => {
    const out = lines(format);
    expect(out).not.toContain(SECRET);
    expect(out).not.toContain('not shown');
    expect(out).toContain('calling with ***');
    expect(out).toContain('Key *** refused');
    expect(out.trim().split('\n')).toHaveLength(2);
  });

  it.each(['text', 'json', 'pretty'] as const)('%s: a field without a value is left out, not written as undefined', (format) => {
    let out = '';
    createLogger({ format, level: 'info', write: (line) => (out += line) }).info('fal concurrency: trying 8', { slots: undefined, target: 8 });
    expect(out).toContain('8');
    expect(out).not.toContain('undefined');
    expect(out).not.toContain('slots');
  });

  it('pretty is one readable line per entry, in colour when asked', () => {
    expect(lines('pretty')).toMatch(/^\[\d\d:\d\d:\d\d\] INFO: calling with \*\*\* \{"batch":"b",.*\}\n\[\d\d:\d\d:\d\d\] WARN: row failed\n$/);
    const colored = lines('pretty', true);
    expect(colored).toContain('\u001b[');
    expect(colored).not.toContain(SECRET);
  });
});
