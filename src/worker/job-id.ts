import { jobIdFor } from '../manifest/row-key.js';
import type { RowJobData } from '../queue/row-job.js';

/** A row job's id: the one BullMQ gave it, else the one its row is enqueued under (see row-key.ts). */
export function jobIdOf(job: { id?: string | undefined; data: RowJobData }): string {
  return job.id ?? jobIdFor(job.data.b, job.data.k, job.data.f);
}
