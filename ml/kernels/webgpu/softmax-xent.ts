/**
 * Softmax cross-entropy on webgpu (TtcSoftmaxXent, TtcSoftmaxXentGrad; contract in
 * ml/kernels/fused.ts). Forward: one workgroup per row, max then Σexp(x − max) by workgroup
 * reductions; outputs loss = lse − x[label] and lse. Backward: one element-wise dispatch,
 * (exp(x − lse) − onehot)·dloss, from the saved lse. A label outside [0, V) has an all-zero
 * one-hot row, as in the composite (tf.oneHot): loss 0, gradient softmax·dloss.
 */
import type { FusedImpl } from '../fused.ts';
import type { tf } from '../../tf.ts';
import { dispatch, grid, GROUP_ID, pipelineErrors, type Kernel } from './dispatch.ts';
import { ENTRY, fitsI32, workgroupFor, workgroupReduce } from './wgsl.ts';

const ELEMENTWISE_WG = 256;

function forwardKernel(v: number): Kernel {
  const wg = workgroupFor(v);
  return {
    name: `ttc_softmax_xent_${v}`,
    outputs: [
      { name: 'loss', type: 'f32' },
      { name: 'lse', type: 'f32' },
    ],
    inputs: [
      { name: 'logits', type: 'f32' },
      { name: 'labels', type: 'i32' },
    ],
    uniforms: [{ name: 'rows', type: 'i32' }],
    body: `
const V: i32 = ${v};
const WG: u32 = ${wg}u;
${workgroupReduce('rowMax', 'f32', (a, b) => `max(${a}, ${b})`)}
${workgroupReduce('rowSum', 'f32', (a, b) => `${a} + ${b}`)}
@compute @workgroup_size(WG) fn main(${ENTRY}) {
  let row = i32(${GROUP_ID});
  if (row >= u.rows) { return; }
  let base = row * V;
  var m = -3.402823e38;
  for (var c = i32(lid); c < V; c += i32(WG)) { m = max(m, logits[base + c]); }
  let mx = rowMax(m, lid);
  var s = 0.0;
  for (var c = i32(lid); c < V; c += i32(WG)) { s += exp(logits[base + c] - mx); }
  let l = mx + log(rowSum(s, lid));
  if (lid == 0u) {
    let label = labels[row];
    let valid = label >= 0 && label < V;
    loss[row] = select(0.0, l - logits[base + clamp(label, 0, V - 1)], valid);
    lse[row] = l;
  }
}`,
  };
}

function gradKernel(v: number): Kernel {
  return {
    name: `ttc_softmax_xent_grad_${v}`,
    outputs: [{ name: 'dlogits', type: 'f32' }],
    inputs: [
      { name: 'dloss', type: 'f32' },
      { name: 'logits', type: 'f32' },
      { name: 'labels', type: 'i32' },
      { name: 'lse', type: 'f32' },
    ],
    uniforms: [{ name: 'size', type: 'i32' }],
    body: `
const V: i32 = ${v};
@compute @workgroup_size(${ELEMENTWISE_WG}) fn main(${ENTRY}) {
  let i = i32(${GROUP_ID}) * ${ELEMENTWISE_WG} + i32(lid);
  if (i >= u.size) { return; }
  let row = i / V;
  let hot = select(0.0, 1.0, labels[row] == i - row * V);
  dlogits[i] = (exp(logits[i] - lse[row]) - hot) * dloss[row];
}`,
  };
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown };

function softmaxXent({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { logits, labels } = inputs as Record<string, tf.TensorInfo>;
  const [m, v] = logits.shape;
  return dispatch(backend, forwardKernel(v), grid(m), [logits, labels], [{ shape: [m], dtype: 'float32' }, { shape: [m], dtype: 'float32' }], [m]);
}

function softmaxXentGrad({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { dloss, logits, labels, lse } = inputs as Record<string, tf.TensorInfo>;
  const [m, v] = logits.shape;
  return dispatch(backend, gradKernel(v), grid(Math.ceil((m * v) / ELEMENTWISE_WG)), [dloss, logits, labels, lse], [{ shape: [m, v], dtype: 'float32' }], [m * v]);
}

export const softmaxXentImpl: FusedImpl = {
  op: 'softmaxXent',
  backend: 'webgpu',
  describe: 'wgsl: one workgroup per row (max, logsumexp, loss); closed-form gradient element-wise (1 dispatch each way)',
  kernels: [
    { kernelName: 'TtcSoftmaxXent', backendName: 'webgpu', kernelFunc: softmaxXent as unknown as tf.KernelFunc },
    { kernelName: 'TtcSoftmaxXentGrad', backendName: 'webgpu', kernelFunc: softmaxXentGrad as unknown as tf.KernelFunc },
  ],
  settle: pipelineErrors,
  supports: ({ shapes }) => fitsI32(shapes[0]) && shapes[0][0] > 0 && shapes[0][1] > 0,
};
