import { existsSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { chromium } from 'playwright-core';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startDashboard, type DashboardHandle, type DashboardOptions } from '../../src/dashboard/start-dashboard.js';
import { ConfigError } from '../../src/errors.js';
import { getStatus, waitForBatch } from '../../src/ops/status.js';
import { enqueueManifest } from '../../src/queue/enqueue.js';
import { createHarness, runCliProcess, spawnCli, until, type Harness } from '../helpers/harness.js';

/** Debian's chromium (.ci/run installs it); CHROMIUM_PATH points elsewhere. */
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const NO_CHROMIUM = !existsSync(CHROMIUM);
const USER = 'ops';
const PASSWORD = 'dash-pw-3b9d71c0';
const HOSTILE = '<img src=x onerror=alert(1)>.csv';

/** GET with a Host header of our choosing (fetch does not let one set it). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpGet(url, { headers: { host } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.once('error', reject);
  });
}

/** A finished batch of `rows` rows, the first `failures` failing with a model error (422). */
async function finishedBatch(h: Harness, rows: number): Promise<string> {
  // A hostile manifest name: the page must show it as text.
  const manifest = h.file(
    HOSTILE,
    ['id,image_url,prompt', ...Array.from({ length: rows }, (_, i) => `r${i},https://example.com/${i}.jpg,Describe <b>${i}</b> & more`)].join('\n'),
  );
  const { batch } = await enqueueManifest(h.ctx, { manifest, batch: 'cats-1' });
  const worker = await h.startWorker();
  await waitForBatch(h.ctx, batch);
  await worker.close();
  return batch;
}

