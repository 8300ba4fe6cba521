/** runs/<id>/metrics.jsonl: one JSON object per line, appended as training goes. */
import fs from 'node:fs';
import { appendText, writeFileAtomic } from '../fs.ts';

export interface MetricsRow {
  step: number;
  tokens: number;
  flops: number;
  seconds: number;
  wallSeconds: number;
  lr: number;
  trainLoss?: number;
  valLoss?: number;
  valPerplexity?: number;
  /** task translation: corpus BLEU of the evaluation (greedy; bleuBeam: beam search) */
  bleu?: number;
  bleuBeam?: number;
  gradNorm?: number;
  tokensPerSecond?: number;
  /** where a step's time went (mean over the replicas), ms: forward + backward + read-back, the update, the collectives, and the part of those hidden behind other work */
  computeMs?: number;
  updateMs?: number;
  commMs?: number;
  commHiddenMs?: number;
}

export class MetricsWriter {
  constructor(readonly file: string) {}

  append(row: MetricsRow): void {
    appendText(this.file, `${JSON.stringify(row)}\n`);
  }

  /** On resume: drop rows past the checkpoint's step (they will be recomputed), keep the rest. */
  truncateAfter(step: number): void {
    if (!fs.existsSync(this.file)) return;
    const kept = readMetrics(this.file).filter((r) => r.step <= step);
    writeFileAtomic(this.file, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }
}

export function readMetrics(file: string): MetricsRow[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as MetricsRow];
      } catch {
        return []; // a line cut short by a crash mid-append
      }
    });
}
