/**
 * Ways a faithful fal server may differ from this emulator's defaults. Each is allowed by fal's
 * protocol as the client speaks it (the client accepts them all); a client that relies on the
 * defaults breaks on them. Tests run falbatch against each.
 */
export const QUIRKS = {
  /** Status answers 200 while a request is queued or running (the client accepts any 2xx). */
  'status-200': 'status answers 200 while queued or running, not 202',
  /** A failed job's COMPLETED status carries no `error`/`error_type`: only its result GET tells. */
  'no-completed-error': "a failed job's COMPLETED status says nothing of the failure",
  /** The status stream stays open after COMPLETED, with keep-alive comments. */
  'stream-stays-open': 'the status stream stays open after COMPLETED (keep-alive comments)',
  /** The status stream sends keep-alive comments only, never an event (a proxy that buffers SSE). */
  'stream-silent': 'the status stream sends only keep-alive comments',
  /** The status stream's first event is not JSON. */
  'stream-bad-event': "the status stream's first event is not JSON",
  /** No status stream at all: 404 (a router that does not carry SSE). */
  'no-stream': 'the status stream answers 404',
  /** Answers carry no `x-fal-request-id` header. */
  'no-request-id-header': 'answers carry no x-fal-request-id header',
  /** Input is validated at submit: an invalid input gets its 422 there, not from the result. */
  'validate-on-submit': 'invalid input is refused at submit (422)',
  /** Retry-After is sent as an HTTP date instead of seconds. */
  'retry-after-date': 'Retry-After is an HTTP date',
} as const;

export type Quirk = keyof typeof QUIRKS;

export function parseQuirk(text: string): Quirk {
  if (text in QUIRKS) return text as Quirk;
  throw new Error(`Unknown quirk "${text}"; quirks: ${Object.keys(QUIRKS).join(', ')}`);
}
