/**
 * The fused ops' values and gradients on one backend, in its own process (Dawn is process-global;
 * a tfjs process holds one backend), for tests/webgpu-fused.test.ts:
 *
 *   node --import tsx tests/kit/fused-child.ts '<json FusedChildArgs>' <result.json>
 *
 * Runs every case of FUSED_CASES (odd shapes: rows and columns no multiple of a workgroup size,
 * more rows than the backward's row blocks, duplicate ids) forward and backward `reps` times,
 * recording tf.memory().numTensors after each repetition, and which ops ran fused. On webgpu it
 * also checks the embedding gradient with ids out of range against an exact sum, and that the
 * self-test rejects a kernel whose WGSL does not compile.
 */
import fs from 'node:fs';

import { Rng } from '../../core/rng.ts';
import { initBackend, type BackendChoice } from '../../ml/backend.ts';
import { biasGelu, crossEntropy, embeddingGrad, fusedCounts, layerNorm, resetFusedCounts, rowLookup, type FusedImpl } from '../../ml/kernels/fused.ts';
import { selfTestFused } from '../../ml/kernels/fused-check.ts';
import { tf, type Tensor } from '../../ml/tf.ts';
import { erfcRef } from './erfc-ref.ts';

export interface FusedChildArgs {
  backend: BackendChoice;
  allowSoftwareGpu?: boolean;
  fusedKernels: boolean;
  reps: number;
}

interface Case {
  op: string;
  name: string;
  inputs: () => Tensor[];
  f: (...xs: Tensor[]) => Tensor;
}

export interface CaseResult {
  op: string;
  name: string;
  /** value, then the gradient of each input */
  outputs: number[][];
}

export interface FusedChildResult {
  backend: string;
  log: string[];
  fused: string[];
  cases: CaseResult[];
  numTensors: number[];
  counts: ReturnType<typeof fusedCounts>;
  /** webgpu only: ids out of range skipped, duplicates summed exactly (integer data) */
  embeddingExact?: { maxAbsDiff: number; rows: number };
  /** webgpu only: gelu and gelu' on u ∈ [−10, 10] against a double-precision reference, fused and composite */
  gelu?: Record<'fused' | 'composite', { value: number; grad: number; tail: number }>;
  /** webgpu only: fused-op counts of a LayerNorm and a bias+GELU wider than the kernels take (per-call fallback) */
  wide?: ReturnType<typeof fusedCounts>;
  /** webgpu only: what the self-test says of a kernel whose shader does not compile */
  brokenShader?: { failed?: string };
  ms: number;
}

function normal(rng: Rng, shape: number[], scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return tf.tensor(v, shape, 'float32');
}

function ints(seed: number, n: number, max: number): Tensor {
  const rng = new Rng(seed);
  return tf.tensor1d(Array.from({ length: n }, () => Math.floor(rng.next() ** 2 * max)), 'int32'); // skewed: duplicates
}

/** The shapes each op is checked at (shared by both sides: same seeds, same data). */
export function fusedCases(): Case[] {
  const out: Case[] = [];
  for (const [n, d] of [[1, 5], [67, 129], [300, 33], [3, 770]]) {
    out.push({ op: 'layerNorm', name: `layerNorm x[${n},${d}]`, inputs: () => { const r = new Rng(n * 1000 + d); return [normal(r, [n, d], 3), normal(r, [d], 0.5), normal(r, [d], 0.5)]; }, f: (x, g, b) => layerNorm(x, g, b) });
  }
  for (const [n, f] of [[1, 3], [67, 129], [300, 33], [5, 1030]]) {
    out.push({ op: 'biasGelu', name: `biasGelu x[${n},${f}]`, inputs: () => { const r = new Rng(n * 7 + f); return [normal(r, [n, f], 3), normal(r, [f], 1)]; }, f: (x, b) => biasGelu(x, b) });
  }
  for (const [m, v] of [[1, 2], [67, 129], [9, 1001]]) {
    // in the largest case two labels are out of range: an all-zero one-hot row, as tf.oneHot gives
    const labels = () => (v !== 1001 ? ints(m + v, m, v) : tf.tensor1d([5, 1000, -1, 17, 3, v, 999, 0, 42], 'int32'));
    out.push({ op: 'softmaxXent', name: `softmaxXent logits[${m},${v}]`, inputs: () => [normal(new Rng(m * 3 + v), [m, v], 4)], f: (x) => tf.tidy(() => crossEntropy(x, labels(), v)) });
  }
  for (const [rows, d, n] of [[29, 16, 41], [7, 65, 300], [1000, 33, 128]]) {
    const ids = () => ints(rows + n, n, rows);
    out.push({ op: 'embeddingGrad', name: `embeddingGrad table[${rows},${d}] ids[${n}]`, inputs: () => [normal(new Rng(rows + d), [rows, d])], f: (t) => tf.tidy(() => rowLookup(t, ids())) });
  }
  return out;
}

