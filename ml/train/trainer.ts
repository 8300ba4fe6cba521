/**
 * One model replica's training state and its step, split as compute-gradients → reduce →
 * apply; how replicas share the work is the DataParallel strategy's business (./data-parallel.ts:
 * nothing in one process; on a ring, bucketed reduce-scatter, a ZeRO-1 sharded update and a weight
 * all-gather, or an all-reduce and a full update). Master weights, gradients and optimizer state
 * are flat Float32Arrays.
 * A worker without peers on webgpu keeps the whole step on the GPU instead (optimizer.device,
 * ./gpu-adamw.ts): gradients are never read back, the weight tensors and the AdamW moments stay
 * on the device, and `weights` / the optimizer's moments are host copies refreshed on demand
 * (hostWeights(), fullState()).
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
import { webgpuAccess } from '../webgpu-access.ts';
import { GpuAdamW } from './gpu-adamw.ts';
import { ConfigError } from '../../core/config/load.ts';
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
  /** of computeMs, reading the gradients back to the host (bucket by bucket, their reductions starting meanwhile); 0 on the GPU-resident path */
  readBackMs?: number;
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
  /**
   * master weights (on the GPU-resident path: a host copy, current after hostWeights()); change
   * them only through apply / setWeights / setMask
   */
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
  /** where apply() runs: 'gpu' = the GPU-resident step (webgpu, no peers; optimizer.device) */
  updateOn: 'cpu' | 'gpu' = 'cpu';
  /** how the tensors get new host weights on webgpu: 'write' = queue.writeBuffer (WeightTensors.write), 'load' = tfjs's upload (for the bench) */
  weightUpload: 'write' | 'load' = 'write';
  /** GPU-resident path: its optimizer (created at the first step, from this.optimizer's state) */
  private gpuOpt: GpuAdamW | undefined;
  /** GPU-resident path: the last computeGradients' loss and gradients, on the device until apply() */
  private pending: { value: tf.Tensor; grads: tf.Tensor[] } | undefined;
  /** GPU-resident path: the tensors are newer than this.weights */
  private hostStale = false;

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
    this.chooseDevice();
  }

  /** The GPU-resident step when optimizer.device allows it, the backend is webgpu and there are no peers. */
  private chooseDevice(): void {
    const want = this.opts.optimizer.device ?? 'auto';
    const gpu = want === 'cpu' ? undefined : webgpuAccess();
    if (want === 'gpu' && !gpu) throw new ConfigError(`optimizer.device "gpu" needs the webgpu backend (the active backend is ${tf.getBackend()})`);
    this.gpuOpt?.dispose();
    this.gpuOpt = undefined;
    // the GPU-resident update has no loss scaling: mixed precision updates on the CPU
    if (want === 'gpu' && this.lossScaler) throw new ConfigError('optimizer.device "gpu" cannot run with model.precision "mixed" (the GPU-resident update has no loss scaling); use optimizer.device "auto" or "cpu"');
    this.updateOn = gpu && this.dp.worldSize === 1 && !this.lossScaler ? 'gpu' : 'cpu';
  }

  /**
   * Trains as one replica of `group` (none: alone, with these bucket options) from now on (before
   * the first step: the optimizer state is reset; set it afterwards).
   */
  joinGroup(group: ProcessGroup | undefined, opts: DataParallelOptions): void {
    this.dp = new DataParallel(this.layout, group, opts);
    this.optimizer = new AdamW(this.layout, this.opts.optimizer, this.dp.ownRanges);
    this.chooseDevice();
  }

  /** Sets the optimizer state (whole layout or the owned ranges); on the GPU-resident path it is uploaded before the next step. */
  setOptimizerState(s: Parameters<AdamW['setState']>[0]): void {
    this.optimizer.setState(s);
    this.gpuOpt?.dispose();
    this.gpuOpt = undefined;
  }

  /** Waits for the weights of the last update (a pending all-gather) and hands them to the backend. */
  async settle(): Promise<void> {
    if (this.hostStale && this.updateOn === 'cpu') await this.readWeightsBack(); // the CPU update needs them
    const gathered = await this.dp.settle();
    if (gathered || this.stale) {
      const t0 = performance.now();
      this.upload();
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
    const scale = this.lossScaler?.scale ?? 1;
    if (this.updateOn === 'gpu') {
      // kept on the device for apply(); only the loss is read
      return (await this.gradientsOnDevice(b).value.data())[0]!;
    }
    const { value, grads } = this.lossAndGrads(b, scale);
    const t0 = performance.now();
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
      this.lastReadBackMs = performance.now() - t0;
      tf.dispose([value, ...grads]);
    }
  }

  /** The loss (times `scale`: mixed precision's loss scale) and its gradients, on the backend. */
  private lossAndGrads(b: B, scale = 1): { value: tf.Tensor; grads: tf.Tensor[] } {
    const names = this.layout.specs.map((s) => s.name);
    return tf.tidy(() => {
      const lossOf = (...ts: tf.Tensor[]) => {
        const loss = this.loss(Object.fromEntries(names.map((n, i) => [n, ts[i]])), b);
        return scale === 1 ? loss : tf.mul(loss, scale);
      };
      return tf.valueAndGrads(lossOf)(this.tensors.list());
    });
  }

  /** GPU-resident path: records the forward and backward pass; the loss and gradients stay on the device. */
  private gradientsOnDevice(b: B): { value: tf.Tensor; grads: tf.Tensor[] } {
    this.dropPending();
    this.pending = this.lossAndGrads(b);
    return this.pending;
  }

  private dropPending(): void {
    if (this.pending) tf.dispose([this.pending.value, ...this.pending.grads]);
    this.pending = undefined;
  }

  /** GPU-resident path: clip + AdamW on the pending gradients; returns the loss and the norm (the step's only read-back). */
  private async applyOnDevice(lr: number): Promise<{ loss: number; norm: number }> {
    const p = this.pending;
    if (!p) throw new Error('apply: no gradients computed since the last update');
    this.pending = undefined;
    const gpu = webgpuAccess()!;
    if (!this.gpuOpt) {
      this.gpuOpt = new GpuAdamW(gpu, this.layout, this.opts.optimizer);
      this.gpuOpt.setMoments(this.optimizer.m, this.optimizer.v);
      this.gpuOpt.setMask(this.mask);
    }
    this.optimizer.t += 1;
    const next = this.gpuOpt.step(this.tensors.list(), p.grads, p.value, { lr, t: this.optimizer.t, clipNorm: this.opts.gradClipNorm });
    // disposed now: tfjs reuses their buffers only in work queued after this step
    tf.dispose([p.value, ...p.grads]);
    this.tensors.adopt(next);
    this.hostStale = true;
    return this.gpuOpt.readStats();
  }

  /** GPU-resident path: copies the weight tensors into this.weights. */
  private async readWeightsBack(): Promise<void> {
    const gpu = webgpuAccess()!;
    const list = this.tensors.list();
    await gpu.read(this.layout.specs.map((s, i) => ({ buffer: gpu.buffer(list[i]!), bytes: 4 * s.size, into: this.weights, at: s.offset })));
    this.hostStale = false;
  }

  /** The weights on the host, current (after a pending all-gather; on the GPU-resident path, read back). */
  async hostWeights(): Promise<Float32Array> {
    await this.settle();
    if (this.hostStale) await this.readWeightsBack();
    return this.weights;
  }

  /** Hands this.weights to the backend (new tensors). */
  private upload(): void {
    if (this.weightUpload === 'write') this.tensors.write(this.weights);
    else this.tensors.load(this.weights);
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
    if (this.updateOn === 'gpu') {
      const { norm } = await this.applyOnDevice(lr);
      this.lastApply = { updateMs: performance.now() - t0, uploadMs: 0 };
      return norm;
    }
    const norm = await this.dp.update(this.optimizer, { weights: this.weights, grads: this.grads, mask: this.mask }, lr, this.opts.gradClipNorm, this.lossScaler?.scale);
    this.lossScaler?.update(norm); // after the update, which ran at the old scale
    this.stale = true;
    this.lastApply = { updateMs: performance.now() - t0, uploadMs: 0 };
    return norm;
  }

  /** How long the last computeGradients waited for its gradients' read-back (after recording the forward and backward pass). */
  lastReadBackMs = 0;

  /** Where the last update spent its time: the optimizer (CPU, in apply) and handing the weights to the backend (in the settle after it). */
  lastApply = { updateMs: 0, uploadMs: 0 };

  /** One optimizer step: compute gradients → reduce across replicas → apply. */
  async step(b: B, lr: number): Promise<StepResult> {
    const t0 = performance.now();
    if (this.updateOn === 'gpu') {
      // computeMs: recording the forward and backward pass (the GPU runs them meanwhile);
      // applyMs: the update's recording, then waiting for the GPU to finish the step
      await this.settle();
      this.gradientsOnDevice(b);
      const t1 = performance.now();
      const { loss, norm } = await this.applyOnDevice(lr);
      const t2 = performance.now();
      this.lastApply = { updateMs: t2 - t1, uploadMs: 0 };
      return { loss, gradNorm: norm, computeMs: t1 - t0, readBackMs: 0, reduceMs: 0, applyMs: t2 - t1, commMs: 0, hiddenMs: 0 };
    }
    const loss = await this.computeGradients(b);
    const t1 = performance.now();
    const comm = await this.reduce();
    const t2 = performance.now();
    const lossScale = this.lossScaler?.scale;
    const gradNorm = await this.apply(lr);
    const mixed = lossScale === undefined ? {} : { lossScale, skipped: !Number.isFinite(gradNorm) };
    return { loss, gradNorm, computeMs: t1 - t0, readBackMs: this.lastReadBackMs, reduceMs: t2 - t1, applyMs: performance.now() - t2, ...comm, ...mixed };
  }

  /** The weights and optimizer state of the whole model (sharded: gathered from every replica — a collective). */
  async fullState(): Promise<{ weights: Float32Array; m: Float32Array; v: Float32Array; t: number }> {
    await this.hostWeights();
    // GPU-resident: the moments are read back on demand only (checkpoints, state transfers)
    if (this.gpuOpt) await this.gpuOpt.readMoments(this.optimizer.m, this.optimizer.v);
    return { weights: this.weights, ...(await this.dp.fullMoments(this.optimizer)), t: this.optimizer.t };
  }

  /** Holds the weights where mask = 0 at exactly zero from now on (and zeroes them now). */
  setMask(mask: Uint8Array | undefined): void {
    if (mask && mask.length !== this.layout.total) throw new Error(`mask: expected ${this.layout.total} entries, got ${mask.length}`);
    this.mask = mask;
    this.gpuOpt?.setMask(mask);
    if (mask) {
      for (let i = 0; i < mask.length; i++) if (mask[i] === 0) this.weights[i] = 0;
      if (this.hostStale) {
        // the device holds newer weights than the host: zero them there
        const specs = this.layout.specs;
        this.tensors.adopt(tf.tidy(() => this.tensors.list().map((t, i) => tf.mul(t, tf.tensor(Float32Array.from(mask.subarray(specs[i]!.offset, specs[i]!.offset + specs[i]!.size)), specs[i]!.shape)))));
      } else {
        this.upload();
      }
    }
  }

  /** Replaces the weights, e.g. on resume. */
  setWeights(flat: Float32Array): void {
    this.weights.set(flat);
    this.upload();
    this.hostStale = false;
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
    this.dropPending();
    this.gpuOpt?.dispose();
    this.gpuOpt = undefined;
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
