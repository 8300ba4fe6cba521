/**
 * The single-process training run behind `ttc train`: data → model → budgeted loop
 * (compute gradients → reduce → apply) → metrics, validation, checkpoints → summary.
 * The reducer is a parameter so the same loop serves one process (identity) and, on a
 * worker, the ring all-reduce.
 */
import fs from 'node:fs';
import type { Config } from '../config/schema.ts';
import { initBackend, type BackendInfo } from '../backend.ts';
import { prepareDataset } from '../data/dataset.ts';
import { BatchReader, validationBatches, type PackedSequences } from '../data/batches.ts';
import { numMaskedPerSeq } from '../data/masking.ts';
import { mlmStepFlops } from '../flops.ts';
import { paramLayout, parameterCount, type ModelDims } from '../model/spec.ts';
import { initialWeights } from '../model/weights.ts';
import { identityReducer, MlmTrainer, type GradientReducer } from './trainer.ts';
import { fixedStepBudget, estimateStepsForSeconds } from './budget.ts';
import { learningRate, warmupSteps } from './schedule.ts';
import { loadLatestCheckpoint, saveCheckpoint, type TrainingState } from '../checkpoint/checkpoint.ts';
import { MetricsWriter } from '../run/metrics.ts';
import type { RunDir } from '../run/rundir.ts';
import type { Logger } from '../run/log.ts';
import { createProgress, type Progress } from '../run/progress.ts';
import { Rng } from '../rng.ts';
import { tf } from '../tf.ts';

export interface RunSummary {
  runId: string;
  runDir: string;
  backend: string;
  backendDetail: string;
  parameters: number;
  flopsPerStep: number;
  steps: number;
  totalSteps: number;
  flopsUsed: number;
  budget: Config['budget'];
  secondsUsed: number;
  tokensSeen: number;
  finalTrainLoss: number;
  finalValLoss: number;
  finalValPerplexity: number;
  unigramBaseline: number;
  completed: boolean;
}

export interface TrainOptions {
  log: Logger;
  progress?: Progress;
  reducer?: GradientReducer;
  /** Stop (with a checkpoint) after this many steps in this process: used to test resume. */
  stopAfterSteps?: number;
  /** Set by a signal handler: finish the current step, checkpoint, return. */
  shouldStop?: () => boolean;
}

export function modelDims(c: Config): ModelDims {
  const { layers, hidden, heads, ffn, seqLen, vocab } = c.model;
  return { layers, hidden, heads, ffn, seqLen, vocab };
}

