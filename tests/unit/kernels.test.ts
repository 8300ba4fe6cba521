/**
 * The fast CPU matmul kernels (ml/kernels) against tfjs's own cpu (and wasm) kernels: every
 * transpose combination, odd sizes, batch broadcasting, fused bias + activation, and gradients.
 * Real onnxruntime, real tfjs; each case is computed twice, with the fast kernels registered and
 * with the originals restored.
 */
import test from 'ava';
import '@tensorflow/tfjs-backend-wasm';

import { tf } from '../../ml/tf.ts';
import {
  fastCpuKernelsActive,
  fastKernelStats,
  getFastKernelThreads,
  registerFastCpuKernels,
  resetFastKernelStats,
  setFastKernelThreads,
  unregisterFastCpuKernels,
} from '../../ml/kernels/index.ts';
import { relErr, seededRand } from '../kit/kernel-check.ts';

type T = tf.Tensor;

const gen = seededRand(12345);
const rand = (shape: number[]) => gen.rand(shape);

async function fastOn(): Promise<void> {
  const r = await registerFastCpuKernels();
  if (!r.ok) throw new Error(`fast kernels did not load: ${r.reason}`);
}

/** Runs f with the original kernels and with the fast ones; returns both outputs' values. */
async function both(f: () => T | T[]): Promise<{ ref: Float32Array[]; got: Float32Array[]; shapes: number[][][] }> {
  const values = (x: T | T[]) => (Array.isArray(x) ? x : [x]);
  unregisterFastCpuKernels();
  const r = values(tf.tidy(f));
  await fastOn();
  const g = values(tf.tidy(f));
  const out = {
    ref: r.map((t) => t.dataSync() as Float32Array),
    got: g.map((t) => t.dataSync() as Float32Array),
    shapes: [r.map((t) => t.shape), g.map((t) => t.shape)],
  };
  tf.dispose([...r, ...g]);
  return out;
}

/** f on the wasm backend with the fast kernels, against f on tfjs cpu's original kernels. */
async function wasmVsCpu(f: () => T): Promise<{ ref: Float32Array[]; got: Float32Array[]; shapes: number[][][] }> {
  await fastOn();
  const got = tf.tidy(f);
  await tf.setBackend('cpu');
  unregisterFastCpuKernels();
  const ref = tf.tidy(f);
  await tf.setBackend('wasm');
  await fastOn();
  const out = { ref: [ref.dataSync() as Float32Array], got: [got.dataSync() as Float32Array], shapes: [[ref.shape], [got.shape]] };
  tf.dispose([got, ref]);
  return out;
}

function close(t: import('ava').ExecutionContext, res: Awaited<ReturnType<typeof both>>, what: string, tol = 1e-5): void {
  t.deepEqual(res.shapes[1], res.shapes[0], `${what}: shapes`);
  res.ref.forEach((r, i) => {
    const e = relErr(r, res.got[i]);
    if (!(e <= tol)) t.fail(`${what}: output ${i} relative error ${e}`);
  });
}

const TRANSPOSES: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];
const SIZES = [1, 3, 17, 65, 130];

function mm2(m: number, k: number, n: number, tA: boolean, tB: boolean): [T, T] {
  return [rand(tA ? [k, m] : [m, k]), rand(tB ? [n, k] : [k, n])];
}

