/**
 * Fine-tuning on the downstream classification task: the pretrained encoder plus a fresh
 * classifier head, AdamW with linear warm-up and linear decay to exactly 0 at the last step
 * (ml/train/schedule.ts), batches drawn in a per-epoch shuffled order (epochOrder), a pruning
 * mask held at zero when given. Deterministic from the inputs and the seed.
 */
import { ClassifierTrainer, classifierWeightsFrom, epochOrder, takeBatch } from '../../ml/train/classifier.ts';
import { identityReducer } from '../../ml/train/trainer.ts';
import { learningRate, warmupSteps } from '../../ml/train/schedule.ts';
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
}

export interface FinetuneResult {
  /** Final weights, classifier layout (ctx.clsLayout). */
  weights: Float32Array;
  /** Mean training loss over the last max(1, round(steps / 10)) steps. */
  trainLoss: number;
  /** Dev accuracy of the final weights. */
  devAccuracy: number;
}

/** A seed for one purpose derived from a base seed (so head init and data order are unrelated streams). */
export function deriveSeed(seed: number, tag: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(tag + 1, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15), 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
}

function checkOptions(ctx: EvalContext, o: FinetuneOptions): void {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`finetune steps must be a positive integer, got ${o.steps}`);
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1 || o.batchSize > ctx.train.count) {
    throw new RangeError(`finetune batchSize must be an integer in [1, ${ctx.train.count}] (the training examples), got ${o.batchSize}`);
  }
  if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new RangeError(`finetune lr must be a finite number ≥ 0, got ${o.lr}`);
  if (!(o.warmupFraction >= 0 && o.warmupFraction < 1)) throw new RangeError(`finetune warmupFraction must be in [0, 1), got ${o.warmupFraction}`);
  if (!Number.isInteger(o.seed)) throw new RangeError(`finetune seed must be an integer, got ${o.seed}`);
  if (o.mask && o.mask.length !== ctx.clsLayout.total) throw new RangeError(`finetune mask has ${o.mask.length} entries, the classifier layout ${ctx.clsLayout.total}`);
}

/** The classifier weights fine-tuning starts from: the pretrained encoder copied by name, the head drawn from the seed. */
export function initialClassifierWeights(ctx: EvalContext, pretrainedMlmWeights: Float32Array, seed: number): Float32Array {
  if (pretrainedMlmWeights.length !== ctx.mlmLayout.total) {
    throw new RangeError(`pretrained weights: expected ${ctx.mlmLayout.total} floats (MLM layout), got ${pretrainedMlmWeights.length}`);
  }
  return classifierWeightsFrom(ctx.mlmLayout, pretrainedMlmWeights, ctx.clsLayout, deriveSeed(seed, 1), ctx.initStd);
}

/** Fine-tunes classifier weights (ctx.clsLayout) that already exist, e.g. between rounds of iterative pruning. */
export async function finetuneClassifier(ctx: EvalContext, initial: Float32Array, opts: FinetuneOptions): Promise<FinetuneResult> {
  checkOptions(ctx, opts);
  if (initial.length !== ctx.clsLayout.total) throw new RangeError(`classifier weights: expected ${ctx.clsLayout.total} floats, got ${initial.length}`);
  const trainer = new ClassifierTrainer(ctx.trainerOptions, ctx.numClasses, initial);
  try {
    if (opts.mask) trainer.setMask(opts.mask);
    const { steps, batchSize: B } = opts;
    const warmup = warmupSteps(steps, opts.warmupFraction);
    const orderSeed = deriveSeed(opts.seed, 2);
    const tail = Math.max(1, Math.round(steps / 10));
    let tailLoss = 0;
    let epoch = 0;
    let order = epochOrder(ctx.train.count, epoch, orderSeed);
    let pos = 0;
    for (let step = 0; step < steps; step++) {
      if (pos + B > ctx.train.count) {
        order = epochOrder(ctx.train.count, ++epoch, orderSeed);
        pos = 0;
      }
      const batch = takeBatch(ctx.train, order.subarray(pos, pos + B));
      pos += B;
      const { loss } = await trainer.step(batch, learningRate(step, steps, warmup, opts.lr), identityReducer);
      if (!Number.isFinite(loss)) throw new Error(`fine-tuning diverged: loss ${loss} at step ${step}`);
      if (step >= steps - tail) tailLoss += loss;
    }
    const devAccuracy = await trainer.accuracy(ctx.devBatches);
    return { weights: Float32Array.from(trainer.weights), trainLoss: tailLoss / tail, devAccuracy };
  } finally {
    trainer.dispose();
  }
}

/** Fine-tunes a pretrained MLM model on the classification task; returns classifier-layout weights. */
export async function finetune(ctx: EvalContext, pretrainedMlmWeights: Float32Array, opts: FinetuneOptions): Promise<FinetuneResult> {
  checkOptions(ctx, opts);
  return finetuneClassifier(ctx, initialClassifierWeights(ctx, pretrainedMlmWeights, opts.seed), opts);
}
