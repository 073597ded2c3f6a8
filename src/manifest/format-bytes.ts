const KiB = 1024;
const MiB = 1024 * 1024;

/** `300 bytes`, `2.9 KiB`, `16.0 MiB`: a size for messages. */
export function formatBytes(bytes: number): string {
  if (bytes < KiB) return `${bytes} bytes`;
  if (bytes < MiB) return `${(bytes / KiB).toFixed(1)} KiB`;
  return `${(bytes / MiB).toFixed(1)} MiB`;
}
