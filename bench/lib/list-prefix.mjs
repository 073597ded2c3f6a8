// Lists an s3:// prefix through falbatch's object store and does nothing else: how fast the store
// itself lists (the floor of any enqueue over it). Prints the count: `listed N`.
//   node bench/lib/list-prefix.mjs s3://bucket/prefix/      (AWS_* env as for falbatch)
import { createObjectStore } from '../../dist/storage/object-store.js';
import { parseS3Url } from '../../dist/storage/s3-url.js';

const { bucket, key } = parseS3Url(process.argv[2] ?? '');
const store = createObjectStore({ endpoint: process.env.AWS_ENDPOINT_URL });
let listed = 0;
for await (const page of store.list(bucket, key)) listed += page.length;
store.close();
process.stdout.write(`listed ${listed}\n`);
