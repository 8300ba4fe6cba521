/**
 * One model replica's training state and its step, split as compute-gradients → reduce →
 * apply; how replicas share the work is the DataParallel strategy's business (./data-parallel.ts:
 * nothing in one process; on a ring, bucketed reduce-scatter, a ZeRO-1 sharded update and a weight
 * all-gather, or an all-reduce and a full update). Master weights, gradients and optimizer state
 * are flat Float32Arrays.
 * `Trainer` is the task-independent part; MlmTrainer (pretraining) and ClassifierTrainer
 * (fine-tuning, ml/train/classifier.ts) only say how a batch becomes a loss.
 */
import { tf } from '../tf.ts';
import { AdamW, sharedFloat32, type AdamWOptions } from './adamw.ts';
import { DataParallel, DEFAULT_DATA_PARALLEL, type DataParallelOptions } from './data-parallel.ts';
import type { ProcessGroup } from '../../collective/index.ts';
import { mlmLoss, type Params } from '../model/transformer.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../model/spec.ts';
import { WeightTensors } from '../model/weights.ts';
import type { CommTime } from './data-parallel.ts';
import type { MaskedBatch } from '../data/batches.ts';
import { mixedPrecisionActive } from '../kernels/webgpu-matmul.ts';
import { LossScaler } from './loss-scale.ts';

export interface TrainerOptions {
  dims: ModelDims;
  optimizer: AdamWOptions;
  gradClipNorm: number;
  /** dynamic loss scaling; default: on (default options) when the process runs mixed precision, else off */
  lossScale?: LossScaler | false;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  /** forward, backward and reading the gradients back */
  computeMs: number;
  /** waiting for the gradient reduction after the read-back */
  reduceMs: number;
  /** clip + optimizer update + handing the weights to the backend */
  applyMs: number;
  /** milliseconds collectives ran for this step (its gradient reduction, the previous step's weight all-gather) */
  commMs: number;
  /** of commMs, the part that ran while this rank had other work */
  hiddenMs: number;
  /** mixed precision: the loss scale the step ran at, and whether it was skipped (gradients overflowed) */
  lossScale?: number;
  skipped?: boolean;
}

export abstract class Trainer<B> {
  /** master weights; the tensors are views of them: change them only through apply / setWeights / setMask */
  readonly weights: Float32Array;
  readonly grads: Float32Array;
  /** the update of the parameters this replica owns (all of them unless the optimizer is sharded) */
  optimizer: AdamW;
  /** how gradients and weights cross replicas; one process: no one to share with */
  dp: DataParallel;
  /** Pruning mask (1 = keep): masked weights stay exactly 0 through training. */
  private mask: Uint8Array | undefined;
  protected readonly tensors: WeightTensors;
  /** the weights changed since the tensors were loaded (loaded lazily, once an all-gather is in) */
  private stale = false;
  /** mixed precision's dynamic loss scale (./loss-scale.ts); undefined in fp32 */
  readonly lossScaler: LossScaler | undefined;

  constructor(readonly layout: ParamLayout, protected readonly opts: TrainerOptions, initial: Float32Array) {
    if (initial.length !== layout.total) throw new Error(`initial weights: expected ${layout.total} floats, got ${initial.length}`);
    // shared memory: the optimizer update's worker threads write the weights in place
    this.weights = sharedFloat32(layout.total);
    this.weights.set(initial);
    this.grads = sharedFloat32(layout.total);
    this.dp = new DataParallel(layout, undefined, DEFAULT_DATA_PARALLEL);
    this.optimizer = new AdamW(layout, opts.optimizer, this.dp.ownRanges);
    // views of this.weights, not copies: every change to them (apply, setWeights, setMask) reloads
    this.tensors = new WeightTensors(layout, this.weights, true);
    this.lossScaler = opts.lossScale === false ? undefined : (opts.lossScale ?? (mixedPrecisionActive() ? new LossScaler() : undefined));
  }

  /**
   * Trains as one replica of `group` (none: alone, with these bucket options) from now on (before
   * the first step: the optimizer state is reset; set it afterwards).
   */
  joinGroup(group: ProcessGroup | undefined, opts: DataParallelOptions): void {
    this.dp = new DataParallel(this.layout, group, opts);
    this.optimizer = new AdamW(this.layout, this.opts.optimizer, this.dp.ownRanges);
  }

