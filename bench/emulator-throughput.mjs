// Figure: submit → status → result cycles per second the fal emulator sustains with zero latency.
// The emulator runs as its own process (`falbatch emulator`), as in use; the load comes from this
// process over keep-alive HTTP. Baseline, measured in the same run with the same load generator:
// a bare node:http server that answers every request with a fixed small JSON body (the most any
// HTTP server in Node can do here), so the ratio shows the emulator's own cost.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'node:http';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function call(url, method, body) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: { 'content-type': 'application/json', authorization: 'Key bench' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function load(base, seconds) {
  const input = (i) => JSON.stringify({ image_url: `https://example.com/${i}.jpg`, prompt: 'bench' });
  let cycles = 0;
  let n = 0;
  const deadline = Date.now() + seconds * 1000;
  const loop = async () => {
    while (Date.now() < deadline) {
      const submit = await call(`${base}/queue.fal.run/fal-ai/llava-next`, 'POST', input(n++));
      const id = JSON.parse(submit.body).request_id ?? 'x';
      for (;;) {
        const status = await call(`${base}/queue.fal.run/fal-ai/llava-next/requests/${id}/status?logs=0`, 'GET');
        if (status.status === 200) break;
      }
      const result = await call(`${base}/queue.fal.run/fal-ai/llava-next/requests/${id}`, 'GET');
      if (result.status !== 200) throw new Error(`result ${result.status}: ${result.body}`);
      cycles++;
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  return cycles / ((Date.now() - started) / 1000);
}

async function baseline() {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = '{"request_id":"00000000-0000-0000-0000-000000000000","status":"COMPLETED","output":"x"}';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
  return { url: `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`, close: () => new Promise((r) => server.close(r)) };
}

async function emulator() {
  const child = spawn(process.execPath, [`${ROOT}/bin/falbatch.js`, 'emulator', '--latency', '0', '--runners', '40', '--key', 'bench'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).split('\n')[0])));
  return {
    url,
    close: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
    },
  };
}

// The bare server runs in this process: move it to its own to be fair, so both servers get a core.
async function baselineProcess() {
  const code = `(${baseline.toString()})().then(s => { process.stdout.write(s.url + '\\n'); process.on('SIGTERM', () => s.close().then(() => process.exit(0))); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `import { createServer } from 'node:http'; ${code}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).split('\n')[0])));
  return {
    url,
    close: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
    },
  };
}

// Rounds alternate baseline and emulator, so drift in what else the machine runs hits both alike;
// the medians are reported.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const samples = { baseline: [], emulator: [] };
for (let round = 0; round < ROUNDS; round++) {
  /** @type {Array<[string, () => Promise<{ url: string, close: () => Promise<unknown> }>]>} */
  const servers = [
    ['baseline', baselineProcess],
    ['emulator', emulator],
  ];
  for (const [name, start] of servers) {
    const server = await start();
    await load(server.url, 1); // warm-up
    samples[name].push(Math.round(await load(server.url, SECONDS)));
    await server.close();
  }
}
agent.destroy();
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const emulatorRate = median(samples.emulator);
const baselineRate = median(samples.baseline);
console.log(
  JSON.stringify({
    figure: 'emulator-throughput',
    seconds: SECONDS,
    concurrency: CONCURRENCY,
    rounds: ROUNDS,
    cyclesPerSecond: emulatorRate,
    baselineCyclesPerSecond: baselineRate,
    ratio: Number((emulatorRate / baselineRate).toFixed(2)),
    samples,
    target: 2000,
    meetsTarget: emulatorRate >= 2000,
  }),
);
