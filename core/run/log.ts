/** Plain line logger: timestamped lines on stderr, optionally mirrored to a run's log file. */
import { appendText, DiskFullError } from '../fs.ts';

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function createLogger(prefix = '', file?: string, quiet = false): Logger {
  let full = false;
  const line = (level: string, msg: string) => `${new Date().toISOString()} ${level}${prefix ? ` [${prefix}]` : ''} ${msg}`;
  const write = (level: string, msg: string) => {
    const text = line(level, msg);
    if (!quiet || level !== 'info') process.stderr.write(`${text}\n`);
    if (!file) return;
    try {
      appendText(file, `${text}\n`);
      full = false;
    } catch (e) {
      // A log line may come from any event handler: a full disk must not make it a crash. The file
      // only mirrors stderr; the next write that matters (a checkpoint, a metrics row) stops the run.
      if (!(e instanceof DiskFullError)) throw e;
      if (!full) process.stderr.write(`${line('warn', `${e.message}: log lines go to stderr only until there is space`)}\n`);
      full = true;
    }
  };
  return { info: (m) => write('info', m), warn: (m) => write('warn', m), error: (m) => write('error', m) };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
