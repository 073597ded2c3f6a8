/**
 * Whether the fal server reports a failed job on its COMPLETED status (`error`, `error_type`), as
 * fal does. It decides what a result that cannot be read means:
 * - a server that reports errors (or one not yet seen to fail to) has billed a job whose COMPLETED
 *   status carries no error, and its answer exists: a failing read is the gateway's problem, and
 *   the request is read again, never submitted again;
 * - a server seen answering a job's own failure (a 4xx result) after a COMPLETED status that said
 *   nothing of it does not report errors there: for it, only a failure that stays the same over
 *   many reads (see RESULT_FAILURES_FOR_JOB_FAILURE) is taken for the job's own.
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
