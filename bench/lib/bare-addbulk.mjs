// The baseline of bench/enqueue.mjs: what a user writes with BullMQ alone (no validation, no
// dedup, no records for export): stream the CSV, addBulk the rows as jobs in chunks of 1,000.
// Usage: PREFIX=… REDIS_URL=… node bench/lib/bare-addbulk.mjs manifest.csv
import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

const connection = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: null });
const queue = new Queue('{jobs}', { connection, prefix: process.env.PREFIX });
let chunk = [];
let n = 0;
for await (const [image_url, prompt] of createReadStream(process.argv[2]).pipe(parse({ from_line: 2 }))) {
  chunk.push({ name: 'fal-ai/llava-next', data: { image_url, prompt }, opts: { jobId: `row-${n++}`, removeOnComplete: true } });
  if (chunk.length === 1000) {
    await queue.addBulk(chunk);
    chunk = [];
  }
}
if (chunk.length > 0) await queue.addBulk(chunk);
await queue.close();
connection.disconnect();
