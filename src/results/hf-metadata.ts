import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { RowEntry } from '../queue/batch-rows.js';
import { isS3Url } from '../storage/s3-url.js';
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
  /** Lines written: images with a caption (see HfMetadataWriter). */
  written: number;
  /** Rows left out, by why. */
  leftOut: {
    /** Not answered (failed, rejected or still pending), and no caption file either. */
    notAnswered: number;
    /** Skipped rows of a batch enqueued by a falbatch that did not keep their image (enqueue again). */
    skipped: number;
    /** Answered or skipped, but their caption file is not there (not written yet: `export --captions`). */
    noCaptionFile: number;
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
  if (folder !== undefined) return isS3Url(folder) ? (folder.endsWith('/') ? folder : `${folder}/`) : resolve(folder);
  // A prefix of images in a bucket: metadata.jsonl goes beside them, in the bucket.
  if (isS3Url(batch.manifest) && !/\.(csv|tsv|txt)(\.gz)?$/i.test(batch.manifest)) return batch.manifest.endsWith('/') ? batch.manifest : `${batch.manifest}/`;
  const isFolder = await stat(batch.manifest).then(
    (info) => info.isDirectory(),
    () => false,
  );
  if (isFolder) return resolve(batch.manifest);
  return resolve(batch.filesRoot || dirname(batch.manifest));
}

export function hfMetadataPath(folder: string): string {
  if (isS3Url(folder)) return `${folder.endsWith('/') ? folder : `${folder}/`}${HF_METADATA_FILE}`;
  return join(folder, HF_METADATA_FILE);
}

/**
 * Writes metadata.jsonl lines for one row at a time, counting what it leaves out.
 *
 * Where the batch has caption files (`captions`), metadata.jsonl is the same dataset as those
 * files: one line per image whose caption file exists, whatever made it (this batch's answer, an
 * earlier run's, a hand-written one; a skipped row's included), its `text` exactly what the file
 * holds. A LoRA trained from either is trained on the same pairs. Without caption files, one line
 * per ok row, its `text` the answer.
 */
export class HfMetadataWriter {
  readonly summary: HfMetadataSummary;
  readonly #file: AtomicFile;
  readonly #folder: string;
  readonly #filesRoot: string;
  readonly #captions: boolean;

  /** `filesRoot`: what the rows' `files` are relative to (the batch meta's files root). `captions`: the text comes from caption files. */
  constructor(file: AtomicFile, folder: string, filesRoot: string, captions: boolean) {
    this.#file = file;
    this.#folder = folder;
    this.#filesRoot = filesRoot;
    this.#captions = captions;
    this.summary = { path: file.path, written: 0, leftOut: { notAnswered: 0, skipped: 0, noCaptionFile: 0, notLocal: 0, severalImages: 0, outsideFolder: 0 } };
  }

  /** The line for a row, or undefined (counted) when it cannot have one. `caption`: its caption file's text, when it has one. */
  line(entry: RowEntry, result: RowResult | undefined, caption: string | undefined): string | undefined {
    const { leftOut } = this.summary;
    const answered = entry.skipped === undefined && entry.rejected === undefined && result?.status === 'ok' && result.output !== undefined;
    const files = entry.files ?? [];
    if (entry.skipped !== undefined && files.length === 0) {
      leftOut.skipped++;
      return undefined;
    }
    // A row neither answered nor skipped goes in only for a caption file it already has.
    const wanted = answered || entry.skipped !== undefined || (this.#captions && caption !== undefined);
    if (!wanted || entry.rejected !== undefined) {
      leftOut.notAnswered++;
      return undefined;
    }
    if (files.length === 0) {
      leftOut.notLocal++;
      return undefined;
    }
    if (files.length > 1) {
      leftOut.severalImages++;
      return undefined;
    }
    const file = files[0] as string;
    // An image in a bucket, under a metadata folder in the bucket: its key relative to the folder.
    const fileName =
      isS3Url(this.#folder) || isS3Url(file)
        ? file.startsWith(this.#folder)
          ? file.slice(this.#folder.length)
          : ''
        : relative(this.#folder, resolve(this.#filesRoot, file));
    if (fileName === '' || fileName === '..' || fileName.startsWith(`..${sep}`) || isAbsolute(fileName)) {
      leftOut.outsideFolder++;
      return undefined;
    }
    const text = this.#captions ? caption : result?.output;
    if (text === undefined) {
      leftOut.noCaptionFile++;
      return undefined;
    }
    this.summary.written++;
    return `${JSON.stringify({ file_name: fileName.split(sep).join('/'), text })}\n`;
  }

  async write(lines: string): Promise<void> {
    if (lines !== '') await this.#file.write(lines);
  }
}
