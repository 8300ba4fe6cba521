/**
 * Durable file writes, the one way every module writes a file that must never be seen half
 * written (checkpoints, caches, queues, reports, results): the bytes go to a temporary file in the
 * same directory, are fsynced, then renamed over the target, so a crash (or a full disk) leaves
 * either the old file or the new one, never a torn one, and the temporary is removed on failure.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/** Writes and fsyncs `file` in place (for files inside a directory that is itself renamed into place). */
export function writeFileSynced(file: string, data: Uint8Array | string): void {
  const fd = openSync(file, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to `file` atomically (temporary file in the same directory, fsync, rename). */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSynced(tmp, data);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** `value` as indented JSON (and a final newline), written atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}
