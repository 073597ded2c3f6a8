/**
 * `falbatch/emulator`: the fal emulator for users testing their own pipelines against fal's
 * protocol without fal.ai. A subpath of its own, so the library (`falbatch`) never loads it.
 */
export { createFalEmulator } from './create-fal-emulator.js';
export type { FalEmulator, FalEmulatorOptions } from './create-fal-emulator.js';
export type { EmulatorStats } from './stats.js';
export type { FaultSpec } from './faults.js';
export type { Quirk } from './quirks.js';
export type { EmulatedPrice } from './pricing.js';
