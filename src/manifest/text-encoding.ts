import { TextDecoder } from 'node:util';
import { ConfigError } from '../errors.js';

/**
 * Encodings a manifest cannot be read in line by line: their meaning of a byte depends on escape
 * sequences earlier in the file, so a line cannot be decoded on its own.
 */
const STATEFUL = new Set(['iso-2022-jp']);

/**
 * The canonical name of a text encoding a manifest may be in (`latin1` → `windows-1252`, as the
 * WHATWG Encoding Standard maps it), or a ConfigError naming the flag.
 */
export function resolveEncoding(name: string): string {
  let canonical: string;
  try {
    canonical = new TextDecoder(name.trim()).encoding;
  } catch {
    throw new ConfigError(`Expected --encoding to be a text encoding such as utf-8, latin1, windows-1252 or utf-16le, got "${name}"`);
  }
  if (STATEFUL.has(canonical)) {
    throw new ConfigError(
      `--encoding ${name} is not supported (a line cannot be decoded on its own); convert the file: iconv -f ${name} -t utf-8 in.csv > out.csv`,
    );
  }
  return canonical;
}

/** How an encoding's name reads in messages. */
export function encodingLabel(canonical: string): string {
  return canonical === 'utf-8' ? 'UTF-8' : canonical;
}
