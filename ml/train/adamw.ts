/**
 * AdamW (decoupled weight decay) with global-norm gradient clipping, on flat Float32Arrays:
 * weights and gradients share the layout of ml/model/spec.ts. Working on flat arrays in JS keeps
 * the update identical on every backend and every worker, and makes the state trivial to
 * checkpoint. An optimizer updates the `ranges` of the layout it owns — everything in one process
 * or with an unsharded ring, chunk `rank` of every gradient bucket under ZeRO-1 sharding
 * (ml/train/data-parallel.ts) — and stores its moments for those ranges only, back to back. The
 * loops live in ./update-task.ts and run on `threads` worker threads (./update-pool.ts) for big
 * models: the result is bit-identical for any thread count and any sharding.
 */
import type { ParamLayout } from '../model/spec.ts';
import type { OptimizerState } from '../checkpoint/checkpoint.ts';
import { resolveUpdateThreads, runUpdateJobs } from './update-pool.ts';
import { updateTask, type AdamWJob, type SumSquaresJob } from './update-task.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
  /** threads for the update (optimizer.threads): 0 or absent = auto (resolveUpdateThreads) */
  threads?: number;
  /** where the Trainer runs the update (optimizer.device; see Trainer): absent = auto */
  device?: OptimizerDevice;
}

/** auto: on the GPU when the backend is webgpu and the worker has no peers; gpu: the same, but an error on another backend */
export type OptimizerDevice = 'auto' | 'cpu' | 'gpu';

/** [start, end) of the flat parameter buffer */
export type Range = readonly [number, number];

/** A zeroed Float32Array that worker threads can share (the update's threads write into it). */
export const sharedFloat32 = (n: number) => new Float32Array(new SharedArrayBuffer(n * 4));

/**
 * Block size of the gradient norm's partial sums. A range's sum of squares is the sum, in block
 * order, of each block's sum of squares (blocks counted from the range's start): the same
 * additions in the same order whatever the thread count.
 */
export const NORM_BLOCK = 1 << 16;

export class AdamW {
  /** first and second moments of the owned ranges, back to back */
  readonly m: Float32Array;
  readonly v: Float32Array;
  t = 0;
  /** the threads the update runs on (resolved from options.threads and the model size) */
  threads: number;
  readonly total: number;
  /** pieces of the owned ranges as [start, end, decays?, momentStart]: dense matrices decay, biases/LayerNorm/embeddings do not */
  private readonly pieces: Array<[number, number, boolean, number]> = [];

  constructor(layout: ParamLayout, private readonly opts: AdamWOptions, readonly ranges: readonly Range[] = [[0, layout.total]]) {
    this.total = layout.total;
    const runs: Array<[number, number, boolean]> = [];
    for (const s of layout.specs) {
      const decays = s.kind === 'dense';
      const last = runs.at(-1);
      if (last && last[1] === s.offset && last[2] === decays) last[1] = s.offset + s.size;
      else runs.push([s.offset, s.offset + s.size, decays]);
    }
    let owned = 0;
    for (const [a, b] of ranges) {
      if (!(a >= 0 && b >= a && b <= layout.total)) throw new RangeError(`AdamW: range [${a}, ${b}) outside the model's ${layout.total} parameters`);
      for (const [s, e, decays] of runs) if (e > a && s < b) this.pieces.push([Math.max(s, a), Math.min(e, b), decays, owned + Math.max(s, a) - a]);
      owned += b - a;
    }
    this.m = sharedFloat32(owned);
    this.v = sharedFloat32(owned);
    this.threads = resolveUpdateThreads(opts.threads ?? 0, owned);
  }

  /** parameters this optimizer updates (the length of m and v) */
  get owned(): number {
    return this.m.length;
  }

  /**
   * Float64 sum of squares of `grads` over each of `units` (ranges, in any order): unit k's sum is
   * out[k]. Each unit is cut into NORM_BLOCK blocks from its start; a block is summed in element
   * order and a unit's blocks in block order, so the bits depend only on the units.
   */
  async sumSquares(grads: Float32Array, units: readonly Range[]): Promise<Float64Array> {
    const bounds: number[] = [];
    const firstBlock: number[] = [];
    for (const [a, b] of units) {
      firstBlock.push(bounds.length / 2);
      for (let s = a; s < b; s += NORM_BLOCK) bounds.push(s, Math.min(b, s + NORM_BLOCK));
    }
    firstBlock.push(bounds.length / 2);
    const blocks = bounds.length / 2;
    const partials = new Float64Array(new SharedArrayBuffer(Math.max(1, blocks) * 8));
    const job = (b0: number, b1: number): SumSquaresJob => ({ op: 'sumsq', g: grads, out: partials, bounds, b0, b1 });
    const T = this.threads;
    if (T <= 1) updateTask(job(0, blocks));
    else await runUpdateJobs(T, shares(blocks, T).map(([a, b]) => job(a, b)));
    const out = new Float64Array(units.length);
    for (let k = 0; k < units.length; k++) {
      let s = 0;
      for (let b = firstBlock[k]!; b < firstBlock[k + 1]!; b++) s += partials[b]!;
      out[k] = s;
    }
    return out;
  }