test.before(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

test.after.always(() => {
  unregisterFastCpuKernels();
});

test.serial('registers on cpu (and wasm), reports the impl, and unregisters back to the originals', async (t) => {
  const origCpu = tf.getKernel('BatchMatMul', 'cpu')!.kernelFunc;
  const r = await registerFastCpuKernels({ threads: 2 });
  t.true(r.ok, r.reason);
  t.true(r.backends.includes('cpu'));
  t.true(r.backends.includes('wasm'), 'the wasm backend is registered in this process');
  t.is(r.backend, r.backends.join(','));
  t.regex(r.impl, /^onnxruntime-node \d+\.\d+/);
  t.is(r.threads, 2);
  t.true(fastCpuKernelsActive());
  t.not(tf.getKernel('BatchMatMul', 'cpu')!.kernelFunc, origCpu);
  // registering twice is fine
  t.true((await registerFastCpuKernels()).ok);
  unregisterFastCpuKernels();
  t.false(fastCpuKernelsActive());
  t.is(tf.getKernel('BatchMatMul', 'cpu')!.kernelFunc, origCpu);
});

test.serial('returns ok:false (never throws) where nothing can be patched', async (t) => {
  const r = await registerFastCpuKernels({ backends: ['no-such-backend'] });
  t.false(r.ok);
  t.truthy(r.reason);
  t.false(fastCpuKernelsActive());
});

test.serial('2-D matMul, all transposes, odd sizes, equals tfjs cpu', async (t) => {
  resetFastKernelStats();
  for (const [tA, tB] of TRANSPOSES) {
    for (const m of SIZES) {
      for (const k of SIZES) {
        for (const n of SIZES) {
          const [a, b] = mm2(m, k, n, tA, tB);
          close(t, await both(() => tf.matMul(a, b, tA, tB)), `${m}x${k}x${n} tA=${tA} tB=${tB}`);
          tf.dispose([a, b]);
        }
      }
    }
  }
  const s = fastKernelStats();
  t.is(s.fast, 4 * SIZES.length ** 3, 'every product took the fast path');
  t.is(s.fallback, 0);
});

test.serial('batched matMul (rank 3 and 4, batch broadcasting 1 vs B, rank 3 x rank 2)', async (t) => {
  const cases: [number[], number[]][] = [
    [[5], [5]],
    [[1], [5]],
    [[5], [1]],
    [[5], []],
    [[], [5]],
    [[2, 3], [2, 3]],
    [[2, 3], []],
    [[1, 1], [2, 3]],
  ];
  resetFastKernelStats();
  for (const [outA, outB] of cases) {
    for (const [tA, tB] of TRANSPOSES) {
      for (const [m, k, n] of [
        [17, 65, 3],
        [64, 64, 64],
        [1, 130, 17],
      ]) {
        const a = rand([...outA, ...(tA ? [k, m] : [m, k])]);
        const b = rand([...outB, ...(tB ? [n, k] : [k, n])]);
        close(t, await both(() => tf.matMul(a, b, tA, tB)), `[${outA}] x [${outB}] ${m}x${k}x${n} tA=${tA} tB=${tB}`);
        tf.dispose([a, b]);
      }
    }
  }
  t.is(fastKernelStats().fallback, 0);
});

test.serial('cases it leaves to tfjs still give tfjs results and errors', async (t) => {
  await fastOn();
  resetFastKernelStats();
  // int32 goes to the original kernel
  const ai = tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32');
  const c = tf.matMul(ai, ai);
  t.deepEqual(Array.from(c.dataSync()), [7, 10, 15, 22]);
  t.is(c.dtype, 'int32');
  t.is(fastKernelStats().fallback, 1);
  // inner-dimension mismatch: tfjs's own error
  const a = rand([3, 4]);
  const b = rand([5, 6]);
  t.throws(() => tf.matMul(a, b), { message: /inner shapes/ });
  // empty tensors
  const e = tf.matMul(tf.zeros([0, 4]), rand([4, 3]));
  t.deepEqual(e.shape, [0, 3]);
  tf.dispose([ai, c, a, b, e]);
});

test.serial('fused matMul: bias and every activation tfjs passes, all transposes', async (t) => {
  const acts = ['linear', 'relu', 'elu', 'relu6', 'leakyrelu', 'sigmoid'] as const;
  resetFastKernelStats();
  let calls = 0;
  for (const [tA, tB] of TRANSPOSES) {
    for (const [m, k, n] of [
      [17, 65, 130],
      [1, 3, 17],
      [130, 17, 1],
    ]) {
      const [a, b] = mm2(m, k, n, tA, tB);
      // scale up so relu6's clipping is exercised
      const a4 = tf.mul(a, 4) as T;
      const biases: (T | undefined)[] = [undefined, rand([n]), rand([1, n]), tf.scalar(0.5)];
      for (const bias of biases) {
        for (const activation of acts) {
          const res = await both(() =>
            tf.fused.matMul({ a: a4 as tf.Tensor2D, b: b as tf.Tensor2D, transposeA: tA, transposeB: tB, bias, activation, leakyreluAlpha: 0.15 }),
          );
          close(t, res, `fused ${m}x${k}x${n} tA=${tA} tB=${tB} bias=${bias?.shape} ${activation}`);
          calls++;
        }
      }
      tf.dispose([a, b, a4, ...biases.filter((x): x is T => !!x)]);
    }
  }
  t.is(fastKernelStats().fast, calls);
  t.is(fastKernelStats().fallback, 0);
});

test.serial('fused matMul: batched, and the cases that fall back (prelu, [m, n] bias)', async (t) => {
  for (const [tA, tB] of TRANSPOSES) {
    const a = rand(tA ? [4, 65, 17] : [4, 17, 65]);
    const b = rand(tB ? [4, 3, 65] : [4, 65, 3]);
    const bias = rand([3]);
    close(t, await both(() => tf.fused.matMul({ a: a as tf.Tensor3D, b: b as tf.Tensor3D, transposeA: tA, transposeB: tB, bias, activation: 'relu' })), `batched fused tA=${tA} tB=${tB}`);
    tf.dispose([a, b, bias]);
  }
  const a = rand([17, 65]);
  const b = rand([65, 3]);
  const alpha = rand([3]);
  const bias2 = rand([17, 3]);
  resetFastKernelStats();
  close(t, await both(() => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, activation: 'prelu', preluActivationWeights: alpha })), 'prelu');
  close(t, await both(() => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: bias2, activation: 'relu' })), '[m, n] bias');
  t.is(fastKernelStats().fast, 0);
  t.is(fastKernelStats().fallback, 2);
  tf.dispose([a, b, alpha, bias2]);
});

