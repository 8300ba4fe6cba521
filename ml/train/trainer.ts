/**
 * One model replica's training state and its step, split as compute-gradients → reduce →
 * apply so that data parallelism only swaps the reducer (identity in one process, the ring
 * all-reduce on workers). Master weights, gradients and optimizer state are flat Float32Arrays.
 * `Trainer` is the task-independent part; MlmTrainer (pretraining) and ClassifierTrainer
 * (fine-tuning, ml/train/classifier.ts) only say how a batch becomes a loss.
 */
import { tf } from '../tf.ts';
import { AdamW, sharedFloat32, type AdamWOptions } from './adamw.ts';
import { mlmLoss, type Params } from '../model/transformer.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../model/spec.ts';
import { WeightTensors } from '../model/weights.ts';
import type { MaskedBatch } from '../data/batches.ts';

/** Sums or averages gradients across replicas, in place. */
export interface GradientReducer {
  readonly worldSize: number;
  reduce(grads: Float32Array): Promise<void>;
}

export const identityReducer: GradientReducer = { worldSize: 1, reduce: async () => {} };

export interface TrainerOptions {
  dims: ModelDims;
  optimizer: AdamWOptions;
  gradClipNorm: number;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  computeMs: number;
  reduceMs: number;
  applyMs: number;
}

export abstract class Trainer<B> {
  /** master weights; the tensors are views of them: change them only through apply / setWeights / setMask */
  readonly weights: Float32Array;
  readonly grads: Float32Array;
  readonly optimizer: AdamW;
  /** Pruning mask (1 = keep): masked weights stay exactly 0 through training. */
  private mask: Uint8Array | undefined;
  protected readonly tensors: WeightTensors;

  constructor(readonly layout: ParamLayout, protected readonly opts: TrainerOptions, initial: Float32Array) {
    if (initial.length !== layout.total) throw new Error(`initial weights: expected ${layout.total} floats, got ${initial.length}`);
    // shared memory: the optimizer update's worker threads write the weights in place
    this.weights = sharedFloat32(layout.total);
    this.weights.set(initial);
    this.grads = sharedFloat32(layout.total);
    this.optimizer = new AdamW(layout, opts.optimizer);
    // views of this.weights, not copies: every change to them (apply, setWeights, setMask) reloads
    this.tensors = new WeightTensors(layout, this.weights, true);
  }

  /** The scalar loss of a batch; called inside tf.tidy, so it may allocate freely. */
  protected abstract loss(p: Params, b: B): tf.Scalar;
  /** How many targets a batch's loss averages over (to weight evaluation means). */
  protected abstract targets(b: B): number;

  /** Fills this.grads with d(loss)/d(weights) for the batch; returns the loss. */
  async computeGradients(b: B): Promise<number> {
    const names = this.layout.specs.map((s) => s.name);
    const { value, grads } = tf.tidy(() => {
      const lossOf = (...ts: tf.Tensor[]) => this.loss(Object.fromEntries(names.map((n, i) => [n, ts[i]])), b);
      return tf.valueAndGrads(lossOf)(this.tensors.list());
    });
    try {
      const arrays = await Promise.all(grads.map((g) => g.data() as Promise<Float32Array>));
      for (let i = 0; i < arrays.length; i++) this.grads.set(arrays[i], this.layout.specs[i].offset);
      return (await value.data())[0];
    } finally {
      tf.dispose([value, ...grads]);
    }
  }

  /**
   * Clips, applies AdamW with the given LR and refreshes the tensors; returns the gradient norm
   * before clipping. this.grads are not rescaled by the clip (the update applies the scale).
   */
  async apply(lr: number): Promise<number> {
    const t0 = performance.now();
    const mask = this.mask;
    if (mask) for (let i = 0; i < mask.length; i++) if (mask[i] === 0) this.grads[i] = 0;
    const norm = await this.optimizer.update(this.weights, this.grads, lr, this.opts.gradClipNorm);
    if (mask) for (let i = 0; i < mask.length; i++) if (mask[i] === 0) this.weights[i] = 0;
    const t1 = performance.now();
    this.tensors.load(this.weights);
    this.lastApply = { updateMs: t1 - t0, uploadMs: performance.now() - t1 };
    return norm;
  }

  /** Where the last apply() spent its time: the optimizer update (CPU) and handing the weights to the backend. */
  lastApply = { updateMs: 0, uploadMs: 0 };

  /** One optimizer step: compute gradients → reduce across replicas → apply. */
  async step(b: B, lr: number, reducer: GradientReducer): Promise<StepResult> {
    const t0 = performance.now();
    const loss = await this.computeGradients(b);
    const t1 = performance.now();
    await reducer.reduce(this.grads);
    const t2 = performance.now();
    const gradNorm = await this.apply(lr);
    return { loss, gradNorm, computeMs: t1 - t0, reduceMs: t2 - t1, applyMs: performance.now() - t2 };
  }

  /** Holds the weights where mask = 0 at exactly zero from now on (and zeroes them now). */
  setMask(mask: Uint8Array | undefined): void {
    if (mask && mask.length !== this.layout.total) throw new Error(`mask: expected ${this.layout.total} entries, got ${mask.length}`);
    this.mask = mask;
    if (mask) {
      for (let i = 0; i < mask.length; i++) if (mask[i] === 0) this.weights[i] = 0;
      this.tensors.load(this.weights);
    }
  }

  /** Replaces the weights, e.g. on resume. */
  setWeights(flat: Float32Array): void {
    this.weights.set(flat);
    this.tensors.load(this.weights);
  }

  /** Mean loss over the batches (no gradients), weighted by each batch's number of targets. */
  async evaluate(batches: Iterable<B>): Promise<number> {
    let total = 0;
    let count = 0;
    for (const b of batches) {
      const loss = tf.tidy(() => this.loss(this.tensors.tensors, b));
      total += (await loss.data())[0] * this.targets(b);
      count += this.targets(b);
      loss.dispose();
    }
    return total / count;
  }

  dispose(): void {
    this.tensors.dispose();
  }
}

export class MlmTrainer extends Trainer<MaskedBatch> {
  constructor(opts: TrainerOptions, initial: Float32Array) {
    super(paramLayout(opts.dims), opts, initial);
  }

  protected loss(p: Params, b: MaskedBatch): tf.Scalar {
    return mlmLoss(p, this.opts.dims, {
      ids: tf.tensor1d(b.inputIds, 'int32'),
      batch: b.batch,
      maskedPositions: tf.tensor1d(b.maskedPositions, 'int32'),
      maskedLabels: tf.tensor1d(b.maskedLabels, 'int32'),
    }) as tf.Scalar;
  }

  protected targets(b: MaskedBatch): number {
    return b.maskedLabels.length;
  }
}
