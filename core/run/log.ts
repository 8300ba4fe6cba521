/** Plain line logger: timestamped lines on stderr (or a console of the caller's), optionally mirrored to a run's log file. */
import { appendText, DiskFullError } from '../fs.ts';

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export type LogLevel = 'info' | 'warn' | 'error';

/**
 * Where a logger's console lines go, each already formatted: stderr by default; `ttc sweep`'s
 * progress view (cli/sweep-view.ts) takes them to keep its lines in place and to show only the
 * warnings and errors (the rest are in the log files).
 */
export type ConsoleSink = (level: LogLevel, text: string) => void;

const stderrSink: ConsoleSink = (_level, text) => void process.stderr.write(`${text}\n`);

/** `quiet`: info lines go to the file only. `console`: where the console lines go instead of stderr. */
export function createLogger(prefix = '', file?: string, opts: boolean | { quiet?: boolean; console?: ConsoleSink } = false): Logger {
  const { quiet = false, console: sink = stderrSink } = typeof opts === 'boolean' ? { quiet: opts } : opts;
  let full = false;
  const line = (level: string, msg: string) => `${new Date().toISOString()} ${level}${prefix ? ` [${prefix}]` : ''} ${msg}`;
  const write = (level: LogLevel, msg: string) => {
    const text = line(level, msg);
    if (!quiet || level !== 'info') sink(level, text);
    if (!file) return;
    try {
      appendText(file, `${text}\n`);
      full = false;
    } catch (e) {
      // A log line may come from any event handler: a full disk must not make it a crash. The file
      // only mirrors the console; the next write that matters (a checkpoint, a metrics row) stops the run.
      if (!(e instanceof DiskFullError)) throw e;
      if (!full) sink('warn', line('warn', `${e.message}: log lines go to the console only until there is space`));
      full = true;
    }
  };
  return { info: (m) => write('info', m), warn: (m) => write('warn', m), error: (m) => write('error', m) };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
