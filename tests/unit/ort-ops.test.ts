/**
 * The cpu backend's onnxruntime element-wise / reduction / transpose / softmax kernels
 * (ml/kernels/ort-ops.ts) against tfjs's own cpu kernels, on odd shapes: values of every replaced
 * kernel, with broadcasting both ways, and the gradients of a chain that uses them (LayerNorm,
 * exact GELU, softmax attention, transposes, reductions) as the model does. Real onnxruntime.
 */
import test from 'ava';

import { tf } from '../../ml/tf.ts';
import { fastKernelStats, registerFastCpuKernels, resetFastKernelStats, unregisterFastCpuKernels } from '../../ml/kernels/index.ts';
import { ORT_OP_KERNELS } from '../../ml/kernels/ort-ops.ts';
import { relErr, seededRand } from '../kit/kernel-check.ts';

type T = tf.Tensor;

const gen = seededRand(777);
const rand = gen.rand;

/** f with tfjs's kernels and with ours (every op size takes our path: opsMinElements 1); values, shapes and how many calls were ours. */
async function both(f: () => T[]): Promise<{ ref: T[]; got: T[]; fast: number }> {
  unregisterFastCpuKernels();
  const start = gen.seed; // the same random inputs for both runs
  const ref = tf.tidy(f);
  gen.seed = start;
  const r = await registerFastCpuKernels({ threads: 2, opsMinElements: 1 });
  if (!r.ok) throw new Error(`fast kernels did not load: ${r.reason}`);
  resetFastKernelStats();
  const got = tf.tidy(f);
  return { ref, got, fast: fastKernelStats().opsFast };
}

test.before(async () => {
  await tf.setBackend('cpu');
});
test.after.always(() => unregisterFastCpuKernels());

const a = () => rand([3, 17, 5]);
const cases: Array<[string, () => T]> = [
  ['add same shape', () => tf.add(a(), rand([3, 17, 5]))],
  ['add bias [n]', () => tf.add(a(), rand([5]))],
  ['sub column [.., 1]', () => tf.sub(a(), rand([3, 17, 1]))],
  ['mul scalar', () => tf.mul(a(), 0.37)],
  ['mul broadcast both ways', () => tf.mul(rand([3, 1, 5]), rand([17, 1]))],
  ['div', () => tf.div(a(), rand([3, 17, 5], 0.5, 2))],
  ['scalar minus tensor', () => tf.sub(1, a())],
  ['maximum / minimum', () => tf.add(tf.maximum(a(), rand([5])), tf.minimum(a(), 0))],
  ['squared difference', () => tf.squaredDifference(a(), rand([3, 1, 5]))],
  ['exp erf neg tanh', () => tf.add(tf.add(tf.exp(a()), tf.erf(a())), tf.add(tf.neg(a()), tf.tanh(a())))],
  ['sqrt rsqrt log reciprocal', () => {
    const p = rand([3, 17, 5], 0.1, 3);
    return tf.add(tf.add(tf.sqrt(p), tf.rsqrt(p)), tf.add(tf.log(p), tf.reciprocal(p)));
  }],
  ['square abs sigmoid relu', () => tf.add(tf.add(tf.square(a()), tf.abs(a())), tf.add(tf.sigmoid(a()), tf.relu(a())))],
  ['sum over axis 0', () => tf.sum(a(), 0)],
  ['sum over axes 0,2 keepDims', () => tf.sum(a(), [0, 2], true)],
  ['sum of everything', () => tf.sum(a())],
  ['mean over -1 keepDims', () => tf.mean(a(), -1, true)],
  ['max over axis 1', () => tf.max(a(), 1)],
  ['transpose [0,2,1,3]', () => tf.transpose(rand([2, 7, 3, 5]), [0, 2, 1, 3])],
  ['transpose 2-D', () => tf.transpose(rand([13, 9]))],
  ['softmax over the last axis', () => tf.softmax(rand([6, 11, 13], -4, 4))],
];

for (const [name, f] of cases) {
  test.serial(`${name}: same values as tfjs cpu`, async (t) => {
    const { ref, got, fast } = await both(() => [f()]);
    t.deepEqual(got[0]!.shape, ref[0]!.shape);
    t.true(fast > 0, 'onnxruntime path taken');
    const e = relErr(ref[0]!.dataSync() as Float32Array, got[0]!.dataSync() as Float32Array);
    t.true(e < 1e-5, `relative error ${e}`);
    tf.dispose([...ref, ...got]);
  });
}

