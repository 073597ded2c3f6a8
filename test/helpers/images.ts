/** Tiny byte strings that start like real images: enough for the emulator's decoder check. */
export function pngBytes(tag: string): Buffer {
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(tag)]);
}

export function pngDataUri(tag: string): string {
  return `data:image/png;base64,${pngBytes(tag).toString('base64')}`;
}
