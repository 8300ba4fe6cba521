/**
 * Durable file writes, the one way every module writes a file that must never be seen half
 * written (checkpoints, caches, queues, reports, results): the bytes go to a temporary file in the
 * same directory, are fsynced, then renamed over the target, so a crash (or a full disk) leaves
 * either the old file or the new one, never a torn one, and the temporary is removed on failure.
 * A full disk is an expected failure, not a bug: it becomes a DiskFullError (TTC_ERR_DISK_FULL)
 * naming the file, the space it needed and the space left.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, fsyncSync, openSync, renameSync, rmSync, statfsSync, writeSync } from 'node:fs';
import path from 'node:path';
import { codedError } from './errors.ts';

/** A write refused because its filesystem is full. */
export const DiskFullError = codedError('DiskFullError', 'TTC_ERR_DISK_FULL');
export type DiskFullError = InstanceType<typeof DiskFullError>;

/** 812 → "812 B", 612_345 → "598.0 KiB", 3·2³⁰ → "3.0 GiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Bytes an unprivileged writer may still use on the filesystem that holds `p` (or its nearest existing parent). */
export function freeBytes(p: string): number | undefined {
  for (let dir = p; ; dir = path.dirname(dir)) {
    try {
      const s = statfsSync(dir);
      return s.bavail * s.bsize;
    } catch {
      if (dir === path.dirname(dir)) return undefined;
    }
  }
}

/**
 * Runs `write`, which writes about `bytes` bytes to `target`. When it fails, `cleanup` removes what
 * it left (a temporary that would keep the disk full); a full disk (ENOSPC, or a quota: EDQUOT)
 * then becomes a DiskFullError naming the target, the space needed and the space free.
 */
export function writingTo<T>(target: string, bytes: number, write: () => T, cleanup?: () => void): T {
  try {
    return write();
  } catch (e) {
    cleanup?.();
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw e;
    const free = freeBytes(target);
    throw new DiskFullError(`${code === 'EDQUOT' ? 'disk quota exceeded' : 'disk full'}: cannot write ${target} (${formatBytes(bytes)} needed, ${free === undefined ? 'unknown' : formatBytes(free)} free on its filesystem)`, { cause: e });
  }
}

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

/** What marks a writer's temporary: `<target>.tmp-<pid>-<random>`, renamed over `<target>` once whole. */
const TEMP_MARK = '.tmp-';

/** A temporary path, beside `target`, to write it under before the rename. */
export function tempPathFor(target: string): string {
  return `${target}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Whether a directory entry is a writer's temporary (of the entry named `of`, when given); such an entry is never read. */
export function isTempName(name: string, of?: string): boolean {
  return of === undefined ? name.includes(TEMP_MARK) : name.startsWith(`${of}${TEMP_MARK}`);
}

/** Writes `data` to `file` atomically (temporary file in the same directory, fsync, rename). */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  const tmp = tempPathFor(file);
  const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  writingTo(file, bytes, () => {
    writeFileSynced(tmp, data);
    renameSync(tmp, file);
  }, () => rmSync(tmp, { force: true }));
}

/** `value` as indented JSON (and a final newline), written atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Appends `text` to `file` (a log of records: a line cut short by a crash is skipped by its reader). */
export function appendText(file: string, text: string): void {
  writingTo(file, Buffer.byteLength(text), () => appendFileSync(file, text));
}
