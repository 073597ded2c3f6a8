import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, redactUrl, resolveConfig, secretsOf } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

describe('resolveConfig', () => {
  it('takes defaults, then the environment, then flags', () => {
    const config = resolveConfig({ REDIS_URL: 'redis://h:1/2', FAL_KEY: 'k', FALBATCH_PREFIX: 'env' }, { prefix: 'flag', concurrency: 3 });
    expect(config).toMatchObject({ redisUrl: 'redis://h:1/2', falKey: 'k', prefix: 'flag', concurrency: 3, attempts: DEFAULT_CONFIG.attempts });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('builds the key from FAL_KEY_ID and FAL_KEY_SECRET when FAL_KEY is absent', () => {
    expect(resolveConfig({ FAL_KEY_ID: 'id', FAL_KEY_SECRET: 'secret' }).falKey).toBe('id:secret');
  });

  it.each([
    [{ concurrency: 0 }, 'Expected --concurrency to be an integer from 1 to 10000, got 0'],
    [{ concurrency: 2.5 }, 'Expected --concurrency to be an integer from 1 to 10000, got 2.5'],
    [{ prefix: 'a b' }, 'Expected --prefix to be 1-64 letters'],
    [{ endpoint: 'llava' }, 'Expected --endpoint to be a fal endpoint id like fal-ai/llava-next, got "llava"'],
    [{ redisUrl: 'http://x' }, 'Expected REDIS_URL to start with redis:// or rediss://'],
    [{ startTimeoutSeconds: 1 }, "more than 1 second (fal's minimum)"],
    [{ maxPromptChars: 0 }, 'Expected --max-prompt-chars to be an integer from 1 to 10000000, got 0'],
    [{ maxRecordBytes: 100 }, 'Expected --max-record-bytes to be an integer from 1024 to 536870912, got 100'],
    [{ maxInlineImageBytes: 1.5 }, 'Expected --max-image-bytes to be an integer from 1 to 1073741824, got 1.5'],
    [{ encoding: 'klingon' }, 'Expected --encoding to be a text encoding such as utf-8, latin1, windows-1252 or utf-16le, got "klingon"'],
    [{ encoding: 'iso-2022-jp' }, 'iso-2022-jp'],
  ])('rejects %o', (overrides, message) => {
    expect(() => resolveConfig({}, overrides)).toThrow(ConfigError);
    expect(() => resolveConfig({}, overrides)).toThrow(message);
  });

  it('limits manifest input by default: 20,000-character prompts, 16 MiB records, 10 MiB inline images, UTF-8', () => {
    expect(resolveConfig({})).toMatchObject({
      maxPromptChars: 20_000,
      maxRecordBytes: 16 * 1024 * 1024,
      maxInlineImageBytes: 10 * 1024 * 1024,
      encoding: 'utf-8',
    });
    expect(resolveConfig({}, { encoding: 'latin1', maxPromptChars: 100_000 })).toMatchObject({ encoding: 'latin1', maxPromptChars: 100_000 });
  });

  it('never prints a Redis password', () => {
    expect(redactUrl('redis://user:s3cret@host:6379/1')).toBe('redis://user:***@host:6379/1');
    expect(redactUrl('redis://host:6379/0?password=s3cret&db=1')).toBe('redis://host:6379/0?password=***&db=1');
    expect(secretsOf({ falKey: 'k-123', redisUrl: 'redis://host/0?password=s3cret' })).toEqual(['k-123', 's3cret']);
    expect(() => resolveConfig({ REDIS_URL: 'mysql://:s3cret@host' })).toThrow(/\*\*\*/);
  });
});
