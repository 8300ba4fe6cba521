/**
 * The tiled webgpu matmul (ml/kernels/webgpu-matmul.ts) against tfjs's `cpu` backend, in one process
 * that holds both backends (a child of tests/webgpu-matmul.test.ts: Dawn is process-global).
 *
 * Tolerances are error bounds, not fitted constants. With P = |A|·|B| (element-wise absolute values,
 * computed on cpu) and K the inner dimension:
 * - fp32: each side's recursive sum is within K·u·P of the exact product (u = 2⁻²⁴), so the two
 *   differ by at most 2·K·u·P;
 * - f16 operands, f32 accumulation: each operand is rounded to f16 (relative error ≤ 2⁻¹¹), the
 *   product of two f16 values is exact in f32, so |Δ| ≤ (2·2⁻¹¹ + 2⁻²² + 2·K·u)·P + 1e-6 (the last
 *   for operands below f16's normal range, 6.1e-5, whose rounding is absolute: ≤ 2⁻²⁵ each).
 * A wrong tile index or edge is off by O(P), far outside either.
 */
import { initBackend } from '../../ml/backend.ts';
import { matMulWith, matmulStats } from '../../ml/kernels/webgpu-matmul.ts';
import { tf } from '../../ml/tf.ts';

export interface MatmulCase {
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
  bias: boolean;
}

/** Odd shapes: M, N, K not multiples of the 64×64×16 tile or of 4 (scalar loads), transposes, batch, bias, one-sided batch. */
export const MATMUL_CASES: MatmulCase[] = [
  { a: [67, 45], b: [45, 33], transposeA: false, transposeB: false, bias: false },
  { a: [45, 67], b: [45, 33], transposeA: true, transposeB: false, bias: true },
  { a: [67, 45], b: [33, 45], transposeA: false, transposeB: true, bias: true },
  { a: [45, 67], b: [33, 45], transposeA: true, transposeB: true, bias: false },
  { a: [130, 200], b: [200, 96], transposeA: false, transposeB: false, bias: true }, // vec4 loads, 3 row tiles
  { a: [3, 70, 48], b: [3, 48, 132], transposeA: false, transposeB: false, bias: true },
  { a: [3, 70, 48], b: [3, 132, 48], transposeA: false, transposeB: true, bias: false }, // the attention scores' form
  { a: [3, 48, 70], b: [48, 132], transposeA: true, transposeB: false, bias: false }, // b shared by the batch
  { a: [5, 1, 17], b: [5, 17, 9], transposeA: false, transposeB: false, bias: false },
];

export interface CaseResult {
  name: string;
  k: number;
  /** max over elements of |Δ| / bound: ≤ 1 passes */
  fp32Used: number;
  f16Used: number;
  fp32MaxAbs: number;
  f16MaxAbs: number;
}

export interface MatmulCheckResult {
  detail: string;
  precision: string;
  cases: CaseResult[];
  /** f16 kernel, an operand of 1e5 (> 65504) in row 0 of A: rows 0-63 (its row tile) are +inf, the rest finite; the fp32 kernel's all finite */
  overflow: { f16AllInfInTile: boolean; f16FiniteElsewhere: boolean; fp32Finite: boolean };
  /** tf.matMul / tf.fused.matMul through the registered kernels: routed to the tiled program or to tfjs's */
  routes: { plainTiled: boolean; reluFellBack: boolean; sharedTiled: boolean };
  numTensors: number[];
}

const nameOf = (c: MatmulCase) => `${JSON.stringify(c.a)}${c.transposeA ? 'ᵀ' : ''}·${JSON.stringify(c.b)}${c.transposeB ? 'ᵀ' : ''}${c.bias ? ' + bias' : ''}`;

async function onCpu<T>(f: () => Promise<T>): Promise<T> {
  await tf.setBackend('cpu');
  try {
    return await f();
  } finally {
    await tf.setBackend('webgpu');
  }
}

function used(x: Float32Array, ref: Float32Array, p: Float32Array, rel: number, abs: number): { used: number; maxAbs: number } {
  let u = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(x[i]! - ref[i]!);
    m = Math.max(m, d);
    u = Math.max(u, Number.isNaN(d) ? Infinity : d / (rel * p[i]! + abs));
  }
  return { used: u, maxAbs: m };
}

