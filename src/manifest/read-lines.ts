import { TextDecoder } from 'node:util';
import { resolveEncoding } from './text-encoding.js';

/** Chunks of the file: a stream, or anything iterable. */
export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** Where a line stops being valid text in its encoding. */
export interface InvalidBytes {
  /** Canonical name of the encoding the line was read in. */
  encoding: string;
  /** The first byte of the first invalid sequence (UTF-8 only; other encodings say only that the line is invalid). */
  at: { byte: number; index: number; offset: number } | undefined;
}

/** One physical line of the file, without its line break. */
export interface Line {
  /** From 1. */
  number: number;
  /**
   * The line's text. Empty for a line over the limit; for a line with invalid bytes, the text with
   * replacement characters, good only for finding quotes (such a line is never a record).
   */
  text: string;
  /** Bytes the line takes in the file, its line break excluded. */
  bytes: number;
  /** The line is longer than maxLineBytes: its bytes were skipped, never held. */
  tooLong: boolean;
  /** The line has bytes that are not valid text in the encoding. */
  invalid: InvalidBytes | undefined;
  /**
   * For a line too long or with invalid bytes: the valid text it starts with (up to the first
   * invalid byte; of a line too long, within its first HEAD_BYTES), so that its first fields (its
   * id) can still be named. Undefined for the other lines.
   */
  head?: string;
}

/** Bytes kept of the start of a line too long, for its head. */
export const HEAD_BYTES = 4096;

export interface ReadLinesOptions {
  /** Encoding name (any WHATWG label); a byte order mark at the start of the file wins over it. */
  encoding: string;
  /** Longest line, in bytes, kept; a longer one comes out `tooLong`, without its text. */
  maxLineBytes: number;
}

const BYTE_ORDER_MARKS: Array<[bytes: number[], encoding: string]> = [
  [[0xef, 0xbb, 0xbf], 'utf-8'],
  [[0xff, 0xfe], 'utf-16le'],
  [[0xfe, 0xff], 'utf-16be'],
];

const LF = 0x0a;
const CR = 0x0d;

/** Index of the first byte of the first sequence that is not UTF-8, or -1. */
export function invalidUtf8At(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i] as number;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0;
      else if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90;
      else if (lead === 0xf4) high = 0x8f;
    } else return i;
    const second = bytes[i + 1];
    if (second === undefined || second < low || second > high) return i;
    for (let k = 2; k < length; k++) {
      const next = bytes[i + k];
      if (next === undefined || next < 0x80 || next > 0xbf) return i;
    }
    i += length;
  }
  return -1;
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The first `n` bytes of `parts` put end to end (a copy). */
function firstBytes(parts: readonly Uint8Array[], n: number): Uint8Array {
  const taken: Uint8Array[] = [];
  let length = 0;
  for (const part of parts) {
    if (length >= n) break;
    const piece = part.subarray(0, n - length);
    taken.push(piece);
    length += piece.length;
  }
  return concat(taken, length);
}

/**
 * Cuts bytes into lines on raw bytes, before decoding: in UTF-8 and the single- and double-byte
 * encodings, 0x0A and 0x0D are never part of another character (UTF-16 is cut on 16-bit code
 * units). So each byte is looked at once, lines keep exact byte offsets, and each line is decoded on
 * its own, strictly.
 */
class LineSplitter {
  readonly #encoding: string;
  readonly #width: 1 | 2;
  readonly #littleEndian: boolean;
  readonly #max: number;
  readonly #strict: TextDecoder;
  readonly #lenient: TextDecoder;
  /** The current line's bytes so far, while it is within the limit. */
  #parts: Uint8Array[] = [];
  #partsBytes = 0;
  /** The current line's length once it is over the limit (its bytes are dropped); -1 before. */
  #skipped = -1;
  /** The first HEAD_BYTES of the current line once it is over the limit. */
  #head: Uint8Array | undefined;
  /** The last chunk ended in \r: a \n starting the next one belongs to it. */
  #afterCr = false;
  /** UTF-16: the first byte of a code unit split between chunks. */
  #odd: Uint8Array | undefined;
  #number = 0;
  /** File offset of the next byte to cut. */
  #offset: number;
  /** File offset of the current line's first byte. */
  #lineStart: number;
  /** The chunk the next \n and \r positions below were found in (-1: none left; -2: not looked yet). */
  #searched: Uint8Array | undefined;
  #lf = -2;
  #cr = -2;

