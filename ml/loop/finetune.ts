/**
 * The fine-tuning loop, written once for every executor: a fixed number of steps with linear
 * warm-up and linear decay to exactly 0 at the last one (ml/train/schedule.ts), global batches
 * taken in order from each epoch's shuffle (a batch never straddles two epochs), the mean loss of
 * the last tenth of the steps run, then the replicas checked equal, the dev accuracy and the weights.
 * Single-process fine-tuning (compression/eval/finetune.ts) runs it on a Replica, the evaluation
 * step (coordinator/finetune.ts) on a ring of workers: same batches, same schedule, same result up
 * to float rounding.
 *
 * Early stopping (optional, `earlyStopping`): every `evalEvery` steps (and after the last one) the
 * replicas are scored on the early-stopping split — training examples held out of fine-tuning
 * (compression/eval/context.ts), never the dev or test split the report shows. An evaluation that
 * beats the best so far (a lower loss on that split) snapshots the weights; after `patience`
 * evaluations in a row without one the loop stops (0 = never stops early). At the end the best
 * weights are restored on the replicas (ex.restore) and their dev accuracy measured: the outcome's
 * weights and dev accuracy are the best evaluation's. The schedule stays the one of `steps`
 * (stopping truncates it), and the evaluations are not counted in the steps: they are reported
 * (count, examples, seconds) beside them (docs/evaluation.md, "Early stopping").
 */
import { TtcError } from '../../core/errors.ts';
import { learningRate, warmupSteps } from '../train/schedule.ts';
import type { StepExecutor } from './executor.ts';

export interface EarlyStopping {
  /** score the early-stopping split every K steps (≥ 1) and after the last step */
  evalEvery: number;
  /** evaluations in a row without improvement before the loop stops (0 = run every step, still restoring the best) */
  patience: number;
}

export interface FinetuneSchedule {
  /** optimizer steps (≥ 1); the LR reaches 0 at the last one */
  steps: number;
  /** peak learning rate */
  lr: number;
  /** fraction of the steps spent in linear warm-up, in [0, 1) */
  warmupFraction: number;
  /** score a held-out split during fine-tuning and keep the best weights (absent = the final weights) */
  earlyStopping?: EarlyStopping;
}

/** One evaluation on the early-stopping split. */
export interface StopPoint {
  /** optimizer steps done when it was taken */
  step: number;
  accuracy: number;
  loss: number;
}

/** What early stopping did during one fine-tuning. */
export interface EarlyStoppingReport {
  evalEvery: number;
  patience: number;
  /** the early-stopping split's accuracy and loss at every evaluation, in order */
  curve: StopPoint[];
  /** steps done at the best evaluation: the returned weights are those */
  bestStep: number;
  /** early-stopping-split accuracy of the returned weights (= the best point's) */
  bestAccuracy: number;
  /** optimizer steps actually run (< steps when it stopped early) */
  stepsRun: number;
  stoppedEarly: boolean;
  /** the evaluations' cost, not counted in the steps: early-stopping-split and dev evaluations, examples scored, seconds */
  stopEvaluations: number;
  devEvaluations: number;
  evalExamples: number;
  evalSeconds: number;
}

export interface FinetuneOutcome {
  /** final weights (a copy); with early stopping, the best evaluation's */
  weights: Float32Array;
  /** mean training loss over the last max(1, round(stepsRun / 10)) steps run */
  trainLoss: number;
  /** dev accuracy of `weights` */
  devAccuracy: number;
  earlyStopping?: EarlyStoppingReport;
}

/** Checks early-stopping settings; the message names the field. */
export function earlyStoppingProblem(e: EarlyStopping): string | undefined {
  if (!Number.isInteger(e.evalEvery) || e.evalEvery < 1) return `evalEvery must be an integer ≥ 1, got ${JSON.stringify(e.evalEvery)}`;
  if (!Number.isInteger(e.patience) || e.patience < 0) return `patience must be an integer ≥ 0, got ${JSON.stringify(e.patience)}`;
  return undefined;
}