/** Needs the webgpu backend with mixed precision (a shader-f16 device) and the cpu backend registered. */
export async function runMatmulCheck(): Promise<MatmulCheckResult> {
  const info = await initBackend('webgpu', { threads: 1, allowSoftwareGpu: true, precision: 'mixed' });
  const numTensors = [tf.memory().numTensors];
  const cases: CaseResult[] = [];
  let seed = 7;
  for (const c of MATMUL_CASES) {
    const rank = c.b.length;
    const n = c.transposeB ? c.b[rank - 2]! : c.b[rank - 1]!;
    const k = c.transposeA ? c.a[c.a.length - 2]! : c.a[c.a.length - 1]!;
    const a = tf.randomNormal(c.a, 0, 1, 'float32', seed++);
    const b = tf.randomNormal(c.b, 0, 1, 'float32', seed++);
    const bias = c.bias ? tf.randomNormal([n], 0, 1, 'float32', seed++) : undefined;
    const run = async (r: Parameters<typeof matMulWith>[0]) => {
      const t = matMulWith(r, a, b, c.transposeA, c.transposeB, bias);
      const v = (await t.data()) as Float32Array;
      t.dispose();
      return v;
    };
    const fp32 = await run({ rowsPerThread: 4, f16: false });
    const fp32Tall = await run({ rowsPerThread: 8, f16: false });
    const f16 = await run({ rowsPerThread: 4, f16: true });
    const [av, bv, biasv] = [await a.data(), await b.data(), bias ? await bias.data() : undefined];
    tf.dispose([a, b, bias].filter((t): t is tf.Tensor => !!t));
    const { ref, p } = await onCpu(async () => {
      const out = tf.tidy(() => {
        const [ac, bc] = [tf.tensor(av, c.a), tf.tensor(bv, c.b)];
        let r = tf.matMul(ac, bc, c.transposeA, c.transposeB);
        let q = tf.matMul(tf.abs(ac), tf.abs(bc), c.transposeA, c.transposeB);
        if (biasv) {
          r = tf.add(r, tf.tensor(biasv));
          q = tf.add(q, tf.abs(tf.tensor(biasv)));
        }
        return [r, q];
      });
      const res = { ref: (await out[0]!.data()) as Float32Array, p: (await out[1]!.data()) as Float32Array };
      tf.dispose(out);
      return res;
    });
    const u = 2 ** -24;
    const fp32Rel = 2 * k * u;
    const f16Rel = 2 * 2 ** -11 + 2 ** -22 + 2 * k * u;
    const r32 = used(fp32, ref, p, fp32Rel, 1e-7);
    const r32t = used(fp32Tall, ref, p, fp32Rel, 1e-7);
    const r16 = used(f16, ref, p, f16Rel, 1e-6);
    cases.push({ name: nameOf(c), k, fp32Used: Math.max(r32.used, r32t.used), fp32MaxAbs: Math.max(r32.maxAbs, r32t.maxAbs), f16Used: r16.used, f16MaxAbs: r16.maxAbs });
  }
  numTensors.push(tf.memory().numTensors);

  // overflow: one operand beyond f16's range in A's row 0 → the f16 program's first row tile is +inf
  const ov = tf.tidy(() => {
    const a = tf.concat([tf.fill([1, 40], 1e5), tf.randomNormal([99, 40], 0, 1, 'float32', 1)]);
    const b = tf.randomNormal([40, 70], 0, 1, 'float32', 2);
    return [matMulWith({ rowsPerThread: 4, f16: true }, a, b), matMulWith({ rowsPerThread: 4, f16: false }, a, b)];
  });
  const [h, s] = [(await ov[0]!.data()) as Float32Array, (await ov[1]!.data()) as Float32Array];
  tf.dispose(ov);
  let inTile = true;
  let elsewhere = true;
  for (let r = 0; r < 100; r++) {
    for (let col = 0; col < 70; col++) {
      const v = h[r * 70 + col]!;
      // both column tiles of rows 0-63 load row 0 of A
      if (r < 64) inTile &&= v === Infinity;
      else elsewhere &&= Number.isFinite(v);
    }
  }
  const overflow = { f16AllInfInTile: inTile, f16FiniteElsewhere: elsewhere, fp32Finite: s.every(Number.isFinite) };

  // routes through the registered kernels (mixed: every supported product takes the f16 program)
  const before = { ...matmulStats };
  const r1 = tf.tidy(() => tf.matMul(tf.ones([20, 30]), tf.ones([30, 10])));
  const plainTiled = matmulStats.tiled === before.tiled + 1 && matmulStats.fallback === before.fallback;
  const r2 = tf.tidy(() => tf.fused.matMul({ a: tf.ones([20, 30]), b: tf.ones([30, 10]), activation: 'relu' }));
  const reluFellBack = matmulStats.fallback === before.fallback + 1;
  const r3 = tf.tidy(() => tf.matMul(tf.ones([2, 20, 30]), tf.ones([30, 10]))); // one matrix for the whole batch
  const sharedTiled = matmulStats.tiled === before.tiled + 2;
  const routed = [await r1.data(), await r2.data(), await r3.data()];
  tf.dispose([r1, r2, r3]);
  if (!routed.every((v) => v.every((x) => x === 30))) throw new Error('a routed product is wrong');
  numTensors.push(tf.memory().numTensors);
  return { detail: info.detail, precision: info.precision, cases, overflow, routes: { plainTiled, reluFellBack, sharedTiled }, numTensors };
}
