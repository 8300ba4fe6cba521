/** Plain line logger: timestamped lines on stderr, optionally mirrored to a run's log file. */
import fs from 'node:fs';

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function createLogger(prefix = '', file?: string, quiet = false): Logger {
  const write = (level: string, msg: string) => {
    const line = `${new Date().toISOString()} ${level}${prefix ? ` [${prefix}]` : ''} ${msg}`;
    if (!quiet || level !== 'info') process.stderr.write(`${line}\n`);
    if (file) fs.appendFileSync(file, `${line}\n`);
  };
  return { info: (m) => write('info', m), warn: (m) => write('warn', m), error: (m) => write('error', m) };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
