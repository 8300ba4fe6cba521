/**
 * The optimizer update's two loops (sum of squared gradients per fixed block; fused clip-scale +
 * AdamW + decoupled weight decay), as ONE self-contained function: ml/train/update-pool.ts
 * runs it in worker threads (node-worker-threads-pool sends a function's source text to them),
 * and ml/train/adamw.ts calls the very same function in-process when it runs on one thread.
 * Same code on every path is what makes the result bit-identical whatever the thread count
 * (replicas with different core counts must stay equal: the workers' parameter hash checks it).
 *
 * Rules for this function, since its source runs alone in a worker: no imports, no references
 * to anything outside it, no nested functions (a TS/esbuild transform may wrap those in helpers
 * the worker does not have). Typed arrays arrive as views of SharedArrayBuffers (not copies).
 */

/** Sum of squares of g over blocks [b0, b1) of `block` elements each, into out[b] (float64). */
export interface SumSquaresJob {
  op: 'sumsq';
  g: Float32Array;
  out: Float64Array;
  block: number;
  b0: number;
  b1: number;
}

/**
 * For each segment (flat triples start, end, decayFactor): g' = g·gScale (the clip), then AdamW
 *   m = β1·m + (1-β1)·g',  v = β2·v + (1-β2)·g'²,  w = f·(w − stepSize·m / (√v·invSqrtC2 + ε))
 * with stepSize = lr / (1-β1^t), invSqrtC2 = 1/√(1-β2^t), f = 1 − lr·weightDecay on decayed
 * parameters and 1 elsewhere. Gradients are read, not written.
 */
export interface AdamWJob {
  op: 'adamw';
  w: Float32Array;
  g: Float32Array;
  m: Float32Array;
  v: Float32Array;
  segs: number[];
  beta1: number;
  beta2: number;
  epsilon: number;
  stepSize: number;
  invSqrtC2: number;
  gScale: number;
}

export type UpdateJob = SumSquaresJob | AdamWJob;

export function updateTask(job: UpdateJob): number {
  if (job.op === 'sumsq') {
    const g = job.g;
    for (let b = job.b0; b < job.b1; b++) {
      const end = Math.min(g.length, (b + 1) * job.block);
      let s = 0;
      for (let i = b * job.block; i < end; i++) s += g[i] * g[i];
      job.out[b] = s;
    }
    return 0;
  }
  const { w, g, m, v, segs, beta1, beta2, epsilon, stepSize, invSqrtC2, gScale } = job;
  const ob1 = 1 - beta1;
  const ob2 = 1 - beta2;
  for (let k = 0; k < segs.length; k += 3) {
    const end = segs[k + 1];
    const f = segs[k + 2];
    for (let i = segs[k]; i < end; i++) {
      const gi = g[i] * gScale;
      const mi = beta1 * m[i] + ob1 * gi;
      const vi = beta2 * v[i] + ob2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] = f * (w[i] - (stepSize * mi) / (Math.sqrt(vi) * invSqrtC2 + epsilon));
    }
  }
  return 0;
}
