/**
 * AdamW (decoupled weight decay) with global-norm gradient clipping, on flat Float32Arrays:
 * weights, gradients and both moment buffers share the layout of ml/model/spec.ts. Working
 * on flat arrays in JS keeps the update identical on every backend and every worker, and makes
 * the state trivial to checkpoint. The loops live in ./update-task.ts and run on `threads` worker
 * threads (./update-pool.ts) for big models: the result is bit-identical for any thread count.
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
}

/** A zeroed Float32Array that worker threads can share (the update's threads write into it). */
export const sharedFloat32 = (n: number) => new Float32Array(new SharedArrayBuffer(n * 4));

/**
 * Block size of the gradient norm's partial sums. The norm is the sum, in block order, of each
 * block's sum of squares: the same additions in the same order whatever the thread count.
 */
export const NORM_BLOCK = 1 << 16;

export class AdamW {
  readonly m: Float32Array;
  readonly v: Float32Array;
  t = 0;
  /** the threads the update runs on (resolved from options.threads and the model size) */
  threads: number;
  /** runs of the flat buffer as [start, end, decays?]: dense matrices decay, biases/LayerNorm/embeddings do not */
  private readonly runs: Array<[number, number, boolean]> = [];
  private readonly partials: Float64Array;

  constructor(layout: ParamLayout, private readonly opts: AdamWOptions) {
    this.m = sharedFloat32(layout.total);
    this.v = sharedFloat32(layout.total);
    this.threads = resolveUpdateThreads(opts.threads ?? 0, layout.total);
    for (const s of layout.specs) {
      const decays = s.kind === 'dense';
      const last = this.runs.at(-1);
      if (last && last[1] === s.offset && last[2] === decays) last[1] = s.offset + s.size;
      else this.runs.push([s.offset, s.offset + s.size, decays]);
    }
    this.partials = new Float64Array(new SharedArrayBuffer(Math.ceil(layout.total / NORM_BLOCK) * 8));
  }

  /**
   * One optimizer step: the global gradient norm, clipped to `clipNorm` (0 = no clipping) by
   * scaling the gradients inside the update (grads are not modified), then AdamW with `lr`.
   * Returns the norm before clipping.
   */
  async update(weights: Float32Array, grads: Float32Array, lr: number, clipNorm: number): Promise<number> {
    const n = weights.length;
    if (grads.length !== n || this.m.length !== n) throw new Error(`AdamW.update: ${n} weights, ${grads.length} gradients, ${this.m.length} moments`);
    const T = this.threads;
    const blocks = this.partials.length;

    const sumsq = (b0: number, b1: number): SumSquaresJob => ({ op: 'sumsq', g: grads, out: this.partials, block: NORM_BLOCK, b0, b1 });
    if (T <= 1) updateTask(sumsq(0, blocks));
    else await runUpdateJobs(T, shares(blocks, T).map(([a, b]) => sumsq(a, b)));
    let sq = 0;
    for (let b = 0; b < blocks; b++) sq += this.partials[b];
    const norm = Math.sqrt(sq);
    const gScale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1;

    const { beta1, beta2, epsilon, weightDecay } = this.opts;
    this.t += 1;
    const decayFactor = weightDecay > 0 && lr > 0 ? 1 - lr * weightDecay : 1;
    const job = (segs: number[]): AdamWJob => ({
      op: 'adamw',
      w: weights,
      g: grads,
      m: this.m,
      v: this.v,
      segs,
      beta1,
      beta2,
      epsilon,
      stepSize: lr / (1 - Math.pow(beta1, this.t)),
      invSqrtC2: 1 / Math.sqrt(1 - Math.pow(beta2, this.t)),
      gScale,
    });
    const segsOf = (a: number, b: number) => {
      const out: number[] = [];
      for (const [s, e, decays] of this.runs) if (e > a && s < b) out.push(Math.max(s, a), Math.min(e, b), decays ? decayFactor : 1);
      return out;
    };
    if (T <= 1) updateTask(job(segsOf(0, n)));
    else await runUpdateJobs(T, shares(n, T).map(([a, b]) => job(segsOf(a, b))));
    return norm;
  }

  getState(): OptimizerState {
    return { m: this.m, v: this.v, t: this.t };
  }

  /** Copies a saved state in (the moment buffers stay the shared ones the threads write). */
  setState(s: OptimizerState): void {
    if (s.m.length !== this.m.length || s.v.length !== this.v.length) {
      throw new Error(`optimizer state has ${s.m.length} entries, the model has ${this.m.length}`);
    }
    this.m.set(s.m);
    this.v.set(s.v);
    this.t = s.t;
  }
}

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
