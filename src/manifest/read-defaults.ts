// What a manifest is read with unless told otherwise (config.ts composes these into its defaults).

/** The longest record read by default (`--max-record-bytes`): 16 MiB. */
export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
/** The manifest's encoding unless told (`--encoding`); a byte order mark wins over it. */
export const DEFAULT_ENCODING = 'utf-8';
