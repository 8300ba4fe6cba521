/**
 * One model replica's training state and its step, split as compute-gradients → reduce →
 * apply so that data parallelism only swaps the reducer (identity here, the ring all-reduce
 * on workers). Master weights, gradients and optimizer state are flat Float32Arrays.
 */
import { tf } from '../tf.ts';
import { AdamW, clipGlobalNorm, type AdamWOptions } from './adamw.ts';
import { mlmLoss, type MlmBatch } from '../model/transformer.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../model/spec.ts';
import { WeightTensors } from '../model/weights.ts';

/** A masked batch as plain typed arrays (what data loading produces and the wire can carry). */
export interface MaskedBatch {
  batch: number;
  seqLen: number;
  inputIds: Int32Array; // [B*T]
  maskedPositions: Int32Array; // [M], flat indices into B*T
  maskedLabels: Int32Array; // [M]
}

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

export class MlmTrainer {
  readonly layout: ParamLayout;
  readonly weights: Float32Array;
  readonly grads: Float32Array;
  readonly optimizer: AdamW;
  private readonly tensors: WeightTensors;

  constructor(private readonly opts: TrainerOptions, initial: Float32Array) {
    this.layout = paramLayout(opts.dims);
    if (initial.length !== this.layout.total) throw new Error(`initial weights: expected ${this.layout.total} floats, got ${initial.length}`);
    this.weights = Float32Array.from(initial);
    this.grads = new Float32Array(this.layout.total);
    this.optimizer = new AdamW(this.layout, opts.optimizer);
    this.tensors = new WeightTensors(this.layout, this.weights);
  }

  private batchTensors(b: MaskedBatch): MlmBatch {
    return {
      ids: tf.tensor1d(b.inputIds, 'int32'),
      batch: b.batch,
      maskedPositions: tf.tensor1d(b.maskedPositions, 'int32'),
      maskedLabels: tf.tensor1d(b.maskedLabels, 'int32'),
    };
  }

  /** Fills this.grads with d(loss)/d(weights) for the batch; returns the loss. */
  async computeGradients(b: MaskedBatch): Promise<number> {
    const params = this.tensors.list();
    const names = this.layout.specs.map((s) => s.name);
    const { value, grads } = tf.tidy(() => {
      const batch = this.batchTensors(b);
      const lossOf = (...ts: tf.Tensor[]) => {
        const p = Object.fromEntries(names.map((n, i) => [n, ts[i]]));
        return mlmLoss(p, this.opts.dims, batch) as tf.Scalar;
      };
      return tf.valueAndGrads(lossOf)(params);
    });
    try {
      const arrays = await Promise.all(grads.map((g) => g.data() as Promise<Float32Array>));
      for (let i = 0; i < arrays.length; i++) this.grads.set(arrays[i], this.layout.specs[i].offset);
      return (await value.data())[0];
    } finally {
      tf.dispose([value, ...grads]);
    }
  }

  /** Clips, applies AdamW with the given LR and refreshes the tensors; returns the gradient norm before clipping. */
  apply(lr: number): number {
    const norm = clipGlobalNorm(this.grads, this.opts.gradClipNorm);
    this.optimizer.step(this.weights, this.grads, lr);
    this.tensors.load(this.weights);
    return norm;
  }

  /** One optimizer step: compute gradients → reduce across replicas → apply. */
  async step(b: MaskedBatch, lr: number, reducer: GradientReducer): Promise<{ loss: number; gradNorm: number; computeMs: number; reduceMs: number; applyMs: number }> {
    const t0 = performance.now();
    const loss = await this.computeGradients(b);
    const t1 = performance.now();
    await reducer.reduce(this.grads);
    const t2 = performance.now();
    const gradNorm = this.apply(lr);
    return { loss, gradNorm, computeMs: t1 - t0, reduceMs: t2 - t1, applyMs: performance.now() - t2 };
  }

  /** Replaces weights (and optionally optimizer state), e.g. on resume. */
  setWeights(flat: Float32Array): void {
    this.weights.set(flat);
    this.tensors.load(this.weights);
  }

  /** Mean MLM loss over the batches (no gradients). */
  async evaluate(batches: Iterable<MaskedBatch>): Promise<number> {
    let total = 0;
    let count = 0;
    for (const b of batches) {
      const loss = tf.tidy(() => mlmLoss(this.tensors.tensors, this.opts.dims, this.batchTensors(b)));
      total += (await loss.data())[0] * b.maskedLabels.length;
      count += b.maskedLabels.length;
      loss.dispose();
    }
    return total / count;
  }

  dispose(): void {
    this.tensors.dispose();
  }
}