  /**
   * One AdamW step on the owned ranges with the gradients scaled by `gScale` (the clip; the
   * gradients are not modified). `weights` and `grads` are full-layout buffers.
   */
  async step(weights: Float32Array, grads: Float32Array, lr: number, gScale: number): Promise<void> {
    if (weights.length !== this.total || grads.length !== this.total) throw new Error(`AdamW.step: ${weights.length} weights and ${grads.length} gradients for a model of ${this.total}`);
    const { beta1, beta2, epsilon, weightDecay } = this.opts;
    this.t += 1;
    const decayFactor = weightDecay > 0 && lr > 0 ? 1 - lr * weightDecay : 1;
    const job = (pieces: number[]): AdamWJob => ({
      op: 'adamw', w: weights, g: grads, m: this.m, v: this.v, pieces, beta1, beta2, epsilon,
      stepSize: lr / (1 - Math.pow(beta1, this.t)),
      invSqrtC2: 1 / Math.sqrt(1 - Math.pow(beta2, this.t)),
      gScale,
    });
    // thread k takes the moments [a, b) of the owned parameters, whichever pieces they fall in
    const piecesOf = (a: number, b: number) => {
      const out: number[] = [];
      for (const [s, e, decays, j] of this.pieces) {
        const lo = Math.max(a, j);
        const hi = Math.min(b, j + e - s);
        if (hi > lo) out.push(s + lo - j, s + hi - j, decays ? decayFactor : 1, lo);
      }
      return out;
    };
    const T = this.threads;
    if (T <= 1) updateTask(job(piecesOf(0, this.owned)));
    else await runUpdateJobs(T, shares(this.owned, T).map(([a, b]) => job(piecesOf(a, b))));
  }

  /**
   * One process's whole step: the global norm of `grads` (one unit: the whole buffer), clipped to
   * `clipNorm` (0 = no clipping) by scaling inside the update, then AdamW. Returns the norm before
   * clipping. Needs an optimizer that owns everything.
   */
  async update(weights: Float32Array, grads: Float32Array, lr: number, clipNorm: number): Promise<number> {
    if (this.owned !== this.total) throw new Error('AdamW.update: this optimizer holds a shard; the data-parallel step clips across shards');
    const norm = Math.sqrt((await this.sumSquares(grads, [[0, this.total]]))[0]!);
    await this.step(weights, grads, lr, clipScale(norm, clipNorm));
    return norm;
  }

  /** The owned ranges' moments (a view, back to back) and the step count. */
  getState(): OptimizerState {
    return { m: this.m, v: this.v, t: this.t };
  }

  /**
   * Copies a saved state in: moments of the whole model (a checkpoint: this optimizer takes its
   * ranges) or of exactly the owned ranges. The buffers stay the shared ones the threads write.
   */
  setState(s: OptimizerState): void {
    if (s.m.length !== s.v.length) throw new Error(`optimizer state: m has ${s.m.length} entries, v ${s.v.length}`);
    if (s.m.length === this.owned) {
      this.m.set(s.m);
      this.v.set(s.v);
    } else if (s.m.length === this.total) {
      let at = 0;
      for (const [a, b] of this.ranges) {
        this.m.set(s.m.subarray(a, b), at);
        this.v.set(s.v.subarray(a, b), at);
        at += b - a;
      }
    } else {
      throw new Error(`optimizer state has ${s.m.length} entries, the model has ${this.total}`);
    }
    this.t = s.t;
  }

  /** Writes the owned moments into full-layout buffers at their places (the rest is left as is). */
  scatterInto(m: Float32Array, v: Float32Array): void {
    let at = 0;
    for (const [a, b] of this.ranges) {
      m.set(this.m.subarray(at, at + b - a), a);
      v.set(this.v.subarray(at, at + b - a), a);
      at += b - a;
    }
  }
}

/** The factor gradients are scaled by so that their norm is at most clipNorm (0 = no clipping). */
export const clipScale = (norm: number, clipNorm: number): number => (clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1);

/** [0, n) cut into `parts` contiguous ranges of near-equal size (empty ones dropped). */
function shares(n: number, parts: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let k = 0; k < parts; k++) {
    const a = Math.floor((n * k) / parts);
    const b = Math.floor((n * (k + 1)) / parts);
    if (b > a) out.push([a, b]);
  }
  return out;
}
