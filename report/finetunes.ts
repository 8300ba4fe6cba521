/**
 * The members' fine-tuning in the report: one record per pretrained member (what early stopping
 * did, what it cost), read back from the sweep's finetuned/*.json, and the table that shows the
 * spread of fine-tuned dev accuracy over seeds for every (size, budget).
 */
import fs from 'node:fs';
import path from 'node:path';
import { NUM_CLASSES } from '../ml/data/classification.ts';
import { classifierStepFlops } from '../ml/flops.ts';
import type { FinetuneOutcome } from '../ml/loop/finetune.ts';
import type { ModelDims } from '../ml/model/spec.ts';
import { fmtPct } from './aggregate.ts';
import { summarize } from './stats.ts';
import type { Finetune } from './types.ts';


/** The report's record of one member's fine-tuning. */
export function finetuneRecord(
  member: { sizeId: string; budgetId: string; seed?: number },
  dims: ModelDims,
  o: { steps: number; batchSize: number; finetuneSeed: number },
  r: FinetuneOutcome,
): Finetune {
  const es = r.earlyStopping;
  const stepsRun = es?.stepsRun ?? o.steps;
  const perExample = classifierStepFlops(dims, 1, dims.seqLen, NUM_CLASSES);
  return {
    sizeId: member.sizeId,
    budgetId: member.budgetId,
    ...(member.seed !== undefined ? { seed: member.seed } : {}),
    finetuneSeed: o.finetuneSeed,
    steps: o.steps,
    stepsRun,
    trainFlops: stepsRun * o.batchSize * perExample.training,
    trainLoss: r.trainLoss,
    devAccuracy: r.devAccuracy,
    ...(es
      ? {
          earlyStopping: {
            evalEvery: es.evalEvery,
            patience: es.patience,
            bestStep: es.bestStep,
            bestAccuracy: es.bestAccuracy,
            stoppedEarly: es.stoppedEarly,
            curve: es.curve.map((p) => ({ ...p })),
            stopEvaluations: es.stopEvaluations,
            devEvaluations: es.devEvaluations,
            evalExamples: es.evalExamples,
            evalFlops: es.evalExamples * perExample.forward,
            evalSeconds: es.evalSeconds,
          },
        }
      : {}),
  };
}

/** Every finetuned/*.json record of a sweep (unreadable ones skipped: that member fine-tunes again). */
export function readFinetuneRecords(dir: string): Finetune[] {
  if (!fs.existsSync(dir)) return [];
  const out: Finetune[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Finetune);
    } catch {
      // a record cut short: ignored
    }
  }
  return out;
}

export interface FinetuneGroup {
  sizeId: string;
  budgetId: string;
  runs: Finetune[];
}

/** Records grouped by (size, budget), in the order first seen. */
export function groupFinetunes(fts: readonly Finetune[]): FinetuneGroup[] {
  const groups = new Map<string, FinetuneGroup>();
  for (const f of fts) {
    const k = `${f.sizeId}\u0000${f.budgetId}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { sizeId: f.sizeId, budgetId: f.budgetId, runs: [] }));
    g.runs.push(f);
  }
  return [...groups.values()];
}

const pct = (x: number) => fmtPct(x, 1);

/** A table row per (size, budget): dev accuracy over seeds (mean ± sd, min–max), steps run, best step, stops, evaluation cost. */
export function finetuneRows(groups: readonly FinetuneGroup[]): string[][] {
  return groups.map((g) => {
    const acc = summarize(g.runs.map((r) => r.devAccuracy));
    const es = g.runs.map((r) => r.earlyStopping);
    const on = es.filter((e) => e !== undefined);
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
    return [
      g.budgetId,
      g.sizeId,
      String(g.runs.length),
      g.runs.length > 1 ? `${pct(acc.mean)} ± ${pct(acc.sd)} (${pct(acc.min)}–${pct(acc.max)})` : pct(acc.mean),
      g.runs.map((r) => `${r.stepsRun}/${r.steps}`).join(', '),
      on.length ? on.map((e) => String(e.bestStep)).join(', ') : 'off',
      on.length ? `${on.filter((e) => e.stoppedEarly).length}/${on.length}` : '-',
      on.length ? `${mean(on.map((e) => e.evalFlops / 1e9)).toFixed(2)} GFLOP, ${mean(on.map((e) => e.evalSeconds)).toFixed(1)} s` : '-',
    ];
  });
}

export const FINETUNE_HEADER = ['budget', 'size', 'seeds', 'dev accuracy (mean ± sd, min–max)', 'steps run', 'best step', 'stopped early', 'early-stopping evaluations (mean per run)'];

export const FINETUNE_NOTE =
  'Every pretrained member fine-tuned on the classification task before compression. With early stopping, the early-stopping split (training examples held out of fine-tuning, never dev or test) is scored every evalEvery steps, the best weights are kept, and fine-tuning stops after `patience` evaluations without improvement; the evaluations are not counted in the steps and their cost is shown beside them.';
