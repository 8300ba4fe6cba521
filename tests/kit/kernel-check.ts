/** What the cpu kernel unit tests (tests/unit: kernels, ort-ops, cpu-attention) share: seeded random tensors and the relative error against a reference. */
import { tf } from '../../ml/tf.ts';

/**
 * A seeded tensor source: values uniform in [lo, hi) (default [-1, 1)) from a linear congruential
 * sequence. `seed` is its state: set it back to repeat the same inputs.
 */
export function seededRand(seed: number) {
  const g = {
    seed,
    rand(shape: number[], lo = -1, hi = 1): tf.Tensor {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        g.seed = (g.seed * 1103515245 + 12345) % 2147483648;
        v[i] = lo + ((hi - lo) * g.seed) / 2147483648;
      }
      return tf.tensor(v, shape);
    },
  };
  return g;
}

/** max |got − ref| (NaN propagates) and max |ref| over the elements of ref. */
export function maxDiff(ref: Float32Array, got: Float32Array): { diff: number; maxRef: number } {
  let diff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(ref[i] - got[i]);
    if (!(e <= diff)) diff = e; // NaN propagates
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return { diff, maxRef };
}

/** max |got − ref| / max |ref| (the plain difference for an all-zero ref); Infinity for different lengths. */
export function relErr(ref: Float32Array, got: Float32Array): number {
  if (ref.length !== got.length) return Infinity;
  const { diff, maxRef } = maxDiff(ref, got);
  return maxRef === 0 ? diff : diff / maxRef;
}
