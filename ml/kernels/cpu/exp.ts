/**
 * exp for the JS kernels: V8's Math.exp (an fdlibm port, ~20 ns) made the softmax and GELU loops
 * slower than tfjs-wasm's SIMD Exp. Here: x = k·ln2 + r with |r| ≤ ln2/2, e^r by its degree-7
 * Taylor polynomial (relative error ≤ 5e-9, far below float32's 6e-8), 2^k from a table.
 * Small enough for V8 to inline into the calling loop.
 */
const LOG2E = Math.LOG2E;
const LN2 = Math.LN2;
const K0 = 1100;
/** POW2[k + K0] = 2^k for k in [−1100, 1100) (0 and Infinity at the ends, as float64 gives) */
const POW2 = Float64Array.from({ length: 2 * K0 }, (_, i) => Math.pow(2, i - K0));

export function fastExp(x: number): number {
  if (!(x > -700 && x < 700)) return Math.exp(x); // ±large, NaN: the library's own answer
  // nearest integer by truncating a positive number (Math.round is a slow path in V8)
  const k = ((x * LOG2E + (K0 + 0.5)) | 0) - K0;
  const r = x - k * LN2;
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040)))))));
  return p * POW2[k + K0];
}
