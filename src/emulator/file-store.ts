import { randomUUID } from 'node:crypto';

export interface StoredFile {
  bytes: Buffer;
  contentType: string;
}

interface PendingUpload {
  name: string;
  contentType: string;
  parts: Map<number, Buffer> | undefined;
}

/** fal storage as the emulator keeps it: uploads by one-time token, files served back by path. */
export class FileStore {
  readonly #pending = new Map<string, PendingUpload>();
  readonly #files = new Map<string, StoredFile>();

  initiate(fileName: string, contentType: string, multipart: boolean): { token: string; name: string } {
    const token = randomUUID();
    const safeName = fileName.replace(/[^A-Za-z0-9._-]/g, '_').slice(-100) || 'file';
    const name = `${token.slice(0, 12)}_${safeName}`;
    this.#pending.set(token, { name, contentType, parts: multipart ? new Map() : undefined });
    return { token, name };
  }

  complete(token: string, bytes: Buffer): boolean {
    const pending = this.#pending.get(token);
    if (!pending || pending.parts) return false;
    this.#pending.delete(token);
    this.#files.set(pending.name, { bytes, contentType: pending.contentType });
    return true;
  }

  putPart(token: string, partNumber: number, bytes: Buffer): boolean {
    const pending = this.#pending.get(token);
    if (!pending?.parts) return false;
    pending.parts.set(partNumber, bytes);
    return true;
  }

  completeMultipart(token: string): string | undefined {
    const pending = this.#pending.get(token);
    if (!pending?.parts) return undefined;
    this.#pending.delete(token);
    const ordered = [...pending.parts.entries()].sort(([a], [b]) => a - b).map(([, bytes]) => bytes);
    this.#files.set(pending.name, { bytes: Buffer.concat(ordered), contentType: pending.contentType });
    return pending.name;
  }

  /** `path` as routed: `/files/emulated/<name>`. */
  get(path: string): StoredFile | undefined {
    const match = /^\/files\/emulated\/([^/]+)$/.exec(path);
    return match?.[1] ? this.#files.get(decodeURIComponent(match[1])) : undefined;
  }

  /** A file URL as a model receives it: the emulator's own URL or fal's media host form. */
  lookupUrl(url: URL): StoredFile | undefined {
    const match = /\/files\/emulated\/([^/]+)$/.exec(url.pathname);
    return match?.[1] ? this.#files.get(decodeURIComponent(match[1])) : undefined;
  }

  get count(): number {
    return this.#files.size;
  }
}