/** Value and gradients under a fixed upstream gradient, read back. */
async function evaluate(c: Case): Promise<number[][]> {
  const inputs = c.inputs();
  const outs = tf.tidy(() => {
    const value = c.f(...inputs);
    const dy = normal(new Rng(99), value.shape);
    const grads = tf.grads((...xs: Tensor[]) => tf.sum(tf.mul(c.f(...xs), dy)))(inputs);
    return [value, ...grads];
  });
  try {
    return (await Promise.all(outs.map((t) => t.data()))).map((a) => Array.from(a as Float32Array));
  } finally {
    tf.dispose([...outs, ...inputs]);
  }
}

/** Integer-valued rows (exact sums in any order), ids with duplicates and out of range. */
async function embeddingExact(): Promise<{ maxAbsDiff: number; rows: number }> {
  const rows = 11;
  const d = 37;
  const idList = [0, 3, 3, -1, 10, 11, 3, 500, 0, 7, -40, 3];
  const rng = new Rng(5);
  const dy = Array.from({ length: idList.length * d }, () => Math.round(rng.normal() * 8));
  const want = new Float64Array(rows * d);
  idList.forEach((id, n) => {
    if (id >= 0 && id < rows) for (let j = 0; j < d; j++) want[id * d + j] += dy[n * d + j];
  });
  const got = tf.tidy(() => embeddingGrad(tf.tensor2d(dy, [idList.length, d]), tf.tensor1d(idList, 'int32'), rows));
  const data = await got.data();
  got.dispose();
  let maxAbsDiff = 0;
  for (let i = 0; i < want.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(data[i] - want[i]));
  return { maxAbsDiff, rows };
}

/**
 * Largest |error| of gelu(u) and gelu'(u), relative to max(|ref|, 1), over 4001 points of
 * [−10, 10]; `tail`: the largest relative error of gelu(u) for u in [−9, −2] (where 1 + erf cancels).
 */
async function geluError(fused: boolean): Promise<{ value: number; grad: number; tail: number }> {
  const { setFusedEnabled } = await import('../../ml/kernels/fused.ts');
  const u = Array.from({ length: 4001 }, (_, i) => -10 + i * 0.005);
  setFusedEnabled(fused);
  const [y, g] = tf.tidy(() => {
    const x = tf.tensor2d(u, [1, u.length]);
    const b = tf.zeros([u.length]);
    return [biasGelu(x, b), tf.grad((t: Tensor) => tf.sum(biasGelu(t, b)))(x)];
  });
  setFusedEnabled(true);
  const [yv, gv] = [await y.data(), await g.data()];
  tf.dispose([y, g]);
  let value = 0;
  let grad = 0;
  let tail = 0;
  u.forEach((v, i) => {
    const cdf = erfcRef(-v / Math.SQRT2) / 2;
    const ref = v * cdf;
    const dref = cdf + (v * Math.exp(-v * v / 2)) / Math.sqrt(2 * Math.PI);
    value = Math.max(value, Math.abs(yv[i] - ref) / Math.max(Math.abs(ref), 1));
    grad = Math.max(grad, Math.abs(gv[i] - dref) / Math.max(Math.abs(dref), 1));
    if (v >= -9 && v <= -2) tail = Math.max(tail, Math.abs(yv[i] - ref) / Math.abs(ref));
  });
  return { value, grad, tail };
}