/**
 * Is `p` better than `best`: a lower loss on the early-stopping split. The loss, not the accuracy:
 * on a few hundred examples accuracy moves in coarse, noisy steps and would stop runs whose loss is
 * still falling (measured: docs/evaluation.md, "Repeats").
 */
const improves = (p: StopPoint, best: StopPoint | undefined) => !best || p.loss < best.loss;

/** `onStep` hears each step's loss as it is taken (a progress view). */
export async function finetuneLoop(ex: StepExecutor, o: FinetuneSchedule, onStep?: (step: number, loss: number) => void): Promise<FinetuneOutcome> {
  const es = o.earlyStopping;
  if (es) {
    const problem = earlyStoppingProblem(es);
    if (problem) throw new TtcError('TTC_ERR_CONFIG', `early stopping: ${problem}`);
  }
  const warmup = warmupSteps(o.steps, o.warmupFraction);
  const B = ex.globalBatch;
  const losses: number[] = [];
  let epoch = 0;
  let offset = 0;
  // early stopping
  const curve: StopPoint[] = [];
  let best: { point: StopPoint; weights: Float32Array } | undefined;
  let sinceBest = 0;
  let stoppedEarly = false;
  const cost = { stop: 0, dev: 0, examples: 0, ms: 0 };
  const evaluateStop = async (done: number): Promise<void> => {
    const t0 = performance.now();
    const r = await ex.evaluate(done, 'stop');
    cost.stop += 1;
    cost.examples += r.examples ?? 0;
    if (r.accuracy === undefined || r.loss === undefined) throw new TypeError('finetuneLoop: the task reported no early-stopping accuracy and loss');
    const point = { step: done, accuracy: r.accuracy, loss: r.loss };
    curve.push(point);
    if (improves(point, best?.point)) {
      const { weights } = await ex.state(done);
      best = { point, weights: Float32Array.from(weights) };
      sinceBest = 0;
    } else {
      sinceBest += 1;
    }
    cost.ms += performance.now() - t0;
  };

  let step = 0;
  while (step < o.steps) {
    if (offset + B > ex.trainCount) {
      epoch += 1;
      offset = 0;
    }
    const { loss } = await ex.step(step, learningRate(step, o.steps, warmup, o.lr), { epoch, offset });
    if (!Number.isFinite(loss)) throw new TtcError('TTC_ERR_RUN', `fine-tuning diverged: loss ${loss} at step ${step}`);
    onStep?.(step + 1, loss);
    losses.push(loss);
    offset += B;
    step += 1;
    if (es && (step % es.evalEvery === 0 || step === o.steps)) {
      await evaluateStop(step);
      if (es.patience > 0 && sinceBest >= es.patience && step < o.steps) {
        stoppedEarly = true;
        break;
      }
    }
  }
  const tail = Math.max(1, Math.round(step / 10));
  const trainLoss = losses.slice(-tail).reduce((a, b) => a + b, 0) / tail;
  await ex.verify(step);
  if (es && best) {
    // The best weights back on the replicas (unless they are the last ones), then their dev accuracy.
    const t0 = performance.now();
    if (best.point.step !== step) await ex.restore(best.weights);
    const dev = await ex.evaluate(step, 'dev');
    if (dev.accuracy === undefined) throw new TypeError('finetuneLoop: the task reported no accuracy');
    cost.dev += 1;
    cost.examples += dev.examples ?? 0;
    cost.ms += performance.now() - t0;
    const earlyStopping: EarlyStoppingReport = {
      evalEvery: es.evalEvery,
      patience: es.patience,
      curve,
      bestStep: best.point.step,
      bestAccuracy: best.point.accuracy,
      stepsRun: step,
      stoppedEarly,
      stopEvaluations: cost.stop,
      devEvaluations: cost.dev,
      evalExamples: cost.examples,
      evalSeconds: cost.ms / 1000,
    };
    return { weights: best.weights, trainLoss, devAccuracy: dev.accuracy, earlyStopping };
  }
  const { accuracy } = await ex.evaluate(step, 'dev');
  if (accuracy === undefined) throw new TypeError('finetuneLoop: the task reported no accuracy');
  const { weights } = await ex.state(step);
  return { weights: Float32Array.from(weights), trainLoss, devAccuracy: accuracy };
}
