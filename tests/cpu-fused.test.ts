/**
 * The CPU fused kernels (ml/kernels/cpu) on the `cpu` and `wasm` backends against the tfjs
 * composites of ml/kernels/fused.ts on the same backend: values and gradients on odd shapes (not the
 * start-up self-test's), within |fused − composite| ≤ 1e-5 + 1e-4·max|composite| per output; the
 * leading-axes Sum against tfjs's own Sum (1e-5 relative) and the row gather against tfjs's GatherV2
 * (exactly: a copy), with their fallbacks; wasm's copy-free Identity; every call really ran fused; the tensor
 * count stays flat over repeated forward + backward passes.
 */
import test from 'ava';
import '@tensorflow/tfjs-backend-wasm';

import { tf, type Tensor } from '../ml/tf.ts';
import { Rng } from '../core/rng.ts';
import { columnSumStats, cpuFusedImpls, gatherRowsStats, identityStats, installColumnSum, installGatherRows, installSharedIdentity, uninstallColumnSum, uninstallGatherRows, uninstallSharedIdentity } from '../ml/kernels/cpu/index.ts';
import { attention, biasGelu, crossEntropy, fusedCounts, layerNorm, registerFused, resetFusedCounts, rowLookup, setFusedActive, type FusedImpl, type FusedOp } from '../ml/kernels/fused.ts';

const ATOL = 1e-5;
const RTOL = 1e-4;
const BACKENDS = ['cpu', 'wasm'] as const;

function normal(rng: Rng, shape: number[], scale = 1, shift = 0): Tensor {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = rng.normal() * scale + shift;
  return tf.tensor(v, shape, 'float32');
}

interface Case {
  name: string;
  op: FusedOp;
  inputs: (rng: Rng) => Tensor[];
  f: (...xs: Tensor[]) => Tensor;
}

// labels at both ends of the vocabulary; ids with duplicates and the first/last rows
const labels = (n: number, v: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 0 : i === 1 ? v - 1 : (i * 7919) % v));
const CASES: Case[] = [
  { name: 'layerNorm x[53,77]', op: 'layerNorm', inputs: (r) => [normal(r, [53, 77], 4, -1), normal(r, [77], 0.5, 1), normal(r, [77], 0.5)], f: (x, g, b) => layerNorm(x, g, b) },
  { name: 'layerNorm x[1,5]', op: 'layerNorm', inputs: (r) => [normal(r, [1, 5]), normal(r, [5]), normal(r, [5])], f: (x, g, b) => layerNorm(x, g, b) },
  { name: 'biasGelu x[41,130] (|u| up to ~10)', op: 'biasGelu', inputs: (r) => [normal(r, [41, 130], 3.5), normal(r, [130], 1)], f: (x, b) => biasGelu(x, b) },
  { name: 'biasGelu x[3,1]', op: 'biasGelu', inputs: (r) => [normal(r, [3, 1]), normal(r, [1])], f: (x, b) => biasGelu(x, b) },
  {
    name: 'softmaxXent logits[19,1001]',
    op: 'softmaxXent',
    inputs: (r) => [normal(r, [19, 1001], 5)],
    f: (x) => crossEntropy(x, tf.tensor1d(labels(19, 1001), 'int32'), 1001),
  },
  {
    name: 'embeddingGrad table[31,13] ids[67]',
    op: 'embeddingGrad',
    inputs: (r) => [normal(r, [31, 13])],
    f: (t) => tf.mul(rowLookup(t, tf.tensor1d(Array.from({ length: 67 }, (_, i) => (i === 0 ? 0 : i === 1 ? 30 : (i * 13) % 31)), 'int32')), 1.5),
  },
];

const impls = new Map<string, FusedImpl>();

async function use(backend: string): Promise<void> {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
  if (!impls.has(`${backend}/layerNorm`)) {
    for (const impl of cpuFusedImpls(backend)) {
      registerFused(impl);
      impls.set(`${backend}/${impl.op}`, impl);
    }
  }
}

/** Value and gradients of c.f, with fused on or off (off: tfjs's own Sum as well). */
function evaluate(backend: string, c: Case, fused: boolean): Float32Array[] {
  const impl = impls.get(`${backend}/${c.op}`)!;
  setFusedActive(impl, fused);
  if (fused) installColumnSum(backend);
  else uninstallColumnSum(backend);
  const rng = new Rng(42);
  const inputs = c.inputs(rng);
  try {
    return tf.tidy(() => {
      const y = c.f(...inputs);
      const dy = normal(new Rng(7), y.shape);
      const grads = tf.grads((...xs: Tensor[]) => tf.sum(tf.mul(c.f(...xs), dy)))(inputs);
      return [y, ...grads].map((t) => t.dataSync() as Float32Array);
    });
  } finally {
    tf.dispose(inputs);
    setFusedActive(impl, false);
  }
}

