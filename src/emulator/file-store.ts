import { randomUUID } from 'node:crypto';

/** The stored name in a file URL's path (`…/files/emulated/<name>`), whatever its host. */
function storedName(url: URL): string | undefined {
  const match = /\/files\/emulated\/([^/]+)$/.exec(url.pathname);
  if (!match?.[1]) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

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
  /** Names of files that expired: their URLs answer 404, and a model given one cannot load it. */
  readonly #expired = new Set<string>();

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
    const name = storedName(url);
    return name === undefined ? undefined : this.#files.get(name);
  }

  /**
   * True for a URL of this storage's form whose file is not here: expired, or never stored. fal's
   * CDN answers 404 for such a URL, and a model given it fails to load the image.
   */
  isGone(url: URL): boolean {
    const name = storedName(url);
    return name !== undefined && !this.#files.has(name);
  }

  /** Expires every stored file, as fal's retention does after its time: returns how many. */
  expireAll(): number {
    const count = this.#files.size;
    for (const name of this.#files.keys()) this.#expired.add(name);
    this.#files.clear();
    return count;
  }

  get count(): number {
    return this.#files.size;
  }

  get expiredCount(): number {
    return this.#expired.size;
  }

  /** Uploads initiated whose bytes have not arrived yet. */
  get pendingCount(): number {
    return this.#pending.size;
  }
}
