// The one-way layering of falbatch, checked in CI (`npm run layers`). Data flows
// manifest → queue → worker → fal → results; modules depend downwards only:
//
//   cli, index.ts                 the shell and the public API
//   run-batch.ts                  run = enqueue + work + wait + export
//   ops/, dashboard/, metrics/    what operators do and see
//   worker/                       one attempt of a row, BullMQ wiring
//   queue/, results/, context.ts  Redis: keys, enqueue, backlog, result store, exports
//   config.ts                     every option, its default and its check, composed from the layers below
//   manifest/, fal/, storage/     reading rows; calling fal; object stores (each takes its options as arguments)
//   base                          errors, time, log, load-dependency, http-server, close-within-grace
//
// The emulator stands aside: only the CLI's `emulator` command and `--emulate` start it.
/** @param {number} rank */
const layer = (rank) => LAYERS.filter((l) => l.rank > rank).map((l) => l.path);
const LAYERS = [
  { rank: 0, name: 'base', path: '^src/(errors|time|log|load-dependency|http-server|close-within-grace)\\.ts$' },
  { rank: 1, name: 'manifest-fal-storage', path: '^src/(manifest|fal|storage)/' },
  { rank: 1.5, name: 'config', path: '^src/config\\.ts$' },
  { rank: 2, name: 'queue-results', path: '^src/(queue|results)/|^src/context\\.ts$' },
  { rank: 3, name: 'worker', path: '^src/worker/' },
  { rank: 4, name: 'ops', path: '^src/(ops|dashboard|metrics)/' },
  { rank: 5, name: 'run-batch', path: '^src/run-batch\\.ts$' },
  { rank: 6, name: 'cli', path: '^src/cli/|^src/index\\.ts$' },
];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...LAYERS.filter((l) => l.rank < 6).map((l) => ({
      name: `${l.name}-imports-only-downwards`,
      comment: 'A module imports only from its own layer or those below it (see the layering at the top of this file).',
      severity: 'error',
      from: { path: l.path },
      to: { path: layer(l.rank) },
    })),
    {
      name: 'ops-not-worker',
      comment: 'Operations act on what Redis holds; a worker is their peer in another process, not a library of theirs.',
      severity: 'error',
      from: { path: '^src/(ops|dashboard)/' },
      to: { path: '^src/worker/' },
    },
    {
      name: 'emulator-only-from-cli',
      comment: 'Only the CLI (`falbatch emulator`, `--emulate`) starts the fal emulator; the library never does.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|emulator)/' },
      to: { path: '^src/emulator/' },
    },
    {
      name: 'emulator-stands-alone',
      comment: "The emulator plays fal: it may share base helpers, not falbatch's queue, worker or results.",
      severity: 'error',
      from: { path: '^src/emulator/' },
      to: { path: '^src/(cli|ops|dashboard|metrics|worker|queue|results|manifest|storage)/|^src/(run-batch|context|index)\\.ts$' },
    },
    {
      name: 'no-circular',
      comment:
        'Two modules that import each other are one concept in two files, or a layer upside down. ' +
        "A dynamic import() is a deliberate lazy edge (a CLI command loads its action when it runs), so it doesn't count.",
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, dependencyTypesNot: ['dynamic-import'], viaOnly: { dependencyTypesNot: ['dynamic-import'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    parser: 'swc',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