  constructor(encoding: string, maxLineBytes: number, offset: number) {
    this.#encoding = encoding;
    this.#width = encoding === 'utf-16le' || encoding === 'utf-16be' ? 2 : 1;
    this.#littleEndian = encoding === 'utf-16le';
    this.#max = maxLineBytes;
    this.#strict = new TextDecoder(encoding, { fatal: true, ignoreBOM: true });
    this.#lenient = new TextDecoder(encoding, { fatal: false, ignoreBOM: true });
    this.#offset = offset;
    this.#lineStart = offset;
  }

  #unit(bytes: Uint8Array, i: number): number {
    if (this.#width === 1) return bytes[i] as number;
    const a = bytes[i] as number;
    const b = bytes[i + 1] as number;
    return this.#littleEndian ? a | (b << 8) : (a << 8) | b;
  }

  #nextBreak(bytes: Uint8Array, from: number): number {
    if (this.#width === 1) {
      // Native searches, each remembered until passed: every byte is looked at about once, even
      // in a chunk with no \n (old Mac files) or no \r.
      if (this.#searched !== bytes) {
        this.#searched = bytes;
        this.#lf = -2;
        this.#cr = -2;
      }
      if (this.#lf === -2 || (this.#lf >= 0 && this.#lf < from)) this.#lf = bytes.indexOf(LF, from);
      if (this.#cr === -2 || (this.#cr >= 0 && this.#cr < from)) this.#cr = bytes.indexOf(CR, from);
      if (this.#lf < 0) return this.#cr;
      if (this.#cr < 0) return this.#lf;
      return Math.min(this.#lf, this.#cr);
    }
    for (let i = from; i + 1 < bytes.length; i += 2) {
      const unit = this.#unit(bytes, i);
      if (unit === LF || unit === CR) return i;
    }
    return -1;
  }

  push(chunk: Uint8Array, out: Line[]): void {
    let bytes = chunk;
    if (this.#width === 2) {
      if (this.#odd) bytes = concat([this.#odd, chunk], chunk.length + 1);
      this.#odd = bytes.length % 2 === 1 ? bytes.slice(bytes.length - 1) : undefined;
      if (this.#odd) bytes = bytes.subarray(0, bytes.length - 1);
    }
    const base = this.#offset;
    let start = 0;
    if (this.#afterCr && bytes.length > 0) {
      this.#afterCr = false;
      if (this.#unit(bytes, 0) === LF) {
        start = this.#width;
        this.#lineStart = base + start;
      }
    }
    for (;;) {
      const at = this.#nextBreak(bytes, start);
      if (at < 0) break;
      this.#endLine(bytes.subarray(start, at), out);
      let next = at + this.#width;
      if (this.#unit(bytes, at) === CR) {
        if (next >= bytes.length) this.#afterCr = true;
        else if (this.#unit(bytes, next) === LF) next += this.#width;
      }
      start = next;
      this.#lineStart = base + start;
    }
    this.#keep(bytes.subarray(start));
    this.#offset = base + bytes.length;
  }

  end(out: Line[]): void {
    // A UTF-16 file with an odd number of bytes: the last byte is part of the last line, and invalid.
    if (this.#odd) this.#keep(this.#odd);
    this.#odd = undefined;
    if (this.#skipped >= 0 || this.#partsBytes > 0) this.#endLine(new Uint8Array(0), out);
  }

  /** The rest of a chunk, part of a line that goes on: kept (copied: a source may reuse its buffers) or, past the limit, only counted. */
  #keep(rest: Uint8Array): void {
    if (rest.length === 0) return;
    if (this.#skipped >= 0) {
      this.#skipped += rest.length;
      return;
    }
    if (this.#partsBytes + rest.length > this.#max) {
      this.#skipped = this.#partsBytes + rest.length;
      this.#head = firstBytes([...this.#parts, rest], HEAD_BYTES);
      this.#parts = [];
      this.#partsBytes = 0;
      return;
    }
    this.#parts.push(rest.slice());
    this.#partsBytes += rest.length;
  }

  #endLine(piece: Uint8Array, out: Line[]): void {
    const number = ++this.#number;
    const length = (this.#skipped >= 0 ? this.#skipped : this.#partsBytes) + piece.length;
    const tooLong = this.#skipped >= 0 || length > this.#max;
    const start = !tooLong ? undefined : this.#skipped >= 0 ? (this.#head ?? new Uint8Array(0)) : firstBytes([...this.#parts, piece], HEAD_BYTES);
    const bytes = tooLong || this.#parts.length === 0 ? piece : concat([...this.#parts, piece], length);
    this.#parts = [];
    this.#partsBytes = 0;
    this.#skipped = -1;
    this.#head = undefined;
    if (start) {
      out.push({ number, text: '', bytes: length, tooLong: true, invalid: undefined, head: this.#validStart(start, true) });
      return;
    }
    try {
      out.push({ number, text: this.#strict.decode(bytes), bytes: length, tooLong: false, invalid: undefined });
    } catch {
      const index = this.#encoding === 'utf-8' ? invalidUtf8At(bytes) : -1;
      const at = index < 0 ? undefined : { byte: bytes[index] as number, index, offset: this.#lineStart + index };
      out.push({
        number,
        text: this.#lenient.decode(bytes),
        bytes: length,
        tooLong: false,
        invalid: { encoding: this.#encoding, at },
        head: this.#validStart(bytes, false),
      });
    }
  }

  /** The text `bytes` start with, up to their first invalid sequence (`cut`: they may end mid-character). */
  #validStart(bytes: Uint8Array, cut: boolean): string {
    if (this.#encoding === 'utf-8') {
      const index = invalidUtf8At(bytes);
      return this.#lenient.decode(index < 0 ? bytes : bytes.subarray(0, index));
    }
    const text = this.#lenient.decode(cut ? bytes.subarray(0, bytes.length - (bytes.length % this.#width)) : bytes);
    const bad = text.indexOf('\uFFFD');
    // A character cut at the end of a line too long decodes as one replacement character.
    return bad < 0 ? text : text.slice(0, bad);
  }
}

/**
 * Streams the physical lines of a file, numbered from 1: `\r\n`, `\n` and a lone `\r` each end a
 * line (a `\r\n` split between chunks included). Linear in the size of the file; holds at most one
 * line of up to maxLineBytes (plus a chunk). The encoding comes from a byte order mark (UTF-8,
 * UTF-16LE/BE; dropped), else from `encoding`.
 */
export async function* readLines(source: ByteSource, options: ReadLinesOptions): AsyncGenerator<Line> {
  const requested = resolveEncoding(options.encoding);
  const out: Line[] = [];
  let head: Uint8Array = new Uint8Array(0);
  let splitter: LineSplitter | undefined;
  const begin = (bytes: Uint8Array): LineSplitter => {
    const [bom, encoding] = BYTE_ORDER_MARKS.find(([mark]) => mark.every((byte, i) => bytes[i] === byte)) ?? [[], requested];
    const started = new LineSplitter(encoding, options.maxLineBytes, bom.length);
    started.push(bytes.subarray(bom.length), out);
    return started;
  };
  for await (const chunk of source) {
    if (splitter) splitter.push(chunk, out);
    else {
      // Enough bytes to recognise a byte order mark, however small the chunks.
      head = head.length === 0 ? chunk : concat([head, chunk], head.length + chunk.length);
      if (head.length < 3) continue;
      splitter = begin(head);
    }
    yield* out;
    out.length = 0;
  }
  splitter ??= begin(head);
  splitter.end(out);
  yield* out;
}