function worst(got: Float32Array[], ref: Float32Array[]): { share: number; at: string } {
  let share = 0;
  let at = '';
  for (let t = 0; t < ref.length; t++) {
    let maxRef = 0;
    for (const v of ref[t]) maxRef = Math.max(maxRef, Math.abs(v));
    for (let i = 0; i < ref[t].length; i++) {
      const d = Math.abs(got[t][i] - ref[t][i]);
      const s = Number.isNaN(d) ? Infinity : d / (ATOL + RTOL * maxRef);
      if (s > share) [share, at] = [s, `output ${t} [${i}]: ${got[t][i]} vs ${ref[t][i]}`];
    }
  }
  return { share, at };
}

for (const backend of BACKENDS) {
  for (const c of CASES) {
    test.serial(`${backend}: ${c.name}: value and gradients match the composite`, async (t) => {
      await use(backend);
      const ref = evaluate(backend, c, false);
      resetFusedCounts();
      const got = evaluate(backend, c, true);
      t.true((fusedCounts().fused[c.op] ?? 0) >= 1, `ran fused: ${JSON.stringify(fusedCounts())}`);
      t.falsy(fusedCounts().fallback[c.op], "no call fell back to the composite");
      t.is(got.length, ref.length);
      got.forEach((g, i) => t.is(g.length, ref[i].length, `output ${i} size`));
      const w = worst(got, ref);
      t.true(w.share <= 1, `${(w.share * 100).toFixed(1)}% of the tolerance at ${w.at}`);
    });
  }

  test.serial(`${backend}: leading-axes Sum equals tfjs's Sum; other reductions fall back`, async (t) => {
    await use(backend);
    const rng = new Rng(5);
    const x2 = normal(rng, [129, 67], 2, 1);
    const x3 = normal(rng, [3, 11, 5], 2);
    const calls: Array<[Tensor, number | number[], boolean, boolean]> = [
      [x2, 0, false, true],
      [x2, -2, true, true],
      [x3, [1, 0], false, true],
      [x3, 0, true, true],
      [x2, 1, false, false],
      [x3, [0, 2], false, false],
      [x2, [0, 1], false, false],
    ];
    const run = () => calls.map(([x, axis, keep]) => tf.tidy(() => tf.sum(x, axis, keep)));
    uninstallColumnSum(backend);
    const ref = run();
    installColumnSum(backend);
    const before = { ...columnSumStats };
    const got = run();
    t.is(columnSumStats.fast - before.fast, calls.filter((c) => c[3]).length);
    t.is(columnSumStats.fallback - before.fallback, calls.filter((c) => !c[3]).length);
    for (let i = 0; i < calls.length; i++) {
      t.deepEqual(got[i].shape, ref[i].shape, `call ${i} shape`);
      const a = got[i].dataSync();
      const b = ref[i].dataSync();
      let maxRef = 0;
      for (const v of b) maxRef = Math.max(maxRef, Math.abs(v));
      for (let k = 0; k < b.length; k++) t.true(Math.abs(a[k] - b[k]) <= 1e-5 * Math.max(1, maxRef), `call ${i} [${k}]: ${a[k]} vs ${b[k]}`);
    }
    tf.dispose([x2, x3, ...ref, ...got]);
  });

  test.serial(`${backend}: row GatherV2 equals tfjs's; other gathers fall back; an index out of range is tfjs's error`, async (t) => {
    await use(backend);
    const rng = new Rng(6);
    const x2 = normal(rng, [29, 13]);
    const x3 = normal(rng, [7, 3, 5]);
    const xi = tf.tensor2d([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32');
    const ids = tf.tensor1d([0, 28, 5, 5, 17], 'int32');
    const ids2 = tf.tensor2d([[6, 0], [2, 2], [1, 3]], [3, 2], 'int32');
    const calls: Array<[() => Tensor, boolean]> = [
      [() => tf.gather(x2, ids), true],
      [() => tf.gather(x3, ids2), true],
      [() => tf.gather(x3, tf.tensor1d([2, 0], 'int32'), -3), true],
      [() => tf.gather(x2, tf.tensor1d([12, 0, 3], 'int32'), 1), false],
      [() => tf.gather(xi, tf.tensor1d([2, 0], 'int32')), false],
    ];
    uninstallGatherRows(backend);
    const ref = calls.map(([f]) => tf.tidy(f));
    installGatherRows(backend);
    const before = { ...gatherRowsStats };
    const got = calls.map(([f]) => tf.tidy(f));
    t.is(gatherRowsStats.fast - before.fast, calls.filter((c) => c[1]).length);
    t.is(gatherRowsStats.fallback - before.fallback, calls.filter((c) => !c[1]).length);
    for (let i = 0; i < calls.length; i++) {
      t.deepEqual(got[i].shape, ref[i].shape, `call ${i} shape`);
      t.deepEqual(Array.from(got[i].dataSync()), Array.from(ref[i].dataSync()), `call ${i} values`);
    }
    uninstallGatherRows(backend);
    const refErr = t.throws(() => tf.tidy(() => tf.gather(x2, tf.tensor1d([3, 29], 'int32'))));
    installGatherRows(backend);
    const gotErr = t.throws(() => tf.tidy(() => tf.gather(x2, tf.tensor1d([3, 29], 'int32'))));
    t.is(gotErr?.message, refErr?.message);
    tf.dispose([x2, x3, xi, ids, ids2, ...ref, ...got]);
  });

  test.serial(`${backend}: the tensor count stays flat over repeated fused forward + backward passes`, async (t) => {
    await use(backend);
    installColumnSum(backend);
    for (const impl of cpuFusedImpls(backend)) setFusedActive(impls.get(`${backend}/${impl.op}`)!, true);
    const rng = new Rng(3);
    const table = tf.variable(normal(rng, [50, 24], 0.1));
    const w = tf.variable(normal(rng, [24, 40], 0.2));
    const b = tf.variable(normal(rng, [40], 0.1));
    const g = tf.variable(normal(rng, [24], 0.1, 1));
    const be = tf.variable(normal(rng, [24], 0.1));
    const wo = tf.variable(normal(rng, [40, 50], 0.2));
    const ids = tf.tensor1d(Array.from({ length: 30 }, (_, i) => (i * 17) % 50), 'int32');
    const ys = tf.tensor1d(Array.from({ length: 30 }, (_, i) => (i * 11) % 50), 'int32');
    const step = () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const x = layerNorm(rowLookup(table, ids), g, be);
          const h = biasGelu(tf.matMul(x, w), b);
          // attention, if a CPU implementation is active, or its composite: part of the same model
          const hh = attention(h, h, h, 2, 2);
          return crossEntropy(tf.add(tf.matMul(hh, wo), 0), ys, 50) as tf.Scalar;
        });
        return [value, ...Object.values(grads)].map((x) => x.dataSync()).length;
      });
    step();
    const n0 = tf.memory().numTensors;
    resetFusedCounts();
    for (let i = 0; i < 3; i++) {
      step();
      t.is(tf.memory().numTensors, n0, `after step ${i + 1}`);
    }
    const counts = fusedCounts().fused;
    for (const op of ['layerNorm', 'biasGelu', 'softmaxXent', 'embeddingGrad']) t.true((counts[op] ?? 0) >= 3, `${op} ran fused: ${JSON.stringify(counts)}`);
    for (const impl of cpuFusedImpls(backend)) setFusedActive(impls.get(`${backend}/${impl.op}`)!, false);
    tf.dispose([table, w, b, g, be, wo, ids, ys]);
  });
}

