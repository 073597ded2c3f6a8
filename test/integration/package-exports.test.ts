import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/harness.js';

const run = promisify(execFile);

/** What a user's code can import from the package by name (the built dist/, as npm ships it). */
describe('package exports', () => {
  it("falbatch/emulator gives createFalEmulator, serving fal's queue protocol; falbatch itself stays free of it", async () => {
    const script = `
      import { createFalEmulator } from 'falbatch/emulator';
      import * as library from 'falbatch';
      const emulator = await createFalEmulator({ key: 'k', latency: '0' });
      try {
        const submitted = await fetch(emulator.url + '/queue.fal.run/fal-ai/llava-next', {
          method: 'POST', headers: { authorization: 'Key k', 'content-type': 'application/json' },
          body: JSON.stringify({ image_url: 'https://example.com/a.jpg', prompt: 'hi' }),
        });
        const body = await submitted.json();
        console.log(JSON.stringify({ status: submitted.status, requestId: typeof body.request_id, inLibrary: 'createFalEmulator' in library, accepted: emulator.stats().accepted }));
      } finally {
        await emulator.close();
      }`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
    expect(JSON.parse(stdout)).toEqual({ status: 200, requestId: 'string', inLibrary: false, accepted: 1 });
  });
});