async function dashboard(h: Harness, options: DashboardOptions): Promise<DashboardHandle> {
  const handle = await startDashboard(h.ctx, { port: 0, refreshSeconds: 0, ...options });
  onTestFinished(() => handle.close());
  return handle;
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

describe('dashboard', () => {
  it.skipIf(NO_CHROMIUM)(
    `shows batches and Bull Board in headless Chromium, behind basic auth${NO_CHROMIUM ? ` (skipped: no ${CHROMIUM}; apt-get install chromium)` : ''}`,
    async () => {
      const h = await createHarness({
        emulator: { faults: ['model-error=1x2'], latency: '5..20ms' },
        config: { price: { unit: 'second', amount: 0.5, currency: 'USD', source: 'flag' } },
      });
      const batch = await finishedBatch(h, 7);
      const status = await getStatus(h.ctx, batch);
      expect(status).toMatchObject({ ok: 5, failed: 2, pending: 0, finished: true });
      const board = await dashboard(h, { credentials: { user: USER, password: PASSWORD } });

      // No credentials, or a wrong password: 401, on the page, its API and Bull Board alike.
      for (const path of ['/', '/api/batches', '/queues', '/queues/api/queues']) {
        expect((await fetch(`${board.url}${path}`)).status).toBe(401);
        expect((await fetch(`${board.url}${path}`, { headers: { authorization: basic(USER, `${PASSWORD}x`) } })).status).toBe(401);
        expect((await fetch(`${board.url}${path}`, { headers: { authorization: basic(`${USER}x`, PASSWORD) } })).status).toBe(401);
      }
      const api = await fetch(`${board.url}/api/batches`, { headers: { authorization: basic(USER, PASSWORD) } });
      expect(api.status).toBe(200);
      const listed = (await api.json()) as { batches: Array<{ batch: string; ok: number; cost: { amount: number } | null }> };
      expect(listed.batches).toHaveLength(1);
      expect(listed.batches[0]).toMatchObject({ batch, ok: 5, failed: 2 });
      expect(listed.batches[0]?.cost?.amount).toBeCloseTo(status.inferenceSeconds * 0.5, 6);

      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
      onTestFinished(() => browser.close());
      const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
      const page = await context.newPage();
      // Every asset from the dashboard itself: nothing to a font CDN or any other third party.
      const requested: string[] = [];
      page.on('request', (request) => requested.push(request.url()));
      const consoleErrors: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') consoleErrors.push(`${message.text()} ${message.location().url}`);
      });
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });

      // falbatch's page: the batch, its counts and spend; the hostile batch name and prompts stay text.
      const response = await page.goto(`${board.url}/`);
      expect(response?.status()).toBe(200);
      const section = page.locator(`section[data-batch="${batch}"]`);
      await expect.poll(() => section.count()).toBe(1);
      const field = (name: string): Promise<string | null> => section.locator(`[data-field="${name}"]`).textContent();
      expect(await field('ok')).toBe('5');
      expect(await field('failed')).toBe('2');
      expect(await field('pending')).toBe('0');
      expect(await field('jobs')).toBe('7');
      expect(await field('state')).toBe('finished');
      expect(Number(await field('cost'))).toBeCloseTo(status.inferenceSeconds * 0.5, 4);
      expect(await section.locator('.sub').textContent()).toContain(HOSTILE);
      expect(await page.locator('img').count()).toBe(0);

      // Bull Board: the row queue and its counts (completed jobs are removed as rows end; failed ones kept).
      const counts = await h.ctx.queue.getJobCounts('completed', 'failed', 'waiting', 'active');
      expect(counts).toMatchObject({ failed: 2, waiting: 0, active: 0 });
      const queues = await page.goto(`${board.url}/queues`);
      expect(queues?.status()).toBe(200);
      await page.getByText(`rows (${h.prefix})`).first().waitFor({ timeout: 20_000 });
      const text = async (): Promise<string> => (await page.locator('body').innerText()).replace(/\s+/g, ' ');
      await expect.poll(text, { timeout: 20_000 }).toMatch(new RegExp(`rows \\(${h.prefix}\\).*failed 2`, 'i'));
      // Its failed jobs, one click away.
      await page.goto(`${board.url}/queues/queue/${encodeURIComponent(h.ctx.keys.queueName)}?status=failed`);
      await expect.poll(text, { timeout: 20_000 }).toMatch(/cats-1\/r[01]/);
      // Read-only: no action is offered, and the API refuses one.
      expect(await page.getByRole('button', { name: /retry/i }).count()).toBe(0);
      const action = await fetch(`${board.url}/queues/api/queues/${encodeURIComponent(h.ctx.keys.queueName)}/retry/failed`, {
        method: 'PUT',
        headers: { authorization: basic(USER, PASSWORD) },
      });
      expect(action.status).toBe(405);
      expect(await h.ctx.queue.getFailedCount()).toBe(2);
      expect(dialogs).toEqual([]);
      expect(requested.length).toBeGreaterThan(3);
      expect(requested.filter((url) => new URL(url).origin !== board.url)).toEqual([]);
      // Nothing failed to load, and the content security policy (own origin only) refused nothing the pages use.
      expect(consoleErrors).toEqual([]);
    },
  );

  it('refuses a non-loopback host without credentials, and serves loopback names only', async () => {
    const h = await createHarness();
    await expect(startDashboard(h.ctx, { host: '0.0.0.0', port: 0 })).rejects.toThrow(ConfigError);
    await expect(startDashboard(h.ctx, { host: '0.0.0.0', port: 0 })).rejects.toThrow(/without credentials.*FALBATCH_DASHBOARD_USER/);
    await expect(startDashboard(h.ctx, { host: '127.0.0.1', port: 0, credentials: { user: USER, password: '' } })).rejects.toThrow(ConfigError);

    const board = await dashboard(h, {});
    const home = await fetch(`${board.url}/`);
    expect(home.status).toBe(200);
    // Browsers load nothing from another origin: every asset is the dashboard's own.
    for (const path of ['/', '/queues']) expect((await fetch(`${board.url}${path}`)).headers.get('content-security-policy')).toMatch(/^default-src 'self';/);
    expect(await getWithHost(`${board.url}/api/batches`, `localhost:${new URL(board.url).port}`)).toBe(200);
    // A page whose own name resolves to 127.0.0.1 (DNS rebinding) reads nothing.
    expect(await getWithHost(`${board.url}/`, `attacker.example:${new URL(board.url).port}`)).toBe(403);
    expect(await getWithHost(`${board.url}/queues`, 'attacker.example')).toBe(403);
    // Read-only by default: no retry route, and Bull Board refuses actions.
    expect((await fetch(`${board.url}/batches/x/retry`, { method: 'POST' })).status).toBe(404);
  });

  it("retries failed rows from the page only with --allow-retry and the page's token", async () => {
    const h = await createHarness({ emulator: { faults: ['model-error=1x2'], latency: '5..20ms' } });
    const batch = await finishedBatch(h, 4);
    const board = await dashboard(h, { allowRetry: true });
    const html = await (await fetch(`${board.url}/`)).text();
    const token = /name="token" value="([^"]+)"/.exec(html)?.[1];
    expect(token).toBeDefined();
    const action = `${board.url}/batches/${encodeURIComponent(batch)}/retry`;
    // A form posted from elsewhere has no token.
    expect((await fetch(action, { method: 'POST', body: new URLSearchParams({ token: 'forged' }), redirect: 'manual' })).status).toBe(403);
    expect((await getStatus(h.ctx, batch)).failed).toBe(2);
    const retried = await fetch(action, { method: 'POST', body: new URLSearchParams({ token: token ?? '' }), redirect: 'manual' });
    expect(retried.status).toBe(303);
    expect((await getStatus(h.ctx, batch)).failed).toBe(0);
    const after = await (await fetch(new URL(retried.headers.get('location') ?? '/', board.url))).text();
    expect(after).toContain('2 failed rows of');
  });

  it('the CLI refuses 0.0.0.0 without credentials, serves it with them (from the environment), and never prints the password', async () => {
    const h = await createHarness();
    const refused = await runCliProcess(['dashboard', '--host', '0.0.0.0', '--port', '0'], h.env());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('without credentials');
    const half = await runCliProcess(['dashboard', '--port', '0'], h.env({ FALBATCH_DASHBOARD_USER: USER }));
    expect(half.code).toBe(1);
    expect(half.stderr).toContain('a dashboard user and a password together');

    // Served on every interface with credentials from the environment; SIGTERM closes it.
    const served = spawnCli(
      ['dashboard', '--host', '0.0.0.0', '--port', '0', '--log-level', 'debug'],
      h.env({ FALBATCH_DASHBOARD_USER: USER, FALBATCH_DASHBOARD_PASSWORD: PASSWORD }),
    );
    onTestFinished(() => {
      if (served.child.exitCode === null) served.child.kill('SIGKILL');
    });
    let url = '';
    await until('the dashboard URL on stdout', () => {
      url = /^(http:\/\/0\.0\.0\.0:\d+)$/m.exec(served.output())?.[1] ?? '';
      return url !== '';
    });
    const local = url.replace('0.0.0.0', '127.0.0.1');
    expect((await fetch(`${local}/api/batches`, { headers: { authorization: basic(USER, 'wrong') } })).status).toBe(401);
    expect((await fetch(`${local}/api/batches`, { headers: { authorization: basic(USER, PASSWORD) } })).status).toBe(200);
    served.child.kill('SIGTERM');
    expect(await served.exited).toBe(0);
    expect(served.output()).toContain('basic auth on');
    expect(served.output()).not.toContain(PASSWORD);
  });
});
