/**
 * Training progress: a cli-progress bar on a terminal (step / budget %, loss, tokens/s, ETA);
 * elsewhere (CI, logs, child processes) a plain line every `lineEverySeconds` and at the end.
 */
import cliProgress from 'cli-progress';
import { appendText, DiskFullError } from '../fs.ts';

export interface ProgressUpdate {
  step: number;
  totalSteps: number;
  budgetFraction: number;
  loss?: number;
  valLoss?: number;
  tokensPerSecond?: number;
  etaSeconds?: number;
}

export interface Progress {
  update(u: ProgressUpdate): void;
  stop(): void;
}

const fmt = (x: number | undefined, digits = 3) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));

/** 75 → "1m15s", 42 → "42s", unknown → "-". */
export function formatEta(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '-';
  const r = Math.round(s); // 719.6 → "12m00s", not "11m60s"
  const m = Math.floor(r / 60);
  return m > 0 ? `${m}m${String(r % 60).padStart(2, '0')}s` : `${r}s`;
}

export function describe(u: ProgressUpdate): string {
  return `step ${u.step}/${u.totalSteps} (${(100 * u.budgetFraction).toFixed(1)}% of budget) loss ${fmt(u.loss)} val ${fmt(u.valLoss)} ${fmt(u.tokensPerSecond, 0)} tok/s ETA ${formatEta(u.etaSeconds)}`;
}

export function createProgress(label: string, opts: { tty?: boolean; lineEverySeconds?: number; write?: (line: string) => void } = {}): Progress {
  const tty = opts.tty ?? process.stderr.isTTY === true;
  if (tty) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} |{bar}| {percentage}% of budget | step {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {etaText}`, hideCursor: true, stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(u) {
        const payload = { loss: fmt(u.loss), val: fmt(u.valLoss), tps: fmt(u.tokensPerSecond, 0), etaText: formatEta(u.etaSeconds) };
        if (!started) {
          bar.start(u.totalSteps, u.step, payload);
          started = true;
        }
        bar.setTotal(u.totalSteps);
        bar.update(u.step, payload);
      },
      stop: () => bar.stop(),
    };
  }
  const write = opts.write ?? ((l: string) => process.stderr.write(`${l}\n`));
  const every = (opts.lineEverySeconds ?? 10) * 1000;
  let last = 0;
  let pending: ProgressUpdate | undefined;
  return {
    update(u) {
      pending = u;
      const now = Date.now();
      if (now - last >= every || u.step >= u.totalSteps) {
        write(`${label} ${describe(u)}`);
        last = now;
        pending = undefined;
      }
    },
    stop() {
      if (pending) write(`${label} ${describe(pending)}`);
    },
  };
}

/**
 * A line per update (every step) appended to a run's log file, `ISO info [label] step …`: the log
 * keeps the full per-step record that a console view shows only sparsely. A full disk is not an
 * error here (the log only mirrors the run's metrics.jsonl).
 */
export function fileProgress(label: string, file: string): Progress {
  const write = (u: ProgressUpdate) => {
    try {
      appendText(file, `${new Date().toISOString()} info [${label}] ${describe(u)}\n`);
    } catch (e) {
      if (!(e instanceof DiskFullError)) throw e;
    }
  };
  return {
    update: write,
    stop() {},
  };
}

/** Every update and stop to each of `parts`. */
export function teeProgress(...parts: Progress[]): Progress {
  return {
    update: (u) => parts.forEach((p) => p.update(u)),
    stop: () => parts.forEach((p) => p.stop()),
  };
}
