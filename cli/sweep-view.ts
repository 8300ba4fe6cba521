/**
 * `ttc sweep`'s console: a progress view — one row per member and phase (pretrain, finetune,
 * prune, evaluate, report) with steps done / total, loss and ETA — instead of the interleaved log
 * lines of the coordinator, the members and the workers. Those go, every one, to files:
 *   - <sweep>/console.log: the whole stream that `--verbose` shows on the console (the loggers of
 *     this process, the workers' output as they write it, a progress line every 10 s);
 *   - members/<id>/train.log: the member's own log, a line per training step, and the workers'
 *     output while it trains; sweep.log and evaluate.log as before.
 * On a terminal (stdout a TTY) the rows of the running phases are redrawn in place under the lines
 * of the finished ones; elsewhere (CI, `npm start | tee`) a phase prints a line when it starts, one
 * every `lineEverySeconds` while it runs and one when it ends. Warnings and errors of this process
 * and the workers' errors are shown as they come (stderr); the rest is in the files.
 */
import path from 'node:path';
import { appendText, DiskFullError } from '../core/fs.ts';
import type { ConsoleSink, LogLevel } from '../core/run/log.ts';
import { createProgress, fileProgress, formatEta, teeProgress, type Progress, type ProgressUpdate } from '../core/run/progress.ts';
import type { Phase, PhaseEvent } from '../coordinator/phases.ts';

export type ViewMode = 'verbose' | 'tty' | 'plain';

interface Stream {
  write(text: string): unknown;
  columns?: number;
  rows?: number;
}

export interface SweepViewOptions {
  /** where the whole console stream is filed (<sweep>/console.log) */
  file: string;
  mode: ViewMode;
  /** members to pretrain, for the status line */
  members: number;
  /** default process.stdout / process.stderr */
  out?: Stream;
  err?: Stream;
  /** plain mode: a running phase prints a line at most this often (default 10) */
  lineEverySeconds?: number;
}

/** The view's mode: --verbose, else rows in place on a terminal (not TERM=dumb), else plain lines. */
export function viewMode(verbose: boolean, stdout: { isTTY?: boolean } = process.stdout, env = process.env): ViewMode {
  if (verbose) return 'verbose';
  return stdout.isTTY === true && env.TERM !== 'dumb' ? 'tty' : 'plain';
}

interface Row {
  phase: Phase;
  id: string;
  detail?: string;
  done?: number;
  total?: number;
  loss?: number;
  val?: number;
  eta?: number;
  startedAt: number;
  lastLineAt: number;
}

const UNIT: Record<Phase, string> = { pretrain: 'steps', finetune: 'steps', prune: 'rounds', evaluate: 'cells', report: '' };
const LEVEL_LINE = /^\S+ (info|warn|error) \[[^\]]*\] /;
const fmt = (x: number | undefined, digits = 3) => (x === undefined || !Number.isFinite(x) ? undefined : x.toFixed(digits));

export class SweepView {
  private readonly out: Stream;
  private readonly err: Stream;
  private readonly rows = new Map<string, Row>();
  private readonly startedAt = Date.now();
  private readonly every: number;
  /** lines of the live area now on the screen (tty) */
  private live = 0;
  private dirty = false;
  private paintedAt = 0;
  private lastInfo: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private pretrained = 0;
  /** the log file of the member in training: the workers' output goes there too */
  private memberLog: string | undefined;
  private readonly onExit = () => this.stop();

  constructor(private readonly o: SweepViewOptions) {
    this.out = o.out ?? process.stdout;
    this.err = o.err ?? process.stderr;
    this.every = (o.lineEverySeconds ?? 10) * 1000;
    if (o.mode === 'tty') {
      this.timer = setInterval(() => this.paint(), 250);
      this.timer.unref();
      // a second Ctrl-C exits at once: leave the terminal clean
      process.once('exit', this.onExit);
    }
  }

  /** The loggers' console: every line to the file; on the console all of them (verbose) or the warnings and errors. */
  readonly console: ConsoleSink = (level: LogLevel, text: string) => {
    this.file(text);
    if (this.o.mode === 'verbose' || level !== 'info') this.show(this.err, text);
    else this.latest(text);
  };

  /**
   * A line of a worker's output (LocalCluster's `output`): to the files; on the console all of them
   * (verbose) or its errors — its error log lines and the one line `ttc worker: …` of a worker that
   * ends with an error (cli/main.ts; a bug's stack after it stays in the files). Not its other
   * lines: info and warnings (their consequences reach the sweep's own log), Dawn's or Node's
   * diagnostics.
   */
  workerOutput(_worker: string, line: string, stream: 'stdout' | 'stderr'): void {
    this.file(line);
    if (this.memberLog) this.append(this.memberLog, line);
    if (this.o.mode === 'verbose') return void this.show(stream === 'stdout' ? this.out : this.err, line);
    const level = LEVEL_LINE.exec(line)?.[1];
    if (level === 'error' || (stream === 'stderr' && line.startsWith('ttc worker: '))) this.show(this.err, line);
    else if (level === 'info') this.latest(line);
  }

  /** The last info line, shown under the rows on a terminal while nothing has progress to show (start-up, data preparation, a ring forming). */
  private latest(text: string): void {
    this.lastInfo = text.replace(LEVEL_LINE, (m) => m.slice(m.indexOf('[')));
    this.dirty = true;
  }

  /** A line for the console in every mode (the header, the summary), filed too. */
  note(line: string): void {
    this.file(line);
    this.show(this.out, line);
  }

