/**
 * Whether the fal server reports a failed job on its COMPLETED status (`error`, `error_type`), as
 * fal does. It decides what a result that cannot be read means (RESULT_FAILURES_FOR_JOB_FAILURE in
 * process-row.ts):
 * - `reported`: a COMPLETED status carried an error once. Then a COMPLETED status without error
 *   means the job ran and was billed, and a failing read is the gateway's problem: the request is
 *   read again, never submitted again;
 * - `not-reported`: a COMPLETED status said nothing, and the result was the job's own failure (a
 *   4xx). Such a server's failed jobs look completed: only a read that fails the same way many
 *   times is taken for the job's failure;
 * - `unknown`: neither seen yet (a batch without failures): the same, with a higher bar.
 * Learned per worker process from what the server answers.
 */
export type StatusErrorReporting = 'reported' | 'not-reported' | 'unknown';

export interface StatusErrorKnowledge {
  readonly current: StatusErrorReporting;
  /** A COMPLETED status carried an error: the server reports them. */
  sawStatusError(): void;
  /** A COMPLETED status without error was followed by the job's own failure on its result. */
  sawUnreportedFailure(): void;
}

export function createStatusErrorKnowledge(initial: StatusErrorReporting = 'unknown'): StatusErrorKnowledge {
  let current = initial;
  return {
    get current() {
      return current;
    },
    sawStatusError() {
      current = 'reported';
    },
    sawUnreportedFailure() {
      // Once a server has shown an error on a status, one unexplained 4xx does not undo that.
      if (current === 'unknown') current = 'not-reported';
    },
  };
}
