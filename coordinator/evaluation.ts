/**
 * The compression + evaluation step of a sweep, on the connected workers: every pretrained member
 * is fine-tuned data-parallel on the classification task (finetune.ts: one ring of all workers),
 * then every (member × compression cell) is evaluated as a job, one cell per worker at a time
 * (jobs.ts). Iterative pruning is driven here: prune (a pure function of the weights), fine-tune the
 * round data-parallel with the mask held, prune more, then measure the result as a job. Results
 * are saved as they arrive (finetuned/*.safetensors, cells.jsonl), so a killed step continues where
 * it stopped; a job lost with its worker runs again elsewhere.
 */
import fs from 'node:fs';
import path from 'node:path';
import { appendText, writeFileAtomic } from '../core/fs.ts';
import type { Logger } from '../core/run/log.ts';
import { applyMask, globalMagnitudeMask, iterativeSchedule } from '../compression/index.ts';
import type { RoundResult } from '../compression/eval/cells.ts';
import { cellLabel, compressionGrid, type CellSpec } from '../compression/grid.ts';
import { deriveSeed } from '../core/rng.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors, encodeSafetensors } from '../ml/checkpoint/safetensors.ts';
import { NUM_CLASSES } from '../ml/data/classification.ts';
import { paramLayout } from '../ml/model/spec.ts';
import type { CellResultWire, Selection } from '../protocol/index.ts';
import { toReportCell } from '../report/cells.ts';
import type { Cell, Finetune } from '../report/types.ts';
import { finetuneDistributed } from './finetune.ts';
import type { PhaseListener } from './phases.ts';
import { RunError, type Driver } from './formation.ts';
import { runJobs, type JobRequest } from './jobs.ts';
import { finetuneEarlyStopping, finetuneSeed, memberConfig, stopExamplesOf, type SweepConfig } from './sweep-config.ts';
import { finetuneRecord, readFinetuneRecords } from '../report/finetunes.ts';
import type { MemberResult } from './sweep.ts';

/** Where the evaluation step is: a stage name and how much of it is done (for status views). */
export type EvaluationProgress = (stage: string, done: number, total: number) => void;

/** One line of cells.jsonl. */
interface CellRecord {
  key: string;
  sizeId: string;
  budgetId: string;
  /** the member's training seed (sweeps with `seeds`) */
  seed?: number;
  result: CellResultWire;
}

const cellKey = (member: string, spec: CellSpec) => `${member}|${spec.method}|${cellLabel(spec)}`;

function readCells(file: string): Map<string, CellRecord> {
  const out = new Map<string, CellRecord>();
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as CellRecord;
      out.set(r.key, r);
    } catch {
      // a line cut short by a crash: that cell runs again
    }
  }
  return out;
}

export interface EvaluationOptions {
  driver: Driver;
  log: Logger;
  progress?: EvaluationProgress;
  /** start, progress and end of each fine-tuning, pruning and of the cells (a progress view) */
  onPhase?: PhaseListener;
  /** ends the step between fine-tunings and jobs (cancel, Ctrl-C); what is finished is kept */
  signal?: AbortSignal;
}

