import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { RowEntry } from '../queue/batch-rows.js';
import type { AtomicFile } from './atomic-file.js';
import type { RowResult } from './row-result.js';

/**
 * Hugging Face `imagefolder` metadata: a `metadata.jsonl` in the images folder, one line per
 * captioned image, `{"file_name": "<path relative to that folder>", "text": "<caption>"}`, so that
 * `load_dataset("imagefolder", data_dir=<folder>)` loads images and captions as they are.
 */
export interface HfMetadataOptions {
  /**
   * Folder to write `metadata.jsonl` in; `file_name`s are relative to it, and images outside it are
   * left out. Default: the images folder of a folder batch, else the folder local images resolve
   * against (the manifest's folder, or `--files-root`).
   */
  folder?: string;
}

/** The name `imagefolder` looks for. */
export const HF_METADATA_FILE = 'metadata.jsonl';

export interface HfMetadataSummary {
  /** The metadata.jsonl written. */
  path: string;
  /** Lines written: ok rows with an answer and exactly one local image in the folder. */
  written: number;
  /** Rows left out, by why. */
  leftOut: {
    /** Not answered: failed, rejected or still pending. */
    notAnswered: number;
    /** Skipped at enqueue (e.g. their caption file existed): no answer in this batch. */
    skipped: number;
    /** Their image is a URL or a data URI, not a local file. */
    notLocal: number;
    /** Several images in one row: imagefolder metadata has one file per line. */
    severalImages: number;
    /** Their image is not inside the metadata's folder. */
    outsideFolder: number;
  };
}

/** The folder metadata.jsonl goes in (see HfMetadataOptions.folder). */
export async function hfMetadataFolder(batch: { manifest: string; filesRoot: string | undefined }, folder?: string): Promise<string> {
  if (folder !== undefined) return resolve(folder);
  const isFolder = await stat(batch.manifest).then(
    (info) => info.isDirectory(),
    () => false,
  );
  if (isFolder) return resolve(batch.manifest);
  return resolve(batch.filesRoot || dirname(batch.manifest));
}

export function hfMetadataPath(folder: string): string {
  return join(folder, HF_METADATA_FILE);
}

/** Writes metadata.jsonl lines for one row at a time, counting what it leaves out. */
export class HfMetadataWriter {
  readonly summary: HfMetadataSummary;
  readonly #file: AtomicFile;
  readonly #folder: string;
  readonly #filesRoot: string;

  /** `filesRoot`: what the rows' `files` are relative to (the batch meta's files root). */
  constructor(file: AtomicFile, folder: string, filesRoot: string) {
    this.#file = file;
    this.#folder = folder;
    this.#filesRoot = filesRoot;
    this.summary = { path: file.path, written: 0, leftOut: { notAnswered: 0, skipped: 0, notLocal: 0, severalImages: 0, outsideFolder: 0 } };
  }

  /** The line for a row, or undefined (counted) when it cannot have one. */
  line(entry: RowEntry, result: RowResult | undefined): string | undefined {
    const { leftOut } = this.summary;
    if (entry.skipped !== undefined) {
      leftOut.skipped++;
      return undefined;
    }
    if (entry.rejected !== undefined || result?.status !== 'ok' || result.output === undefined) {
      leftOut.notAnswered++;
      return undefined;
    }
    const files = entry.files ?? [];
    if (files.length === 0) {
      leftOut.notLocal++;
      return undefined;
    }
    if (files.length > 1) {
      leftOut.severalImages++;
      return undefined;
    }
    const fileName = relative(this.#folder, resolve(this.#filesRoot, files[0] as string));
    if (fileName === '' || fileName === '..' || fileName.startsWith(`..${sep}`) || isAbsolute(fileName)) {
      leftOut.outsideFolder++;
      return undefined;
    }
    this.summary.written++;
    return `${JSON.stringify({ file_name: fileName.split(sep).join('/'), text: result.output })}\n`;
  }

  async write(lines: string): Promise<void> {
    if (lines !== '') await this.#file.write(lines);
  }
}
