/**
 * Fine-tuning on the downstream classification task in this process: the pretrained encoder plus a
 * fresh classifier head (drawn from deriveSeed(seed, 1)), one Replica of the classification task
 * (batches in a per-epoch shuffled order from deriveSeed(seed, 2)) and the fine-tuning loop
 * (ml/loop/finetune.ts: warm-up, linear decay to exactly 0 at the last step, optional early stopping
 * on ctx's early-stopping split), a pruning mask held at zero when given. Deterministic from the inputs and the seed; the evaluation step's data-parallel
 * fine-tuning (coordinator/finetune.ts) runs the same loop on the same task over a ring.
 */
import { deriveSeed } from '../../core/rng.ts';
import { freshState, Replica } from '../../ml/loop/executor.ts';
import { earlyStoppingProblem, finetuneLoop, type EarlyStopping, type FinetuneOutcome } from '../../ml/loop/finetune.ts';
import { ClassifyTask } from '../../ml/tasks/classify.ts';
import { classifierWeightsFrom } from '../../ml/train/classifier.ts';
import type { EvalContext } from './context.ts';

export interface FinetuneOptions {
  /** Optimizer steps (≥ 1). The LR reaches 0 at the last one. */
  steps: number;
  /** Examples per step (≤ the training examples). */
  batchSize: number;
  /** Peak learning rate. */
  lr: number;
  /** Fraction of the steps spent in linear warm-up, in [0, 1). */
  warmupFraction: number;
  /** Seeds the classifier head's initialisation and the data order. */
  seed: number;
  /** Pruning mask over the classifier layout (1 = keep): masked weights are zeroed and held at 0. */
  mask?: Uint8Array;
  /** Score ctx's early-stopping split every evalEvery steps, stop after `patience` evaluations without improvement, return the best weights (ml/loop/finetune.ts). */
  earlyStopping?: EarlyStopping;
}

/** Final (with early stopping: the best) weights (classifier layout, ctx.clsLayout), the mean training loss of the last tenth of the steps run, their dev accuracy, what early stopping did. */
export type FinetuneResult = FinetuneOutcome;

function checkOptions(ctx: EvalContext, o: FinetuneOptions): void {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`finetune steps must be a positive integer, got ${o.steps}`);
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1 || o.batchSize > ctx.train.count) {
    throw new RangeError(`finetune batchSize must be an integer in [1, ${ctx.train.count}] (the training examples), got ${o.batchSize}`);
  }
  if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new RangeError(`finetune lr must be a finite number ≥ 0, got ${o.lr}`);
  if (!(o.warmupFraction >= 0 && o.warmupFraction < 1)) throw new RangeError(`finetune warmupFraction must be in [0, 1), got ${o.warmupFraction}`);
  if (!Number.isInteger(o.seed)) throw new RangeError(`finetune seed must be an integer, got ${o.seed}`);
  if (o.earlyStopping) {
    const problem = earlyStoppingProblem(o.earlyStopping);
    if (problem) throw new RangeError(`finetune earlyStopping: ${problem}`);
    if (ctx.stop.count === 0) throw new RangeError('finetune earlyStopping needs an early-stopping split: load the context with stopExamples > 0');
  }
  if (o.mask && o.mask.length !== ctx.clsLayout.total) throw new RangeError(`finetune mask has ${o.mask.length} entries, the classifier layout ${ctx.clsLayout.total}`);
}

/** The classifier weights fine-tuning starts from: the pretrained encoder copied by name, the head drawn from the seed. */
export function initialClassifierWeights(ctx: EvalContext, pretrainedMlmWeights: Float32Array, seed: number): Float32Array {
  if (pretrainedMlmWeights.length !== ctx.mlmLayout.total) {
    throw new RangeError(`pretrained weights: expected ${ctx.mlmLayout.total} floats (MLM layout), got ${pretrainedMlmWeights.length}`);
  }
  return classifierWeightsFrom(ctx.mlmLayout, pretrainedMlmWeights, ctx.clsLayout, deriveSeed(seed, 1), ctx.initStd);
}

/** The classification task of a fine-tuning run: its global batch and its order seed. */
export function finetuneTask(ctx: EvalContext, o: Pick<FinetuneOptions, 'batchSize' | 'seed'>): ClassifyTask {
  return new ClassifyTask(ctx, { batchSize: o.batchSize, orderSeed: deriveSeed(o.seed, 2) });
}

/** Fine-tunes classifier weights (ctx.clsLayout) that already exist, e.g. between rounds of iterative pruning. */
export async function finetuneClassifier(ctx: EvalContext, initial: Float32Array, opts: FinetuneOptions): Promise<FinetuneResult> {
  checkOptions(ctx, opts);
  if (initial.length !== ctx.clsLayout.total) throw new RangeError(`classifier weights: expected ${ctx.clsLayout.total} floats, got ${initial.length}`);
  const replica = new Replica(finetuneTask(ctx, opts), freshState(initial), undefined, opts.mask);
  try {
    return await finetuneLoop(replica, opts);
  } finally {
    replica.dispose();
  }
}

/** Fine-tunes a pretrained MLM model on the classification task; returns classifier-layout weights. */
export async function finetune(ctx: EvalContext, pretrainedMlmWeights: Float32Array, opts: FinetuneOptions): Promise<FinetuneResult> {
  checkOptions(ctx, opts);
  return finetuneClassifier(ctx, initialClassifierWeights(ctx, pretrainedMlmWeights, opts.seed), opts);
}
