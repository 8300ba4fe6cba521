/**
 * Errors with stable codes, in the style of `ws`'s `WS_ERR_*`: every failure a user, a file or a
 * peer can cause carries a `TTC_ERR_*` code. The CLI prints a coded error as its message alone
 * (no stack) and exits non-zero; an error without a code is a bug and gets its stack. Codes also
 * travel on the wire (a worker's refusal, a failed step) so the other side can act on them.
 * docs/errors.md lists every code; a test keeps that list and this table equal.
 */

export const ERROR_CODES = {
  TTC_ERR_USAGE: 'a wrong or missing command-line flag, or one this machine cannot honour (a --port in use, an --out that is a file)',
  TTC_ERR_CONFIG: 'an invalid run or sweep config: the field, the value and what was expected',
  TTC_ERR_RUN_DIR: 'a run or sweep directory that is missing, not what it should be, or already taken',
  TTC_ERR_SECRET: 'no shared secret, or an unusable one (TTC_SECRET, TTC_SECRET_FILE)',
  TTC_ERR_CONNECT_UNREACHABLE: 'the server did not answer (not up, wrong address)',
  TTC_ERR_CONNECT_AUTH: 'the handshake failed: the two sides do not share the secret',
  TTC_ERR_CONNECT_VERSION: 'the two sides speak different protocol versions',
  TTC_ERR_CONNECT_TIMEOUT: 'the handshake did not complete in time',
  TTC_ERR_CONNECT_PROTOCOL: 'the server answered something that is not the ttc handshake (or a TLS problem)',
  TTC_ERR_CONNECT_REFUSED: 'the server closed the connection during the handshake (e.g. 1013 try again later)',
  TTC_ERR_CONNECTION_LOST: 'the other side closed the connection or stopped answering',
  TTC_ERR_PROTOCOL: 'a frame that is malformed, too large, of an unknown type or fails its schema',
  TTC_ERR_UNEXPECTED_MESSAGE: 'a message the receiver does not accept in its current state (a protocol bug, named)',
  TTC_ERR_STALE_FORMATION: 'a message for a ring formation the receiver is not in',
  TTC_ERR_REFUSED: 'the coordinator refused a request (a bad submission, an unknown run, …), with the reason',
  TTC_ERR_COLLECTIVE: 'a collective operation failed: a peer died, stalled or broke the protocol (the culprit rank is named)',
  TTC_ERR_WORKER_FAILED: 'a worker failed, disconnected or stalled during a step of a run (it is named and dropped)',
  TTC_ERR_RUN: 'a run cannot continue (too few workers, parameters diverged, cancelled)',
  TTC_ERR_JOB: 'an evaluation job failed on every attempt',
  TTC_ERR_CHECKPOINT: 'a checkpoint that is missing, corrupt or does not match the model',
  TTC_ERR_DISK_FULL: 'a file could not be written: its filesystem is full or a quota is reached (the path, the space needed and the space free are named)',
  TTC_ERR_SAFETENSORS: 'a safetensors file that is malformed or inconsistent',
  TTC_ERR_COMPRESSED_FORMAT: 'a compressed model file that is malformed or does not match the model',
  TTC_ERR_COMPRESSION: 'a quantization, pruning or bit-packing request that cannot be carried out',
  TTC_ERR_CELL_SPEC: 'a compression cell that is incomplete or out of range',
  TTC_ERR_BUDGET: 'a budget that cannot be turned into steps',
  TTC_ERR_BACKEND: 'the requested compute backend is not available here (the reasons are listed)',
  TTC_ERR_MEMORY: "a run that does not fit the backend's memory or the machine's: a training step, a local cluster's workers, a coordinator's restart point (the fields that make it big, the estimate and the limit are named)",
  TTC_ERR_DATA: 'training or evaluation data that cannot be built or fetched (empty corpus, unreadable or malformed file, too few examples, a data cache that fails its checksums under --offline, a download apt refuses)',
  TTC_ERR_REPORT: 'report data that is inconsistent, or a plot that cannot be rendered',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
export const ERROR_CODE_LIST = Object.keys(ERROR_CODES) as ErrorCode[];

/** An expected failure with a stable code; subclasses name the area (ConfigError, CheckpointError, …). */
export class TtcError extends Error {
  override name = 'TtcError';
  constructor(readonly code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Whether `e` carries one of our codes (so the CLI prints its message, not a stack). */
export function isTtcError(e: unknown): e is Error & { code: ErrorCode } {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Error && typeof code === 'string' && code in ERROR_CODES;
}

/** A TtcError class of one area: a fixed name and code (`export const XError = codedError('XError', 'TTC_ERR_X')`). */
export function codedError(name: string, code: ErrorCode) {
  return class extends TtcError {
    override name = name;
    constructor(message: string, options?: ErrorOptions) {
      super(code, message, options);
    }
  };
}

/** An error's message on one line: JSON.parse quotes the text it failed on, newlines included. */
export function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
}

/** A wrong or missing command-line flag: the CLI prints its message (and the usage), not a stack. */
export const UsageError = codedError('UsageError', 'TTC_ERR_USAGE');
export type UsageError = InstanceType<typeof UsageError>;
/** A run or sweep directory that cannot be used as asked. */
export const RunDirError = codedError('RunDirError', 'TTC_ERR_RUN_DIR');
export type RunDirError = InstanceType<typeof RunDirError>;
/** Data that cannot be built. */
export const DataError = codedError('DataError', 'TTC_ERR_DATA');
export type DataError = InstanceType<typeof DataError>;
/** A run that does not fit the memory of the machine or of its backend (the estimate and the limit are named). */
export const MemoryError = codedError('MemoryError', 'TTC_ERR_MEMORY');
export type MemoryError = InstanceType<typeof MemoryError>;
