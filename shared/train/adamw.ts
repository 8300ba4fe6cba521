/**
 * AdamW (decoupled weight decay) on flat Float32Arrays: weights, gradients and both moment
 * buffers share the layout of shared/model/spec.ts. Working on flat arrays in JS keeps the
 * update identical on every backend and every worker, and makes the state trivial to checkpoint.
 */
import type { ParamLayout } from '../model/spec.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

export interface AdamWState {
  m: Float32Array;
  v: Float32Array;
  t: number;
}

export class AdamW {
  m: Float32Array;
  v: Float32Array;
  t = 0;
  /** Ranges of the flat buffer that get weight decay: dense matrices only (not biases, LayerNorm, embeddings). */
  private readonly decayRanges: Array<[number, number]>;

  constructor(layout: ParamLayout, private readonly opts: AdamWOptions) {
    this.m = new Float32Array(layout.total);
    this.v = new Float32Array(layout.total);
    this.decayRanges = layout.specs.filter((s) => s.kind === 'dense').map((s) => [s.offset, s.offset + s.size]);
  }

  step(weights: Float32Array, grads: Float32Array, lr: number): void {
    const { beta1, beta2, epsilon, weightDecay } = this.opts;
    this.t += 1;
    const c1 = 1 - Math.pow(beta1, this.t);
    const c2 = 1 - Math.pow(beta2, this.t);
    const stepSize = lr / c1;
    const sqrtC2 = Math.sqrt(c2);
    const m = this.m;
    const v = this.v;
    for (let i = 0; i < weights.length; i++) {
      const g = grads[i];
      const mi = (m[i] = beta1 * m[i] + (1 - beta1) * g);
      const vi = (v[i] = beta2 * v[i] + (1 - beta2) * g * g);
      weights[i] -= (stepSize * mi) / (Math.sqrt(vi) / sqrtC2 + epsilon);
    }
    if (weightDecay > 0 && lr > 0) {
      const f = 1 - lr * weightDecay;
      for (const [a, b] of this.decayRanges) for (let i = a; i < b; i++) weights[i] *= f;
    }
  }

  getState(): AdamWState {
    return { m: this.m, v: this.v, t: this.t };
  }

  setState(s: AdamWState): void {
    if (s.m.length !== this.m.length || s.v.length !== this.v.length) {
      throw new Error(`optimizer state has ${s.m.length} entries, the model has ${this.m.length}`);
    }
    this.m = s.m;
    this.v = s.v;
    this.t = s.t;
  }
}

/** Scales grads in place so that their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGlobalNorm(grads: Float32Array, maxNorm: number): number {
  let sq = 0;
  for (let i = 0; i < grads.length; i++) sq += grads[i] * grads[i];
  const norm = Math.sqrt(sq);
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / norm;
    for (let i = 0; i < grads.length; i++) grads[i] *= s;
  }
  return norm;
}
