/**
 * The budgeted pretraining loop, written once for every executor: `ttc train` runs it on a Replica
 * in its own process, the coordinator on a ring of workers (coordinator/pretrain.ts). The
 * RunController decides the steps (budget → schedule, data positions, cadences); this loop asks
 * the executor to run them, records the metrics, evaluates, checks that replicas agree, and writes
 * checkpoints. Also here: where a run starts from (its latest checkpoint or the initial weights) and
 * the summary it ends with.
 */
import fs from 'node:fs';
import { trainSeedOf, type Config } from '../../core/config/schema.ts';
import type { Logger } from '../../core/run/log.ts';
import { runDirFor, type RunDir } from '../../core/run/rundir.ts';
import { DiskFullError, writeJsonAtomic } from '../../core/fs.ts';
import { advancePosition } from '../data/batches.ts';
import { checkpointsDir, loadLatestCheckpoint, removeStaleTemporaries, saveCheckpoint, type TrainingState } from '../checkpoint/checkpoint.ts';
import type { ParamLayout } from '../model/spec.ts';
import { initialWeights } from '../model/weights.ts';
import { runLayout, type RunController, type RunSummary } from '../train/controller.ts';
import { freshState, type StepExecutor, type TrainerState } from './executor.ts';

export interface PretrainLoopOptions {
  /** checkpoints go to run.dir */
  run: RunDir;
  log: Logger;
  /** called before every step; throws to abort the run (its last checkpoint stays) */
  beforeStep?: () => void;
  /** finish the current step, write a checkpoint and return (Ctrl-C) */
  shouldStop?: () => boolean;
  /** stop (with a checkpoint) after this many steps in this call: used to test resume */
  stopAfterSteps?: number;
  /** receives every checkpoint written (a coordinator restarts a re-formed ring from it) */
  onCheckpoint?: (snapshot: RunSnapshot) => void;
}

/** A run's restart point: weights, optimizer state and the controller's training state. */
export interface RunSnapshot {
  trainer: TrainerState;
  training: TrainingState;
}

/**
 * Runs steps until the budget is spent (returns true) or a stop was asked for (returns false,
 * after a checkpoint). Errors of the executor (a failed worker) propagate; the caller restarts
 * from the last checkpoint. A full disk (a checkpoint, a metrics row) ends the run with a
 * DiskFullError that says how to go on.
 */
export async function pretrainLoop(ctl: RunController, ex: StepExecutor, o: PretrainLoopOptions): Promise<boolean> {
  try {
    return await runSteps(ctl, ex, o);
  } catch (e) {
    // A failed write leaves the earlier checkpoints intact (a checkpoint is renamed into place whole).
    if (e instanceof DiskFullError) throw new DiskFullError(`${e.message}; the run's earlier checkpoints are intact: free some space, then resume it (--resume)`, { cause: e.cause });
    throw e;
  }
}

