import { createHash } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A real, tiny PNG (2×2 pixels, coloured from `tag`, which is also kept in a tEXt chunk): different
 * tags give different bytes, the same tag the same bytes. `size` pads the text chunk so the file
 * has (at least) that many bytes, for size limits.
 */
export function pngBytes(tag: string, size = 0): Buffer {
  const [r = 0, g = 0, b = 0] = createHash('sha256').update(tag).digest();
  const header = Buffer.alloc(13);
  header.writeUInt32BE(2, 0);
  header.writeUInt32BE(2, 4);
  header.writeUInt8(8, 8); // bit depth
  header.writeUInt8(2, 9); // truecolour
  const row = Buffer.from([0, r, g, b, r, g, b]);
  const pixels = deflateSync(Buffer.concat([row, row]));
  const build = (text: string): Buffer =>
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', header),
      chunk('tEXt', Buffer.from(`Comment\0${text}`, 'latin1')),
      chunk('IDAT', pixels),
      chunk('IEND', Buffer.alloc(0)),
    ]);
  const plain = build(tag);
  return plain.length >= size ? plain : build(`${tag}${' '.repeat(size - plain.length)}`);
}

export function pngDataUri(tag: string, size = 0): string {
  return `data:image/png;base64,${pngBytes(tag, size).toString('base64')}`;
}