/** Rows wider than MAX_COLS: both ops decline the call and run as the composite. */
async function wide(): Promise<ReturnType<typeof fusedCounts>> {
  const { MAX_COLS } = await import('../../ml/kernels/webgpu/wgsl.ts');
  resetFusedCounts();
  const d = MAX_COLS + 3;
  const r = new Rng(11);
  await evaluate({ op: 'layerNorm', name: 'wide', inputs: () => [normal(r, [2, d]), normal(r, [d]), normal(r, [d])], f: (x, g, b) => layerNorm(x, g, b) });
  await evaluate({ op: 'biasGelu', name: 'wide', inputs: () => [normal(r, [2, d]), normal(r, [d])], f: (x, b) => biasGelu(x, b) });
  return fusedCounts();
}

/** The self-test of a LayerNorm whose forward shader does not compile must fail, saying why. */
async function brokenShader(): Promise<{ failed?: string }> {
  const { dispatch, pipelineErrors } = await import('../../ml/kernels/webgpu/dispatch.ts');
  const { layerNormImpl } = await import('../../ml/kernels/webgpu/layer-norm.ts');
  const broken: FusedImpl = {
    ...layerNormImpl,
    kernels: layerNormImpl.kernels.map((k) =>
      k.kernelName !== 'TtcLayerNorm'
        ? k
        : {
            ...k,
            kernelFunc: ({ inputs, backend }) => {
              const x = (inputs as Record<string, tf.TensorInfo>).x;
              const kernel = { name: 'ttc_broken', outputs: ['y', 'm', 'r'].map((name) => ({ name, type: 'f32' as const })), inputs: [], body: '@compute @workgroup_size(1) fn main() { y[0] = undefined_name; }' };
              return dispatch(backend, kernel, [1, 1, 1], [], [{ shape: x.shape, dtype: 'float32' }, { shape: [x.shape[0]], dtype: 'float32' }, { shape: [x.shape[0]], dtype: 'float32' }]);
            },
          },
    ),
  };
  const { registerFused } = await import('../../ml/kernels/fused.ts');
  registerFused(broken);
  const r = await selfTestFused(broken);
  registerFused(layerNormImpl); // the working kernels back (left inactive: nothing runs after this)
  await pipelineErrors();
  return { failed: r.failed };
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as FusedChildArgs;
  const t0 = performance.now();
  const info = await initBackend(a.backend, { threads: 1, fastKernels: false, allowSoftwareGpu: a.allowSoftwareGpu, fusedKernels: a.fusedKernels });
  resetFusedCounts();
  const cases = fusedCases();
  const results: CaseResult[] = [];
  const numTensors: number[] = [];
  for (let rep = 0; rep < a.reps; rep++) {
    for (const c of cases) {
      const outputs = await evaluate(c);
      if (rep === 0) results.push({ op: c.op, name: c.name, outputs });
    }
    numTensors.push(tf.memory().numTensors);
  }
  const counts = fusedCounts();
  const r: FusedChildResult = { backend: info.name, log: info.log, fused: info.fused, cases: results, numTensors, counts, ms: 0 };
  if (info.name === 'webgpu' && a.fusedKernels) {
    r.embeddingExact = await embeddingExact();
    r.wide = await wide();
    r.gelu = { fused: await geluError(true), composite: await geluError(false) };
    r.brokenShader = await brokenShader();
  }
  r.ms = performance.now() - t0;
  fs.writeFileSync(process.argv[3], JSON.stringify(r));
}

try {
  await main();
  process.exit(0);
} catch (e) {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
}