  /** Waits for the weights of the last update (a pending all-gather) and hands them to the backend. */
  async settle(): Promise<void> {
    const gathered = await this.dp.settle();
    if (gathered || this.stale) {
      const t0 = performance.now();
      this.tensors.load(this.weights);
      this.stale = false;
      this.lastApply.uploadMs = performance.now() - t0;
    }
  }

  /** The scalar loss of a batch; called inside tf.tidy, so it may allocate freely. */
  protected abstract loss(p: Params, b: B): tf.Scalar;
  /** How many targets a batch's loss averages over (to weight evaluation means). */
  protected abstract targets(b: B): number;

  /**
   * Fills this.grads with d(loss)/d(weights) for the batch and returns the loss. Gradients are
   * read back bucket by bucket in the backward pass's order, and each complete bucket's reduction
   * starts at once (DataParallel.bucketReady); `reduce()` waits for the rest.
   */
  async computeGradients(b: B): Promise<number> {
    await this.settle();
    const names = this.layout.specs.map((s) => s.name);
    const scale = this.lossScaler?.scale ?? 1;
    const { value, grads } = tf.tidy(() => {
      const lossOf = (...ts: tf.Tensor[]) => {
        const loss = this.loss(Object.fromEntries(names.map((n, i) => [n, ts[i]])), b);
        return scale === 1 ? loss : tf.mul(loss, scale);
      };
      return tf.valueAndGrads(lossOf)(this.tensors.list());
    });
    try {
      // every read-back is requested at once (a GPU backend copies them in parallel), awaited in bucket order
      const reads = grads.map((g) => g.data() as Promise<Float32Array>);
      for (const r of reads) r.catch(() => {}); // a failure is reported by the await below
      for (let k = 0; k < this.dp.buckets.length; k++) {
        for (const i of this.dp.buckets[k]!.params) this.grads.set(await reads[i]!, this.layout.specs[i]!.offset);
        this.dp.bucketReady(k, this.grads);
      }
      return (await value.data())[0]! / scale; // a power of two: exact
    } finally {
      tf.dispose([value, ...grads]);
    }
  }

  /** Waits until the gradients are reduced across replicas; returns the communication time. */
  reduce(): Promise<CommTime> {
    return this.dp.reduced();
  }

  /**
   * Clips (by the global norm across every replica's shard), applies AdamW with the given LR to
   * the parameters this replica owns and starts handing the weights to every replica; returns the
   * gradient norm before clipping. this.grads are not rescaled by the clip (the update applies the scale).
   */
  async apply(lr: number): Promise<number> {
    const t0 = performance.now();
    const norm = await this.dp.update(this.optimizer, { weights: this.weights, grads: this.grads, mask: this.mask }, lr, this.opts.gradClipNorm, this.lossScaler?.scale);
    this.lossScaler?.update(norm); // after the update, which ran at the old scale
    this.stale = true;
    this.lastApply = { updateMs: performance.now() - t0, uploadMs: 0 };
    return norm;
  }

  /** Where the last update spent its time: the optimizer (CPU, in apply) and handing the weights to the backend (in the settle after it). */
  lastApply = { updateMs: 0, uploadMs: 0 };

  /** One optimizer step: compute gradients → reduce across replicas → apply. */
  async step(b: B, lr: number): Promise<StepResult> {
    const t0 = performance.now();
    const loss = await this.computeGradients(b);
    const t1 = performance.now();
    const comm = await this.reduce();
    const t2 = performance.now();
    const lossScale = this.lossScaler?.scale;
    const gradNorm = await this.apply(lr);
    const mixed = lossScale === undefined ? {} : { lossScale, skipped: !Number.isFinite(gradNorm) };
    return { loss, gradNorm, computeMs: t1 - t0, reduceMs: t2 - t1, applyMs: performance.now() - t2, ...comm, ...mixed };
  }

  /** The weights and optimizer state of the whole model (sharded: gathered from every replica — a collective). */
  async fullState(): Promise<{ weights: Float32Array; m: Float32Array; v: Float32Array; t: number }> {
    await this.settle();
    return { weights: this.weights, ...(await this.dp.fullMoments(this.optimizer)), t: this.optimizer.t };
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
    await this.settle();
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
