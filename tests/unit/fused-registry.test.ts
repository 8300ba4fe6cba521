/**
 * The fused-op registry (ml/kernels/fused.ts) and its start-up self-test (fused-check.ts), on the
 * tfjs cpu backend with kernels written here: a correct kernel is activated and used, a wrong or a
 * throwing one stays off with its reason, a declined call runs the composite, and a disabled
 * registry runs every op as the composite.
 */
import test from 'ava';
import { tf } from '../../ml/tf.ts';
import { activateFused } from '../../ml/kernels/fused-check.ts';
import { activeFused, crossEntropy, fusedCounts, registerFused, resetFusedCounts, setFusedActive, setFusedEnabled, type FusedImpl } from '../../ml/kernels/fused.ts';

type CpuBackend = { data: { get(id: object): { values: Float32Array | Int32Array } }; makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo };
const values = (backend: unknown, t: tf.TensorInfo) => (backend as CpuBackend).data.get(t.dataId).values;

/** Softmax cross-entropy on the cpu backend in plain loops; `bug` breaks its gradient. */
function xentImpl(bug: 'none' | 'gradient' | 'throws', supports?: FusedImpl['supports']): FusedImpl {
  return {
    op: 'softmaxXent',
    backend: 'cpu',
    describe: `test kernel (${bug})`,
    supports,
    kernels: [
      {
        kernelName: 'TtcSoftmaxXent',
        backendName: 'cpu',
        kernelFunc: ({ inputs, backend }) => {
          if (bug === 'throws') throw new Error('kernel exploded');
          const x = inputs.logits as tf.TensorInfo;
          const [m, v] = x.shape as [number, number];
          const lv = values(backend, x);
          const labels = values(backend, inputs.labels as tf.TensorInfo);
          const loss = new Float32Array(m);
          const lse = new Float32Array(m);
          for (let r = 0; r < m; r++) {
            let max = -Infinity;
            for (let c = 0; c < v; c++) max = Math.max(max, lv[r * v + c]!);
            let s = 0;
            for (let c = 0; c < v; c++) s += Math.exp(lv[r * v + c]! - max);
            lse[r] = max + Math.log(s);
            loss[r] = lse[r]! - lv[r * v + labels[r]!]!;
          }
          const b = backend as CpuBackend;
          return [b.makeTensorInfo([m], 'float32', loss), b.makeTensorInfo([m], 'float32', lse)];
        },
      },
      {
        kernelName: 'TtcSoftmaxXentGrad',
        backendName: 'cpu',
        kernelFunc: ({ inputs, backend }) => {
          const x = inputs.logits as tf.TensorInfo;
          const [m, v] = x.shape as [number, number];
          const lv = values(backend, x);
          const labels = values(backend, inputs.labels as tf.TensorInfo);
          const lse = values(backend, inputs.lse as tf.TensorInfo);
          const dloss = values(backend, inputs.dloss as tf.TensorInfo);
          const out = new Float32Array(m * v);
          for (let r = 0; r < m; r++) {
            for (let c = 0; c < v; c++) out[r * v + c] = (Math.exp(lv[r * v + c]! - lse[r]!) - (bug === 'gradient' || c !== labels[r] ? 0 : 1)) * dloss[r]!;
          }
          return [(backend as CpuBackend).makeTensorInfo([m, v], 'float32', out)];
        },
      },
    ],
  };
}

function lossAndGrad(logits: tf.Tensor, labels: tf.Tensor): { loss: number; grad: Float32Array } {
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => crossEntropy(tf.add(logits, v0), labels, 7) as tf.Scalar, [v0]);
    return { loss: value.dataSync()[0]!, grad: grads[v0.name]!.dataSync() as Float32Array };
  });
}
let v0: tf.Variable;

test.before(async () => {
  await tf.setBackend('cpu');
  v0 = tf.variable(tf.zeros([5, 7]));
});

test.serial('a correct kernel passes the self-test, is activated and used; results equal the composite within float32 rounding', async (t) => {
  const logits = tf.randomNormal([5, 7], 0, 2, 'float32', 3);
  const labels = tf.tensor1d([0, 6, 3, 3, 1], 'int32');
  setFusedEnabled(true);
  const ref = lossAndGrad(logits, labels); // nothing registered yet: composite
  const impl = xentImpl('none');
  registerFused(impl);
  const log: string[] = [];
  t.deepEqual(await activateFused(log, 'cpu'), ['softmaxXent']);
  t.regex(log.join('\n'), /cpu: fused softmaxXent on \(test kernel \(none\); self-test used [\d.]+% of the tolerance\)/);
  resetFusedCounts();
  const got = lossAndGrad(logits, labels);
  t.is(fusedCounts().fused.softmaxXent, 1);
  t.true(Math.abs(got.loss - ref.loss) < 1e-6);
  for (let i = 0; i < ref.grad.length; i++) t.true(Math.abs(got.grad[i]! - ref.grad[i]!) < 1e-6, `grad ${i}`);
  // The registry off: the composite again.
  setFusedEnabled(false);
  resetFusedCounts();
  lossAndGrad(logits, labels);
  t.is(fusedCounts().fallback.softmaxXent, 1);
  setFusedEnabled(true);
  setFusedActive(impl, false);
  tf.dispose([logits, labels]);
});

test.serial('a wrong gradient or a throwing kernel stays off with the reason; the op runs as the composite', async (t) => {
  for (const [bug, why] of [
    ['gradient', /self-test failed \(logits\[37,101\]: [\d.]+× the tolerance\)/],
    ['throws', /self-test failed \(kernel exploded\)/],
  ] as const) {
    registerFused(xentImpl(bug));
    const log: string[] = [];
    t.deepEqual(await activateFused(log, 'cpu'), [], bug);
    t.regex(log.join('\n'), why, bug);
    t.deepEqual(activeFused('cpu'), []);
    resetFusedCounts();
    const logits = tf.randomNormal([5, 7], 0, 1, 'float32', 5);
    const labels = tf.tensor1d([1, 2, 3, 4, 5], 'int32');
    t.notThrows(() => lossAndGrad(logits, labels));
    t.is(fusedCounts().fallback.softmaxXent, 1, bug);
    tf.dispose([logits, labels]);
  }
});

test.serial('a call the kernel declines runs the composite (per-call fallback), the others run fused', async (t) => {
  const impl = xentImpl('none', ({ shapes }) => shapes[0]![1]! <= 7);
  registerFused(impl);
  // The self-test's case is [37, 101]: declined, so nothing vouches for the kernel and it stays off.
  const log: string[] = [];
  t.deepEqual(await activateFused(log, 'cpu'), []);
  t.regex(log.join('\n'), /declined every self-test case/);
  setFusedActive(impl, true); // as if it had passed
  resetFusedCounts();
  const narrow = tf.randomNormal([3, 7], 0, 1, 'float32', 8);
  const wide = tf.randomNormal([3, 9], 0, 1, 'float32', 7);
  const labels = tf.tensor1d([0, 8, 4], 'int32');
  const numBefore = tf.memory().numTensors;
  tf.tidy(() => {
    crossEntropy(wide, labels, 9);
  });
  tf.tidy(() => {
    crossEntropy(narrow, tf.tensor1d([0, 6, 4], 'int32'), 7);
  });
  t.is(tf.memory().numTensors, numBefore);
  t.deepEqual(fusedCounts(), { fused: { softmaxXent: 1 }, fallback: { softmaxXent: 1 } });
  setFusedActive(impl, false);
  tf.dispose([wide, narrow, labels]);
});
