// Loaded with `node --import` into a spawned falbatch: at exit, writes the path of every module
// the process loaded, ES modules (as resolved) and CommonJS ones (the require cache), one a line,
// to the file FALBATCH_MODULE_PROBE names. Plain JavaScript: the spawned node runs it as is.
import { writeFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';

const out = process.env['FALBATCH_MODULE_PROBE'];
// The hooks run on a thread of their own: they post each URL, read here at exit.
const { port1, port2 } = new MessageChannel();
register(
  `data:text/javascript,${encodeURIComponent(`
let port;
export function initialize(data) { port = data.port; }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  port.postMessage(resolved.url);
  return resolved;
}`)}`,
  { data: { port: port2 }, transferList: [port2] },
);
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  const loaded = new Set(Object.keys(cache));
  for (let message = receiveMessageOnPort(port1); message; message = receiveMessageOnPort(port1)) {
    const url = String(message.message);
    loaded.add(url.startsWith('file:') ? fileURLToPath(url) : url);
  }
  if (out) writeFileSync(out, [...loaded].join('\n'));
});
