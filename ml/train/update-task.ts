/**
 * The optimizer update's two loops (sums of squared gradients over given blocks; fused clip-scale
 * + AdamW + decoupled weight decay over given pieces), as ONE self-contained function:
 * ml/train/update-pool.ts runs it in worker threads (node-worker-threads-pool sends a function's
 * source text to them), and ml/train/adamw.ts calls the very same function in-process when it runs
 * on one thread. Same code on every path is what makes the result bit-identical whatever the
 * thread count (replicas with different core counts must stay equal: the workers' parameter hash
 * checks it) and whatever the optimizer's shard (a ZeRO-1 shard runs the same loop on its pieces).
 *
 * Rules for this function, since its source runs alone in a worker: no imports, no references
 * to anything outside it, no nested functions (a TS/esbuild transform may wrap those in helpers
 * the worker does not have). Typed arrays arrive as views of SharedArrayBuffers (not copies).
 */

/** Sum of squares of g over blocks [b0, b1) of `bounds` (flat pairs start, end), into out[b] (float64, in element order). */
export interface SumSquaresJob {
  op: 'sumsq';
  g: Float32Array;
  out: Float64Array;
  bounds: number[];
  b0: number;
  b1: number;
}

/**
 * For each piece (flat quadruples start, end, decayFactor, momentStart) and i in [start, end),
 * with j = momentStart + (i − start): g' = g[i]·gScale (the clip), then AdamW
 *   m[j] = β1·m[j] + (1-β1)·g',  v[j] = β2·v[j] + (1-β2)·g'²,  w[i] = f·(w[i] − stepSize·m[j] / (√v[j]·invSqrtC2 + ε))
 * with stepSize = lr / (1-β1^t), invSqrtC2 = 1/√(1-β2^t), f = 1 − lr·weightDecay on decayed
 * parameters and 1 elsewhere. The moments are indexed apart from the weights so that a shard's
 * moments can be stored compactly. Gradients are read, not written.
 */
export interface AdamWJob {
  op: 'adamw';
  w: Float32Array;
  g: Float32Array;
  m: Float32Array;
  v: Float32Array;
  pieces: number[];
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
    const bounds = job.bounds;
    for (let b = job.b0; b < job.b1; b++) {
      const end = bounds[2 * b + 1];
      let s = 0;
      for (let i = bounds[2 * b]; i < end; i++) s += g[i] * g[i];
      job.out[b] = s;
    }
    return 0;
  }
  const { w, g, m, v, pieces, beta1, beta2, epsilon, stepSize, invSqrtC2, gScale } = job;
  const ob1 = 1 - beta1;
  const ob2 = 1 - beta2;
  for (let k = 0; k < pieces.length; k += 4) {
    const start = pieces[k];
    const end = pieces[k + 1];
    const f = pieces[k + 2];
    const shift = pieces[k + 3] - start;
    for (let i = start; i < end; i++) {
      const j = i + shift;
      const gi = g[i] * gScale;
      const mi = beta1 * m[j] + ob1 * gi;
      const vi = beta2 * v[j] + ob2 * gi * gi;
      m[j] = mi;
      v[j] = vi;
      w[i] = f * (w[i] - (stepSize * mi) / (Math.sqrt(vi) * invSqrtC2 + epsilon));
    }
  }
  return 0;
}