test.serial('gradients through a matMul chain equal the reference within 1e-4 relative', async (t) => {
  const x = rand([33, 20]);
  const w1 = rand([20, 48]);
  const b1 = rand([48]);
  const w2 = rand([48, 20]);
  const q = rand([4, 9, 16]);
  const kk = rand([4, 9, 16]);
  const loss = (xx: T, ww1: T, bb1: T, ww2: T, qq: T, kq: T): T => {
    const h = tf.fused.matMul({ a: xx as tf.Tensor2D, b: ww1 as tf.Tensor2D, bias: bb1, activation: 'relu' });
    const o = tf.matMul(h, ww2);
    const scores = tf.matMul(qq, kq, false, true); // attention-shaped [4, 9, 9]
    const ctx = tf.matMul(tf.softmax(scores), kq); // [4, 9, 16]
    return tf.add(tf.sum(tf.square(o)), tf.sum(tf.mul(ctx, ctx)));
  };
  const g = tf.grads(loss as (...args: T[]) => T);
  const res = await both(() => g([x, w1, b1, w2, q, kk]));
  t.is(res.ref.length, 6);
  close(t, res, 'grads', 1e-4);
  tf.dispose([x, w1, b1, w2, q, kk]);
});

test.serial('thread setter: 1 thread gives the same result', async (t) => {
  await fastOn();
  const before = getFastKernelThreads();
  setFastKernelThreads(1);
  t.is(getFastKernelThreads(), 1);
  const [a, b] = mm2(130, 130, 65, false, true);
  close(t, await both(() => tf.matMul(a, b, false, true)), '1 thread');
  setFastKernelThreads(0);
  t.is(getFastKernelThreads(), 1, 'at least one thread');
  setFastKernelThreads(before);
  tf.dispose([a, b]);
});

test.serial('wasm backend: matMul, fused and gradients equal tfjs wasm (or cpu, where wasm is wrong)', async (t) => {
  await tf.setBackend('wasm');
  await tf.ready();
  try {
    resetFastKernelStats();
    for (const [tA, tB] of TRANSPOSES) {
      const [a, b] = mm2(65, 130, 40, tA, tB);
      close(t, await both(() => tf.matMul(a, b, tA, tB)), `wasm 2-D tA=${tA} tB=${tB}`);
      const a3 = rand(tA ? [3, 64, 65] : [3, 65, 64]);
      const b3 = rand(tB ? [1, 40, 64] : [1, 64, 40]);
      close(t, await both(() => tf.matMul(a3, b3, tA, tB)), `wasm batched tA=${tA} tB=${tB}`);
      // tfjs-wasm 4.22's own _FusedMatMul is wrong with a bias or relu once a transpose or a batch is
      // involved (docs/kernels.md): compare fused results with tfjs cpu instead
      const bias = rand([40]);
      const fused = () => tf.fused.matMul({ a: a3 as tf.Tensor3D, b: b3 as tf.Tensor3D, transposeA: tA, transposeB: tB, bias, activation: 'relu' });
      close(t, await wasmVsCpu(fused), `wasm fused (batched) vs cpu tA=${tA} tB=${tB}`);
      const bias2 = rand([40]);
      const fused2 = () => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, transposeA: tA, transposeB: tB, bias: bias2, activation: 'elu' });
      close(t, await wasmVsCpu(fused2), `wasm fused 2-D vs cpu tA=${tA} tB=${tB}`);
      tf.dispose([a, b, a3, b3, bias, bias2]);
    }
    t.is(fastKernelStats().fallback, 0);
    t.true(fastKernelStats().fast >= 16);
    const x = rand([40, 64]);
    const w = rand([64, 48]);
    const g = tf.grads((xx: T, ww: T) => tf.sum(tf.square(tf.matMul(xx, ww))));
    close(t, await both(() => g([x, w])), 'wasm grads', 1e-4);
    // tiny products stay on wasm's own kernel (below minWork)
    resetFastKernelStats();
    const s = tf.matMul(rand([4, 4]), rand([4, 4]));
    t.is(fastKernelStats().fallback, 1);
    tf.dispose([x, w, s]);
  } finally {
    await tf.setBackend('cpu');
  }
});

test.serial('a small model trains identically on the fast path', async (t) => {
  const run = (): number[] => {
    gen.seed = 777;
    const w1 = tf.variable(rand([16, 32]));
    const w2 = tf.variable(rand([32, 4]));
    const x = rand([64, 16]);
    const y = rand([64, 4]);
    const opt = tf.train.adam(0.01);
    const losses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const l = opt.minimize(() => tf.losses.meanSquaredError(y, tf.matMul(tf.relu(tf.matMul(x, w1)), w2)), true) as tf.Scalar;
      losses.push(l.dataSync()[0]);
      l.dispose();
    }
    tf.dispose([w1, w2, x, y]);
    opt.dispose();
    return losses;
  };
  unregisterFastCpuKernels();
  const ref = run();
  await fastOn();
  const got = run();
  ref.forEach((r, i) => t.true(Math.abs(r - got[i]) <= 1e-4 * Math.abs(r), `step ${i}: ${got[i]} vs ${r}`));
});
