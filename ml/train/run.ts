/**
 * The single-process training run behind `ttc train`: data → model → budgeted loop
 * (compute gradients → reduce → apply) → metrics, validation, checkpoints → summary.
 * Budget, schedule and bookkeeping live in RunController, shared with the coordinator.
 */
import fs from 'node:fs';
import { trainSeedOf, type Config } from '../../core/config/schema.ts';
import { initBackend } from '../backend.ts';
import { paramLayout } from '../model/spec.ts';
import { initialWeights } from '../model/weights.ts';
import { identityReducer, MlmTrainer } from './trainer.ts';
import { loadTrainingData } from './data.ts';
import { RunController, modelDims, type RunSummary } from './controller.ts';
import { loadLatestCheckpoint, saveCheckpoint } from '../checkpoint/checkpoint.ts';
import { MetricsWriter } from '../../core/run/metrics.ts';
import type { RunDir } from '../../core/run/rundir.ts';
import type { Logger } from '../../core/run/log.ts';
import { createProgress, type Progress } from '../../core/run/progress.ts';
import { tf } from '../tf.ts';

export type { RunSummary } from './controller.ts';
export { modelDims } from './controller.ts';

export interface TrainOptions {
  log: Logger;
  progress?: Progress;
  /** Stop (with a checkpoint) after this many steps in this process: used to test resume. */
  stopAfterSteps?: number;
  /** Set by a signal handler: finish the current step, checkpoint, return. */
  shouldStop?: () => boolean;
}

export async function trainRun(config: Config, run: RunDir, opts: TrainOptions): Promise<RunSummary> {
  const { log } = opts;
  const backend = await initBackend(config.backend, { threads: config.threads, fastKernels: config.fastKernels });
  for (const line of backend.log) log.info(`backend: ${line}`);
  log.info(`backend: running on "${backend.name}" (${backend.detail})`);

  const dims = modelDims(config);
  const data = await loadTrainingData(config, log);
  const layout = paramLayout(dims);
  const trainer = new MlmTrainer({ dims, optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm }, initialWeights(layout, trainSeedOf(config), config.model.initStd));
  const ckpt = loadLatestCheckpoint(run.dir, layout, (m) => log.warn(m));
  if (ckpt) {
    trainer.setWeights(ckpt.weights);
    trainer.optimizer.setState(ckpt.optimizer);
  }
  const progress = opts.progress ?? createProgress(run.id);
  const ctl = new RunController(config, 1, new MetricsWriter(run.metricsFile), progress, ckpt?.state);
  log.info(`model: ${layout.total.toLocaleString('en')} parameters, ${ctl.flopsPerStep.toExponential(3)} training FLOPs per step (batch ${config.train.batchSize})`);
  if (ckpt) log.info(`resumed from checkpoint at step ${ctl.state.step}/${ctl.state.totalSteps} (${ctl.state.flopsUsed.toExponential(3)} FLOPs used)`);

  const B = config.train.batchSize;
  if (ctl.needsCalibration()) {
    // A seconds budget needs a step time before the schedule can be fitted.
    const probe = data.reader.read(ctl.state.dataPosition, 0, B);
    const n = config.budget.calibrationSteps;
    const c0 = performance.now();
    for (let i = 0; i < n; i++) await trainer.computeGradients(probe);
    const elapsed = (performance.now() - c0) / 1000;
    ctl.calibrate(elapsed / n, elapsed, n * ctl.flopsPerStep);
    log.info(`seconds budget: calibrated ${(elapsed / n).toFixed(3)} s/step → schedule fitted to ${ctl.state.totalSteps} steps`);
  }
  if (!ckpt) {
    const v = await trainer.evaluate(data.valBatches);
    ctl.recordInitialEval(v);
    log.info(`step 0: validation loss ${v.toFixed(4)} (baselines: uniform ln(vocab) = ${Math.log(dims.vocab).toFixed(4)}, unigram frequencies = ${data.unigramEntropy.toFixed(4)})`);
  }
  const checkpoint = () => {
    const dir = saveCheckpoint(run.dir, layout, { dims, weights: trainer.weights, optimizer: trainer.optimizer.getState(), state: ctl.state });
    log.info(`checkpoint: ${dir}`);
  };

  let stepsThisProcess = 0;
  let stoppedEarly = false;
  for (let plan = ctl.next(); plan; plan = ctl.next()) {
    const batch = data.reader.read(plan.dataPosition, 0, B);
    const s0 = performance.now();
    const { loss, gradNorm } = await trainer.step(batch, plan.lr, identityReducer);
    const row = ctl.completeStep(plan, { loss, gradNorm, seconds: (performance.now() - s0) / 1000, nextPosition: data.reader.advance(plan.dataPosition, B) });
    ctl.record(row, ctl.shouldEvaluate() ? await trainer.evaluate(data.valBatches) : undefined);
    stepsThisProcess += 1;
    const interrupted = opts.shouldStop?.() === true || (opts.stopAfterSteps !== undefined && stepsThisProcess >= opts.stopAfterSteps);
    if (ctl.shouldCheckpoint() || interrupted) checkpoint();
    if (interrupted && !ctl.isLastStep) {
      stoppedEarly = true;
      break;
    }
  }
  progress.stop();
  if (!Number.isFinite(ctl.lastValLoss)) ctl.lastValLoss = await trainer.evaluate(data.valBatches);
  const summary = ctl.summary(run, backend, data.unigramEntropy, !stoppedEarly);
  fs.writeFileSync(run.summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
  trainer.dispose();
  log.info(`tensors still allocated: ${tf.memory().numTensors}`);
  return summary;
}