export async function trainRun(config: Config, run: RunDir, opts: TrainOptions): Promise<RunSummary> {
  const { log } = opts;
  const reducer = opts.reducer ?? identityReducer;
  const backend: BackendInfo = await initBackend(config.backend, { threads: config.threads, fastKernels: config.fastKernels });
  for (const line of backend.log) log.info(`backend: ${line}`);
  log.info(`backend: running on "${backend.name}" (${backend.detail})`);

  const dims = modelDims(config);
  const t0 = Date.now();
  const data = await prepareDataset({
    seed: config.seed,
    seqLen: dims.seqLen,
    vocabSize: dims.vocab,
    validationFraction: config.data.validationFraction,
    extraTextFiles: config.data.extraTextFiles,
    cacheDir: config.cacheDir,
  });
  const train: PackedSequences = { data: data.train, count: data.trainCount, seqLen: dims.seqLen };
  const valid: PackedSequences = { data: data.validation, count: data.validationCount, seqLen: dims.seqLen };
  log.info(`data: ${train.count} training and ${valid.count} validation sequences of ${dims.seqLen} tokens, vocab ${data.tokenizer.vocabSize} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  const layout = paramLayout(dims);
  const B = config.train.batchSize;
  const flopsPerStep = mlmStepFlops(dims, B, numMaskedPerSeq(dims.seqLen)).training * reducer.worldSize;
  log.info(`model: ${layout.total.toLocaleString('en')} parameters, ${flopsPerStep.toExponential(3)} training FLOPs per step (batch ${B} × ${reducer.worldSize} worker(s))`);

  const trainer = new MlmTrainer({ dims, optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm }, initialWeights(layout, config.seed, config.model.initStd));
  const reader = new BatchReader(train, config.seed, dims.vocab);
  const valBatches = validationBatches(valid, B, config.data.maxValidationSequences, config.seed ^ 0x5eed, dims.vocab);
  const metrics = new MetricsWriter(run.metricsFile);
  const rng = new Rng(config.seed ^ 0xd1ce);

  let state: TrainingState = {
    step: 0,
    totalSteps: config.budget.kind === 'seconds' ? 0 : fixedStepBudget(config.budget, flopsPerStep),
    flopsUsed: 0,
    secondsUsed: 0,
    tokensSeen: 0,
    dataPosition: { epoch: 0, offset: 0 },
    rngState: rng.getState(),
    worldSize: reducer.worldSize,
  };
  const ckpt = loadLatestCheckpoint(run.dir, layout, (m) => log.warn(m));
  if (ckpt) {
    trainer.setWeights(ckpt.weights);
    trainer.optimizer.setState(ckpt.optimizer);
    state = ckpt.state;
    metrics.truncateAfter(state.step);
    log.info(`resumed from checkpoint at step ${state.step}/${state.totalSteps} (${state.flopsUsed.toExponential(3)} FLOPs used)`);
  }

  const peak = config.optimizer.lr;
  const budgetFraction = () =>
    config.budget.kind === 'flops' ? state.flopsUsed / config.budget.flops : config.budget.kind === 'seconds' ? state.secondsUsed / config.budget.seconds : state.step / state.totalSteps;
  const progress = opts.progress ?? createProgress(run.id);
  let lastTrainLoss = NaN;
  let lastValLoss = NaN;
  const wallStart = Date.now() - state.secondsUsed * 1000;

  // Seconds per step for a seconds budget: the mean over this process's steps, else the calibration (or, on resume, the run's mean so far).
  let stepSecondsThisProcess = 0;
  let calibratedPerStep = state.step > 0 ? state.secondsUsed / state.step : 0;
  // A seconds budget needs a step time before the schedule can be fitted: time gradient
  // computations (not applied), and count them against the budget.
  if (config.budget.kind === 'seconds' && state.totalSteps === 0) {
    const probe = reader.read(state.dataPosition, 0, B);
    const c0 = performance.now();
    for (let i = 0; i < config.budget.calibrationSteps; i++) await trainer.computeGradients(probe);
    const elapsed = (performance.now() - c0) / 1000;
    state.secondsUsed += elapsed;
    state.flopsUsed += config.budget.calibrationSteps * flopsPerStep;
    calibratedPerStep = elapsed / config.budget.calibrationSteps;
    state.totalSteps = estimateStepsForSeconds(config.budget.seconds, 0, state.secondsUsed, calibratedPerStep);
    log.info(`seconds budget: calibrated ${(elapsed / config.budget.calibrationSteps).toFixed(3)} s/step → schedule fitted to ${state.totalSteps} steps`);
  }

  const evaluate = async () => {
    lastValLoss = await trainer.evaluate(valBatches);
    return lastValLoss;
  };
  const checkpoint = () => {
    state.rngState = rng.getState();
    const dir = saveCheckpoint(run.dir, layout, { dims, weights: trainer.weights, optimizer: trainer.optimizer.getState(), state });
    log.info(`checkpoint: ${dir}`);
  };

  if (state.step === 0 && !ckpt) {
    const v = await evaluate();
    metrics.append({ step: 0, tokens: 0, flops: 0, seconds: 0, wallSeconds: 0, lr: 0, valLoss: v, valPerplexity: Math.exp(v) });
    log.info(`step 0: validation loss ${v.toFixed(4)} (unigram baseline ln(vocab) = ${Math.log(dims.vocab).toFixed(4)})`);
  }

  let stepsThisProcess = 0;
  let stoppedEarly = false;
  for (;;) {
    if (config.budget.kind === 'seconds') {
      const perStep = stepsThisProcess > 0 ? stepSecondsThisProcess / stepsThisProcess : calibratedPerStep;
      state.totalSteps = estimateStepsForSeconds(config.budget.seconds, state.step, state.secondsUsed, perStep);
    }
    if (state.step >= state.totalSteps) break;
    const warm = warmupSteps(state.totalSteps, config.optimizer.warmupFraction);
    const lr = learningRate(state.step, state.totalSteps, warm, peak);
    const batch = reader.read(state.dataPosition, 0, B);
    const s0 = performance.now();
    const loss = await trainer.computeGradients(batch);
    await reducer.reduce(trainer.grads);
    const gradNorm = trainer.apply(lr);
    const dt = (performance.now() - s0) / 1000;
    state.step += 1;
    state.flopsUsed += flopsPerStep;
    state.secondsUsed += dt;
    state.tokensSeen += B * dims.seqLen * reducer.worldSize;
    state.dataPosition = reader.advance(state.dataPosition, B * reducer.worldSize);
    lastTrainLoss = loss;
    stepsThisProcess += 1;
    stepSecondsThisProcess += dt;

    const last = state.step >= state.totalSteps;
    const row = {
      step: state.step,
      tokens: state.tokensSeen,
      flops: state.flopsUsed,
      seconds: state.secondsUsed,
      wallSeconds: (Date.now() - wallStart) / 1000,
      lr,
      trainLoss: loss,
      gradNorm,
      tokensPerSecond: (B * dims.seqLen * reducer.worldSize) / dt,
    };
    if (last || state.step % config.train.evalEvery === 0) {
      const v = await evaluate();
      metrics.append({ ...row, valLoss: v, valPerplexity: Math.exp(v) });
    } else if (state.step % config.train.logEvery === 0) {
      metrics.append(row);
    }
    const interrupted = opts.shouldStop?.() === true || (opts.stopAfterSteps !== undefined && stepsThisProcess >= opts.stopAfterSteps);
    if (last || interrupted || state.step % config.train.checkpointEvery === 0) checkpoint();
    const perStep = state.secondsUsed / Math.max(1, state.step);
    progress.update({
      step: state.step,
      totalSteps: state.totalSteps,
      budgetFraction: Math.min(1, budgetFraction()),
      loss,
      valLoss: lastValLoss,
      tokensPerSecond: row.tokensPerSecond,
      etaSeconds: (state.totalSteps - state.step) * perStep,
    });
    if (interrupted && !last) {
      stoppedEarly = true;
      break;
    }
  }
  progress.stop();
  if (!Number.isFinite(lastValLoss)) await evaluate();

  const summary: RunSummary = {
    runId: run.id,
    runDir: run.dir,
    backend: backend.name,
    backendDetail: backend.detail,
    parameters: parameterCount(dims),
    flopsPerStep,
    steps: state.step,
    totalSteps: state.totalSteps,
    flopsUsed: state.flopsUsed,
    budget: config.budget,
    secondsUsed: state.secondsUsed,
    tokensSeen: state.tokensSeen,
    finalTrainLoss: lastTrainLoss,
    finalValLoss: lastValLoss,
    finalValPerplexity: Math.exp(lastValLoss),
    unigramBaseline: Math.log(dims.vocab),
    completed: !stoppedEarly,
  };
  fs.writeFileSync(run.summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
  trainer.dispose();
  log.info(`tensors still allocated: ${tf.memory().numTensors}`);
  return summary;
}
