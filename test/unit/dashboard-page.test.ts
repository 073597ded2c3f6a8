import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { escapeHtml, renderBatchesPage } from '../../src/dashboard/batches-page.js';
import { withoutRemoteLinks } from '../../src/dashboard/bull-board.js';
import type { DashboardBatch } from '../../src/dashboard/dashboard-batches.js';
import { isLoopback } from '../../src/http-server.js';

const HOSTILE = `<script>alert("x")</script>&'`;

function batch(overrides: Partial<DashboardBatch> = {}): DashboardBatch {
  return {
    batch: 'b1',
    manifest: `/data/${HOSTILE}.csv`,
    endpoint: `acme/${HOSTILE}`,
    createdAt: Date.UTC(2024, 5, 1, 12),
    updatedAt: Date.UTC(2024, 5, 1, 12),
    rows: 10,
    rejected: 1,
    jobs: 8,
    ok: 5,
    failed: 1,
    pending: 2,
    enqueuing: false,
    finished: false,
    paused: HOSTILE,
    rowsPerMinute: 12.5,
    etaMs: 9600,
    latencyMs: { total: { count: 5, p50Ms: 800, p95Ms: 1500 }, queueWait: null, inference: { count: 5, p50Ms: 700, p95Ms: 1200 } },
    inferenceSeconds: 3.5,
    billedCalls: 6,
    reused: 0,
    partial: 0,
    cost: null,
    priceNote: HOSTILE,
    inFlight: 1,
    waiting: 1,
    cancelled: undefined,
    spend: null,
    ...overrides,
  } as DashboardBatch;
}

const OPTIONS = { prefix: HOSTILE, redis: 'redis://127.0.0.1:6379', queuesPath: '/queues', refreshSeconds: 5, retryToken: `t"${HOSTILE}`, now: 0 };

describe('the batches page', () => {
  it('escapes every value that comes from a manifest, a batch or fal', () => {
    const html = renderBatchesPage({ batches: [batch()], more: 3 }, { ...OPTIONS, retried: { batch: HOSTILE, requeued: 1, missing: 0 } });
    expect(html).not.toContain('<script');
    expect(html).not.toContain(HOSTILE);
    expect(html).toContain(escapeHtml(HOSTILE));
    expect(html).toContain('<meta http-equiv="refresh" content="5">');
    expect(html).toContain('Paused: ');
    expect(html).toContain('data-field="state">paused<');
    expect(html).toContain('<span data-field="pending">2</span> <small>1 in flight</small>');
    expect(html).toContain('… and 3 older batches');
    expect(html).toContain('<span data-field="ok">5</span>');
    expect(html).toContain('<span data-field="eta">9.6s</span>');
    expect(html).toContain('Retry 1 failed rows');
  });

  it('offers no retry without a token, and says there are no batches', () => {
    const html = renderBatchesPage({ batches: [batch({ paused: undefined })], more: 0 }, { ...OPTIONS, retryToken: undefined, refreshSeconds: 0 });
    expect(html).not.toContain('<form');
    expect(html).not.toContain('http-equiv="refresh"');
    expect(renderBatchesPage({ batches: [], more: 0 }, OPTIONS)).toContain('No batches in namespace');
    // A cancelled batch's failed rows are its cancelled ones: no retry button.
    const cancelled = renderBatchesPage({ batches: [batch({ cancelled: 'cancelled by an operator' })], more: 0 }, OPTIONS);
    expect(cancelled).toContain('data-field="state">cancelled<');
    expect(cancelled).toContain('Cancelled: cancelled by an operator');
    expect(cancelled).not.toContain('<form');
  });

  it('escapes the five HTML characters', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;&#60;/a&#62;');
  });
});

describe('isLoopback', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['app.localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.1.10', false],
    ['127.0.0.1.attacker.example', false],
    ['localhost.attacker.example', false],
    ['', false],
  ])('%s → %s', (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
  });
});

describe("Bull Board's page, served from falbatch alone", () => {
  it('drops links to other origins (its font CDN) and keeps its own', () => {
    const page = [
      '<head><link rel="icon" href="static/images/logo.svg">',
      '<link href="https://fonts.googleapis.com/css2?family=IBM+Plex+Sans&display=swap" rel="stylesheet">',
      "<link rel='preconnect' href='//fonts.gstatic.com' crossorigin>",
      '<LINK REL=stylesheet HREF=http://cdn.example/x.css>',
      '<link href="static/css/main.css" rel="stylesheet"></head>',
    ].join('\n');
    expect(withoutRemoteLinks(page)).toBe('<head><link rel="icon" href="static/images/logo.svg">\n<link href="static/css/main.css" rel="stylesheet"></head>');
  });

  it("leaves nothing of another origin in the page Bull Board's package ships", () => {
    const ui = dirname(createRequire(import.meta.url).resolve('@bull-board/ui/package.json'));
    const page = withoutRemoteLinks(readFileSync(join(ui, 'dist', 'index.ejs'), 'utf8'));
    expect(page).not.toMatch(/(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?\/\//i);
    expect(page).toContain('static/css/');
  });
});