  /** A member's training progress: every step to its train.log; the console view or (verbose) today's bar / lines. */
  memberProgress(runId: string, logFile: string): Progress {
    this.memberLog = logFile;
    const release: Progress = { update: () => {}, stop: () => void (this.memberLog === logFile && (this.memberLog = undefined)) };
    const perStep = fileProgress(runId, logFile);
    if (this.o.mode === 'verbose') return teeProgress(createProgress(runId), perStep, release);
    const filed = createProgress(runId, { tty: false, write: (l) => this.file(l) });
    const row: Progress = {
      update: (u: ProgressUpdate) => this.onPhase({ phase: 'pretrain', id: runId, state: 'progress', done: u.step, total: u.totalSteps, loss: u.loss }, u),
      stop: () => {},
    };
    return teeProgress(perStep, filed, row, release);
  }

  /** Where the sweep is (coordinator/phases.ts). */
  onPhase = (e: PhaseEvent, u?: ProgressUpdate): void => {
    if (this.o.mode === 'verbose') return; // the log lines say it
    const key = `${e.phase}\u0000${e.id}`;
    const now = Date.now();
    if (e.state === 'start') {
      this.rows.set(key, { phase: e.phase, id: e.id, detail: e.detail, done: e.done, total: e.total, startedAt: now, lastLineAt: now });
      if (this.o.mode === 'plain') this.show(this.out, `${e.phase} ${e.id}: ${e.detail ?? 'started'}`);
      this.dirty = true;
      return;
    }
    if (e.state === 'skipped') {
      if (e.phase === 'pretrain') this.pretrained += 1;
      this.show(this.out, `${e.phase} ${e.id}: ${e.detail ?? 'skipped'}`);
      return;
    }
    const row = this.rows.get(key) ?? { phase: e.phase, id: e.id, startedAt: now, lastLineAt: now };
    if (e.state === 'done') {
      this.rows.delete(key);
      if (e.phase === 'pretrain') this.pretrained += 1;
      const took = `in ${formatEta((now - row.startedAt) / 1000)}`;
      this.show(this.out, `${e.phase} ${e.id}: done${e.detail ? ` — ${e.detail}` : ''} (${took})`);
      return;
    }
    // progress
    Object.assign(row, { done: e.done ?? row.done, total: e.total ?? row.total, loss: e.loss ?? row.loss });
    if (u) Object.assign(row, { val: u.valLoss, eta: u.etaSeconds });
    this.rows.set(key, row);
    this.dirty = true;
    if (this.o.mode === 'plain' && now - row.lastLineAt >= this.every) {
      row.lastLineAt = now;
      this.show(this.out, this.rowText(row, false));
    }
  };

  /** Clears the live rows (tty) and stops redrawing; what was printed stays. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    process.off('exit', this.onExit);
    this.erase();
  }

  private rowText(r: Row, bar: boolean): string {
    const parts = [`${r.phase.padEnd(8)} ${r.id}`];
    if (r.total !== undefined && r.total > 0 && r.done !== undefined) {
      const f = Math.min(1, r.done / r.total);
      if (bar) parts.push(`[${'#'.repeat(Math.round(20 * f)).padEnd(20, '-')}]`);
      parts.push(`${r.done}/${r.total} ${UNIT[r.phase]} (${Math.floor(100 * f)}%)`);
      const loss = fmt(r.loss);
      if (loss) parts.push(`loss ${loss}`);
      const val = fmt(r.val);
      if (val) parts.push(`val ${val}`);
      const eta = r.eta ?? (r.done > 0 ? ((Date.now() - r.startedAt) / 1000) * ((r.total - r.done) / r.done) : undefined);
      parts.push(`ETA ${formatEta(eta)}`);
    } else {
      parts.push(r.detail ?? 'starting');
    }
    return parts.join('  ');
  }

  private statusLine(): string {
    return `sweep: ${formatEta((Date.now() - this.startedAt) / 1000)} elapsed · ${this.pretrained}/${this.o.members} members pretrained · logs: ${path.relative(process.cwd(), this.o.file) || this.o.file} · Ctrl-C stops with a checkpoint`;
  }

  /** Redraws the live rows under the printed lines (tty). */
  private paint(force = false): void {
    if (this.o.mode !== 'tty' || !this.timer) return;
    // otherwise once a second at least: the elapsed time ticks
    if (!force && !this.dirty && this.live > 0 && Date.now() - this.paintedAt < 1000) return;
    this.paintedAt = Date.now();
    const width = Math.max(40, (this.out.columns || 120) - 1);
    const clip = (s: string) => (s.length > width ? `${s.slice(0, width - 1)}…` : s);
    const rows = [...this.rows.values()];
    const room = Math.max(1, (this.out.rows || 30) - 3);
    const lines = rows.slice(0, room).map((r) => clip(this.rowText(r, true)));
    if (rows.length > room) lines.push(`… ${rows.length - room} more`);
    if (this.lastInfo && rows.every((r) => r.done === undefined)) lines.push(clip(`  … ${this.lastInfo}`));
    lines.push(clip(this.statusLine()));
    this.out.write(`${this.live > 0 ? `\u001b[${this.live}F\u001b[0J` : ''}${lines.join('\n')}\n`);
    this.live = lines.length;
    this.dirty = false;
  }

  private erase(): void {
    if (this.live > 0) this.out.write(`\u001b[${this.live}F\u001b[0J`);
    this.live = 0;
  }

  /** A line on the console, above the live rows (tty). */
  private show(stream: Stream, line: string): void {
    this.erase();
    stream.write(`${line}\n`);
    this.paint(true);
  }

  private file(line: string): void {
    this.append(this.o.file, line);
  }

  private append(file: string, line: string): void {
    try {
      appendText(file, `${line}\n`);
    } catch (e) {
      // the loggers report a full disk once; the console goes on
      if (!(e instanceof DiskFullError)) throw e;
    }
  }
}
