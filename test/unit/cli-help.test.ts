import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';

async function help(args: string[]): Promise<string> {
  let out = '';
  const io = {
    stdout: (t: string) => void (out += t),
    stderr: (t: string) => void (out += t),
    env: {},
    signal: new AbortController().signal,
    interactive: false,
  };
  expect(await runCli(args, io)).toBe(0);
  return out;
}

describe('--help', () => {
  it('says at the top that a folder of images works as well as a CSV manifest', async () => {
    expect(await help(['--help'])).toMatch(/over a whole CSV manifest or\s+folder\s+of\s+images/);
  });
});