test.serial('wasm: the copy-free Identity shares memory; a clone outlives its source and a variable assigned after it', async (t) => {
  await use('wasm');
  installSharedIdentity('wasm');
  const before = { ...identityStats };
  const x = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
  const xi = tf.tensor1d([7, 8, 9], 'int32');
  const n0 = tf.memory().numDataBuffers;
  const c = tf.clone(x);
  const ci = tf.clone(xi);
  t.is(identityStats.shared - before.shared, 2);
  t.is(tf.memory().numDataBuffers, n0, 'no new buffer');
  x.dispose();
  xi.dispose();
  t.deepEqual(Array.from(c.dataSync()), [1, 2, 3, 4, 5, 6]);
  t.deepEqual(Array.from(ci.dataSync()), [7, 8, 9]);
  t.is(ci.dtype, 'int32');
  const v = tf.variable(tf.tensor1d([1, 2]));
  const vc = tf.clone(v);
  v.assign(tf.tensor1d([5, 6]));
  t.deepEqual(Array.from(vc.dataSync()), [1, 2]);
  t.deepEqual(Array.from(v.dataSync()), [5, 6]);
  // gradients through a clone (tf.customGrad saves clones) are unchanged
  const w = tf.tensor1d([0.5, -1, 2]);
  const g = tf.grad((a: Tensor) => tf.sum(tf.mul(tf.clone(a), a)))(w);
  t.deepEqual(Array.from(g.dataSync()), [1, -2, 4]);
  uninstallSharedIdentity('wasm');
  const copy = tf.clone(c);
  t.is(identityStats.copied - before.copied, 0, 'the original copies (not counted)');
  t.deepEqual(Array.from(copy.dataSync()), [1, 2, 3, 4, 5, 6]);
  installSharedIdentity('wasm');
  tf.dispose([c, ci, v, vc, w, g, copy]);
});
