import { createRequire } from 'node:module';
import type * as BullMQ from 'bullmq';
import type * as IORedis from 'ioredis';

/*
 * BullMQ and ioredis are CommonJS packages. They are required here rather than imported: an ES
 * `import` of a CommonJS package makes Node parse the package's files for their export names first
 * (cjs-module-lexer, following every re-export: all of BullMQ's ~170 files), which cost 0.1–0.3 s
 * of every command's start-up for nothing (issue 19). A `require` is also synchronous, so BullMQ
 * is loaded the first time a queue, worker or job is made, not by every command that imports a
 * module mentioning it: `status` never loads it. Same instances as an `import` would give (one
 * module cache). Types come from `import type` (erased).
 */
const require = createRequire(import.meta.url);

/** BullMQ, loaded on the first call (Node's module cache keeps it). */
export function bullmq(): typeof BullMQ {
  return require('bullmq') as typeof BullMQ;
}

/** ioredis, loaded on the first call (Node's module cache keeps it). */
export function ioredis(): typeof IORedis {
  return require('ioredis') as typeof IORedis;
}