export async function evaluateSweep(sweepDir: string, sweep: SweepConfig, members: MemberResult[], o: EvaluationOptions): Promise<{ cells: Cell[]; failures: string[]; finetunes: Finetune[] }> {
  const { driver, log, signal } = o;
  const progress = o.progress ?? (() => {});
  const phase = o.onPhase ?? (() => {});
  const checkStopped = () => {
    if (signal?.aborted) throw new RunError(`the compression + evaluation step stopped (${String(signal.reason ?? 'cancelled')}); finished fine-tunings and cells are kept`);
  };
  const evaluation = sweep.evaluation;
  if (!evaluation) throw new RunError(`${sweepDir}: the sweep config has no "evaluation" section`);
  const grid = compressionGrid(evaluation.compression);
  const ftDir = path.join(sweepDir, 'finetuned');
  fs.mkdirSync(ftDir, { recursive: true });
  const cellsFile = path.join(sweepDir, 'cells.jsonl');
  const seed = sweep.base.seed;
  const stopExamples = stopExamplesOf(evaluation);
  const selection: Selection = { maxTrain: evaluation.maxTrain, maxDev: evaluation.maxDev, maxTest: evaluation.maxTest, ...(stopExamples > 0 ? { stopExamples } : {}) };
  const earlyStopping = finetuneEarlyStopping(evaluation);
  const timeoutMs = sweep.base.dist.stepTimeoutSeconds * 1000;
  const waitForWorkersSeconds = sweep.base.dist.waitForWorkersSeconds;
  const failures: string[] = [];

  // evaluation.budgets: only the members of those budgets are fine-tuned, compressed and evaluated
  const memberInfo = members.filter((m) => !evaluation.budgets || evaluation.budgets.includes(m.budgetId)).map((m) => {
    const size = sweep.sizes.find((s) => s.id === m.sizeId)!;
    const budget = sweep.budgets.find((b) => b.id === m.budgetId)!;
    const config = memberConfig(sweep, size, budget, path.dirname(m.runDir), m.seed);
    const last = listCheckpointDirs(checkpointsDir(m.runDir)).at(-1);
    if (!last) throw new RunError(`member ${config.runId} has no checkpoint in ${m.runDir}`);
    // A repeated member fine-tunes with its own seed too (head initialisation, batch order); the classification split stays.
    const ftSeed = finetuneSeed(sweep, m.seed);
    return { m, config, id: config.runId, ftSeed, pretrained: loadCheckpoint(last, paramLayout(config.model)).weights, ftFile: path.join(ftDir, `${config.runId}.safetensors`) };
  });
  type Member = (typeof memberInfo)[number];
  const finetuneRound = (x: Member, label: string, from: { pretrained: Float32Array } | { initial: Float32Array; mask: Uint8Array }, opts: { steps: number; seed: number; earlyStopping?: typeof earlyStopping }, onStep?: (step: number, loss: number) => void) => {
    checkStopped();
    const { batchSize, lr, warmupFraction } = evaluation.finetune;
    return finetuneDistributed(driver, { config: x.config, ...from, classificationSeed: seed, selection, opts: { batchSize, lr, warmupFraction, ...opts }, label, timeoutMs, waitForWorkersSeconds, onStep });
  };

  // Phase 1: fine-tune every member, data-parallel on all connected workers.
  const todo = memberInfo.filter((x) => !fs.existsSync(x.ftFile));
  log.info(`fine-tuning ${todo.length} member(s) (${memberInfo.length - todo.length} already done)`);
  let finetuned = memberInfo.length - todo.length;
  for (const x of memberInfo) if (!todo.includes(x)) phase({ phase: 'finetune', id: x.id, state: 'skipped', detail: 'already fine-tuned' });
  for (const x of todo) {
    const steps = evaluation.finetune.steps;
    phase({ phase: 'finetune', id: x.id, state: 'start', done: 0, total: steps, detail: `member ${finetuned + 1}/${memberInfo.length}, ${steps} steps: starting` });
    progress(`fine-tuning ${x.id}`, finetuned++, memberInfo.length);
    const r = await finetuneRound(x, x.id, { pretrained: x.pretrained }, { steps, seed: x.ftSeed, ...(earlyStopping ? { earlyStopping } : {}) }, (step, loss) => phase({ phase: 'finetune', id: x.id, state: 'progress', done: step, total: steps, loss }));
    // what the fine-tuning did, for the report (written before the weights: a weights file means both exist)
    const record = finetuneRecord(x.m, x.config.model, { steps, batchSize: evaluation.finetune.batchSize, finetuneSeed: x.ftSeed }, r);
    writeFileAtomic(x.ftFile.replace(/\.safetensors$/, '.json'), `${JSON.stringify(record)}\n`);
    writeFileAtomic(x.ftFile, encodeSafetensors({ weights: { dtype: 'F32', shape: [r.weights.length], data: r.weights } }, { trainLoss: String(r.trainLoss), devAccuracy: String(r.devAccuracy), workers: String(r.workers) }));
    const es = r.earlyStopping;
    const what = `dev accuracy ${(100 * r.devAccuracy).toFixed(1)}%, train loss ${r.trainLoss.toFixed(4)}${es ? `; best at step ${es.bestStep}/${steps}${es.stoppedEarly ? `, stopped early after ${es.stepsRun}` : ''}` : ''}`;
    log.info(`fine-tuned ${x.id} on ${r.workers} worker(s): ${what}`);
    phase({ phase: 'finetune', id: x.id, state: 'done', done: es?.stepsRun ?? steps, total: steps, detail: what });
  }

  // Phase 2: every (member × cell) not yet in cells.jsonl.
  const done = readCells(cellsFile);
  const cellJobs: JobRequest[] = [];
  for (const x of memberInfo) {
    if (!fs.existsSync(x.ftFile)) continue;
    const finetunedWeights = decodeSafetensors(fs.readFileSync(x.ftFile), x.ftFile).tensors.weights!.data as Float32Array;
    const common = { config: JSON.stringify(x.config), classificationSeed: seed, selection };
    for (const spec of grid) {
      const key = cellKey(x.id, spec);
      if (done.has(key)) continue;
      if (spec.method !== 'prune-iterative') {
        cellJobs.push({ id: `cell/${key}`, job: { kind: 'cell', ...common, cell: spec, seed: x.ftSeed, finetune: { batchSize: evaluation.finetune.batchSize, lr: evaluation.finetune.lr, warmupFraction: evaluation.finetune.warmupFraction } }, inputs: { pretrained: x.pretrained, finetuned: finetunedWeights } });
        continue;
      }
      // Iterative pruning: prune here (a pure function of the weights), fine-tune each round
      // data-parallel with the mask held, then measure the result as a job.
      const clsLayout = paramLayout(x.config.model, { kind: 'classifier', numClasses: NUM_CLASSES });
      let current: Float32Array = Float32Array.from(finetunedWeights);
      let mask: Uint8Array | undefined;
      const rounds: RoundResult[] = [];
      const targets = iterativeSchedule(spec.sparsity!, spec.rounds!);
      const pruneId = `${x.id} ${cellLabel(spec)}`;
      phase({ phase: 'prune', id: pruneId, state: 'start', done: 0, total: targets.length, detail: `${targets.length} round(s) of ${spec.stepsPerRound} fine-tuning steps: starting` });
      for (let r = 0; r < targets.length; r++) {
        phase({ phase: 'prune', id: pruneId, state: 'progress', done: r, total: targets.length });
        progress(`iterative pruning ${key}, round ${r + 1}/${targets.length}`, r, targets.length);
        mask = globalMagnitudeMask(current, clsLayout, targets[r]!, { embeddings: spec.embeddings, previousMask: mask });
        applyMask(current, mask);
        const ft = await finetuneRound(x, `${key}/round-${r + 1}`, { initial: current, mask }, { steps: spec.stepsPerRound!, seed: deriveSeed(x.ftSeed, 100 + r) });
        current = ft.weights;
        rounds.push({ round: r + 1, sparsity: targets[r]!, trainLoss: ft.trainLoss, devAccuracy: ft.devAccuracy });
      }
      log.info(`iterative pruning ${key}: ${rounds.map((r) => `round ${r.round} sparsity ${r.sparsity.toFixed(3)} dev ${(100 * r.devAccuracy).toFixed(1)}%`).join(', ')}`);
      phase({ phase: 'prune', id: pruneId, state: 'done', done: targets.length, total: targets.length, detail: `sparsity ${rounds.at(-1)!.sparsity.toFixed(3)}, dev accuracy ${(100 * rounds.at(-1)!.devAccuracy).toFixed(1)}%` });
      cellJobs.push({ id: `cell/${key}`, job: { kind: 'cell-trained', ...common, cell: spec, rounds }, inputs: { pretrained: x.pretrained, trained: current, mask: Float32Array.from(mask!) } });
    }
  }
  log.info(`evaluating ${cellJobs.length} compression cell(s) (${done.size} already done) on ${driver.registry.size} worker(s)`);
  const cellsTotal = done.size + cellJobs.length;
  progress('compression cells', done.size, cellsTotal);
  phase({ phase: 'evaluate', id: 'cells', state: 'start', done: done.size, total: cellsTotal, detail: `${cellJobs.length} compression cell(s) (${done.size} already done) on ${driver.registry.size} worker(s): starting` });
  await runJobs(driver.registry, cellJobs, {
    signal,
    timeoutMs: 3_600_000,
    maxAttempts: 3,
    minWorkers: 1,
    waitForWorkersSeconds,
    onOutcome: (o) => {
      if (!o.ok) {
        failures.push(`${o.id}: ${o.errors.join('; ')}`);
        return void phase({ phase: 'evaluate', id: 'cells', state: 'progress', done: done.size + failures.length, total: cellsTotal });
      }
      const key = o.id.slice('cell/'.length);
      const x = memberInfo.find((i) => key.startsWith(`${i.id}|`))!;
      const rec: CellRecord = { key, sizeId: x.m.sizeId, budgetId: x.m.budgetId, ...(x.m.seed !== undefined ? { seed: x.m.seed } : {}), result: o.result! };
      appendText(cellsFile, `${JSON.stringify(rec)}\n`);
      done.set(key, rec);
      progress('compression cells', done.size, cellsTotal);
      phase({ phase: 'evaluate', id: 'cells', state: 'progress', done: done.size + failures.length, total: cellsTotal });
    },
  }, log);
  checkStopped();
  phase({ phase: 'evaluate', id: 'cells', state: 'done', done: done.size, total: cellsTotal, detail: `${done.size} cell(s)${failures.length ? `, ${failures.length} FAILED` : ''}` });
  const cells = [...readCells(cellsFile).values()].map((r) => toReportCell(r.result, { sizeId: r.sizeId, budgetId: r.budgetId, ...(r.seed !== undefined ? { seed: r.seed } : {}) }));
  return { cells, failures, finetunes: readFinetuneRecords(ftDir) };
}