test.serial('int32 ops and tiny tensors keep tfjs kernels (fallback)', async (t) => {
  const r = await registerFastCpuKernels({ threads: 2 }); // default opsMinElements
  t.true(r.ok);
  resetFastKernelStats();
  const x = tf.add(tf.tensor1d([1, 2, 3], 'int32'), tf.tensor1d([4, 5, 6], 'int32'));
  const y = tf.mul(tf.tensor1d([1, 2]), 3);
  t.deepEqual(Array.from(x.dataSync()), [5, 7, 9]);
  t.deepEqual(Array.from(y.dataSync()), [3, 6]);
  t.is(fastKernelStats().opsFast, 0);
  t.true(fastKernelStats().opsFallback >= 2);
  tf.dispose([x, y]);
});

test.serial('every replaced kernel is one tfjs has on cpu', (t) => {
  for (const k of ORT_OP_KERNELS) t.truthy(tf.getKernel(k, 'cpu') ?? null, k);
});

test.serial('gradients of a transformer-like chain (LayerNorm, GELU, softmax attention) match tfjs cpu', async (t) => {
  const B = 3;
  const T = 7;
  const h = 2;
  const dh = 5;
  const d = h * dh;
  const x0 = rand([B * T, d]);
  const g0 = rand([d], 0.5, 1.5);
  const b0 = rand([d]);
  const w0 = rand([d, d]);
  const loss = (x: T, g: T, b: T, w: T): tf.Scalar => {
    const { mean, variance } = tf.moments(x, -1, true);
    const n = tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-12))), g), b);
    const split = (u: T) => tf.reshape(tf.transpose(tf.reshape(u, [B, T, h, dh]), [0, 2, 1, 3]), [B * h, T, dh]);
    const q = split(tf.matMul(n, w));
    const p = tf.softmax(tf.mul(tf.matMul(q, q, false, true), 1 / Math.sqrt(dh)));
    const ctx = tf.reshape(tf.transpose(tf.reshape(tf.matMul(p, q), [B, h, T, dh]), [0, 2, 1, 3]), [B * T, d]);
    const gelu = tf.mul(tf.mul(ctx, 0.5), tf.add(1, tf.erf(tf.mul(ctx, Math.SQRT1_2))));
    return tf.mean(tf.square(tf.add(gelu, x)));
  };
  const grads = () => {
    const { value, grads: gs } = tf.valueAndGrads(loss as unknown as (...ts: T[]) => tf.Scalar)([x0, g0, b0, w0]);
    return [value, ...gs];
  };
  const { ref, got, fast } = await both(grads);
  t.true(fast > 20, `onnxruntime path taken (${fast} calls)`);
  for (let i = 0; i < ref.length; i++) {
    const e = relErr(ref[i]!.dataSync() as Float32Array, got[i]!.dataSync() as Float32Array);
    t.true(e < 1e-4, `output ${i}: relative error ${e}`);
  }
  tf.dispose([...ref, ...got, x0, g0, b0, w0]);
});

test.serial('row gather (embedding lookup) matches tfjs, duplicates and odd sizes; other gathers keep tfjs', async (t) => {
  const { ref, got } = await both(() => {
    const table = rand([13, 7]);
    const ids = tf.tensor1d([0, 12, 3, 3, 12, 5, 0], 'int32');
    const cols = tf.gather(rand([5, 9]), tf.tensor1d([8, 0, 8], 'int32'), 1); // axis 1: tfjs's kernel
    const g = tf.grads((x: T) => tf.sum(tf.mul(tf.gather(x, ids), rand([7, 7]))))([table])[0]!;
    return [tf.gather(table, ids), cols, g];
  });
  for (let i = 0; i < ref.length; i++) {
    t.deepEqual(got[i]!.shape, ref[i]!.shape);
    t.deepEqual(Array.from(got[i]!.dataSync()), Array.from(ref[i]!.dataSync()));
  }
  tf.dispose([...ref, ...got]);
});
