/**
 * The fine-tuning loop, written once for every executor: a fixed number of steps with linear
 * warm-up and linear decay to exactly 0 at the last one (ml/train/schedule.ts), global batches
 * taken in order from each epoch's shuffle (a batch never straddles two epochs), the mean loss of
 * the last tenth of the steps, then the replicas checked equal, the dev accuracy and the weights.
 * Single-process fine-tuning (compression/eval/finetune.ts) runs it on a Replica, the evaluation
 * step (coordinator/finetune.ts) on a ring of workers: same batches, same schedule, same result up
 * to float rounding.
 */
import { TtcError } from '../../core/errors.ts';
import { learningRate, warmupSteps } from '../train/schedule.ts';
import type { StepExecutor } from './executor.ts';

export interface FinetuneSchedule {
  /** optimizer steps (≥ 1); the LR reaches 0 at the last one */
  steps: number;
  /** peak learning rate */
  lr: number;
  /** fraction of the steps spent in linear warm-up, in [0, 1) */
  warmupFraction: number;
}

export interface FinetuneOutcome {
  /** final weights (a copy) */
  weights: Float32Array;
  /** mean training loss over the last max(1, round(steps / 10)) steps */
  trainLoss: number;
  devAccuracy: number;
}

/** `onStep` hears each step's loss as it is taken (a progress view). */
export async function finetuneLoop(ex: StepExecutor, o: FinetuneSchedule, onStep?: (step: number, loss: number) => void): Promise<FinetuneOutcome> {
  const warmup = warmupSteps(o.steps, o.warmupFraction);
  const tail = Math.max(1, Math.round(o.steps / 10));
  const B = ex.globalBatch;
  let tailLoss = 0;
  let epoch = 0;
  let offset = 0;
  for (let step = 0; step < o.steps; step++) {
    if (offset + B > ex.trainCount) {
      epoch += 1;
      offset = 0;
    }
    const { loss } = await ex.step(step, learningRate(step, o.steps, warmup, o.lr), { epoch, offset });
    if (!Number.isFinite(loss)) throw new TtcError('TTC_ERR_RUN', `fine-tuning diverged: loss ${loss} at step ${step}`);
    onStep?.(step + 1, loss);
    if (step >= o.steps - tail) tailLoss += loss;
    offset += B;
  }
  await ex.verify(o.steps);
  const { accuracy } = await ex.evaluate(o.steps);
  if (accuracy === undefined) throw new TypeError('finetuneLoop: the task reported no accuracy');
  const { weights } = await ex.state(o.steps);
  return { weights: Float32Array.from(weights), trainLoss: tailLoss / tail, devAccuracy: accuracy };
}
