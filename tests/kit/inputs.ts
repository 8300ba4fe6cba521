/** Deterministic test inputs shared by the collective worker, the tests and the benchmark. */

/** Pseudo-random float32 input of `rank` (same values in every process). */
export function makeInput(rank: number, length: number, seed = 0): Float32Array {
  const out = new Float32Array(length);
  // xorshift32, seeded per rank: cheap and identical everywhere
  let x = (0x9e3779b9 ^ Math.imul(rank + 1, 0x85ebca6b) ^ Math.imul(seed + 1, 0xc2b2ae35)) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = (x / 0x100000000 - 0.5) * 200; // [-100, 100)
  }
  return out;
}