async function runSteps(ctl: RunController, ex: StepExecutor, o: PretrainLoopOptions): Promise<boolean> {
  const { config } = ctl;
  const layout = runLayout(config);
  if (ctl.state.step === 0 && !Number.isFinite(ctl.lastValLoss)) {
    const v = await ex.evaluate(0);
    ctl.recordEval(v);
    ctl.recordInitialEval(v.loss!);
    if (config.task === 'translation') o.log.info(`step 0: ${config.translation.evalSplit} loss ${v.loss!.toFixed(4)} (uniform ln(vocab) = ${Math.log(ctl.dims.vocab).toFixed(4)})`);
    else o.log.info(`step 0: validation loss ${v.loss!.toFixed(4)} (baselines: uniform ln(vocab) = ${Math.log(ctl.dims.vocab).toFixed(4)}, unigram frequencies = ${ctl.unigramEntropy.toFixed(4)})`);
  }
  if (ctl.needsCalibration()) {
    // A seconds budget needs a step time before the schedule can be fitted.
    const n = config.budget.calibrationSteps;
    const t0 = performance.now();
    await ex.calibrate(n, ctl.state.dataPosition);
    const elapsed = (performance.now() - t0) / 1000;
    ctl.calibrate(elapsed / n, elapsed, n * ctl.flopsPerStep);
    o.log.info(`seconds budget: calibrated ${(elapsed / n).toFixed(3)} s/step → schedule fitted to ${ctl.state.totalSteps} steps`);
  }
  const checkpoint = async () => {
    const snapshot = { trainer: await ex.state(ctl.state.step), training: structuredClone(ctl.state) };
    const { weights, m, v, t } = snapshot.trainer;
    const dir = saveCheckpoint(o.run.dir, layout, { dims: ctl.dims, weights, optimizer: { m, v, t }, state: snapshot.training });
    o.onCheckpoint?.(snapshot);
    o.log.info(`checkpoint: ${dir}`);
  };

  let steps = 0;
  for (let plan = ctl.next(); plan; plan = ctl.next()) {
    o.beforeStep?.();
    const t0 = performance.now();
    const r = await ex.step(plan.step, plan.lr, plan.dataPosition);
    const seconds = (performance.now() - t0) / 1000;
    const timing = r.computeMs === undefined ? undefined : { computeMs: r.computeMs, updateMs: r.applyMs, commMs: r.commMs, commHiddenMs: r.hiddenMs };
    // mixed precision: a non-finite norm is a step skipped by the loss scaler (ml/train/loss-scale.ts)
    if (!Number.isFinite(r.gradNorm) && config.model.precision === 'mixed') o.log.warn(`step ${plan.step + 1}: the gradients overflowed f16: step skipped, loss scale halved`);
    const row = ctl.completeStep(plan, { loss: r.loss, gradNorm: r.gradNorm, seconds, nextPosition: advancePosition(plan.dataPosition, ex.globalBatch, ex.trainCount), timing });
    const val = ctl.shouldEvaluate() ? await ex.evaluate(ctl.state.step) : undefined;
    if (val) ctl.recordEval(val);
    if (val?.bleu !== undefined) o.log.info(`step ${ctl.state.step}: ${config.translation.evalSplit} loss ${val.loss?.toFixed(4)}, BLEU ${val.bleu.toFixed(2)} greedy, ${val.bleuBeam?.toFixed(2)} beam ${config.translation.beam}`);
    ctl.record(row, val?.loss);
    if (ctl.isLastStep || ctl.state.step % config.dist.hashEvery === 0) await ex.verify(ctl.state.step);
    steps += 1;
    const interrupted = o.shouldStop?.() === true || (o.stopAfterSteps !== undefined && steps >= o.stopAfterSteps);
    if (ctl.shouldCheckpoint() || interrupted) await checkpoint();
    if (interrupted && !ctl.isLastStep) return false;
  }
  if (!Number.isFinite(ctl.lastValLoss)) ctl.recordEval(await ex.evaluate(ctl.state.step));
  return true;
}

/**
 * Where a run starts: its latest valid checkpoint (corrupt ones are reported and skipped), else the
 * initial weights of its seed. The caller now owns the run: the temporaries of a killed save are removed.
 */
export function startingPoint(config: Config, run: RunDir, log: Logger): { layout: ParamLayout; trainer: TrainerState; training?: TrainingState } {
  const layout = runLayout(config);
  for (const p of removeStaleTemporaries(checkpointsDir(run.dir))) log.info(`removed ${p}: the partial checkpoint of a writer that was killed`);
  const ckpt = loadLatestCheckpoint(run.dir, layout, (m) => log.warn(m));
  if (!ckpt) return { layout, trainer: freshState(initialWeights(layout, trainSeedOf(config), config.model.initStd)) };
  log.info(`resuming run ${run.id} from its checkpoint at step ${ckpt.state.step}/${ckpt.state.totalSteps} (${ckpt.state.flopsUsed.toExponential(3)} FLOPs used)`);
  return { layout, trainer: { weights: ckpt.weights, ...ckpt.optimizer }, training: ckpt.state };
}

/** Writes runs/<id>/summary.json (with `extra` fields, e.g. the failures a distributed run survived) and returns the summary. */
export function writeSummary(ctl: RunController, run: RunDir, backend: { name: string; detail: string }, completed: boolean, extra: Record<string, unknown> = {}): RunSummary {
  const summary = ctl.summary(run, backend, completed);
  writeJsonAtomic(run.summaryFile, { ...summary, ...extra });
  return summary;
}

/** Reads a run's summary.json; undefined when it is missing or unreadable (an interrupted run). */
export function readSummary(runDir: string): RunSummary | undefined {
  try {
    return JSON.parse(fs.readFileSync(runDirFor(runDir).summaryFile, 'utf8')) as RunSummary;
  } catch {
    return undefined;
  }
}
