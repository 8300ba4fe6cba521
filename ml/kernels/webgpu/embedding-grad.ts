/**
 * The embedding gradient on webgpu (TtcEmbeddingGrad; contract in ml/kernels/fused.ts): dy's rows
 * summed into a [rows, D] table by id. The table is zeroed by a buffer clear (no dispatch), then in
 * one dispatch each thread takes one element of dy and adds it to its table row with a float atomic add (compare-exchange on the bits as
 * atomic<u32>, as tfjs's scatter does), so duplicate ids sum; an id outside [0, rows) is skipped.
 * Unlike tfjs's scatterND (which the composite uses) the ids are read as int32, not rounded floats.
 * The order in which duplicates are added is not fixed, so the sum may differ in the last bits
 * from run to run (as every atomic reduction on a GPU).
 */
import type { FusedImpl } from '../fused.ts';
import type { tf } from '../../tf.ts';
import { dispatch, grid, GROUP_ID, pipelineErrors, zeros, type Kernel } from './dispatch.ts';
import { ENTRY, fitsI32 } from './wgsl.ts';

const WG = 256;

function scatterKernel(d: number): Kernel {
  return {
    name: `ttc_embedding_grad_${d}`,
    outputs: [{ name: 'table', type: 'atomic<u32>' }],
    inputs: [
      { name: 'dy', type: 'f32' },
      { name: 'ids', type: 'i32' },
    ],
    uniforms: [
      { name: 'size', type: 'i32' },
      { name: 'rows', type: 'i32' },
    ],
    body: `
const D: i32 = ${d};
@compute @workgroup_size(${WG}) fn main(${ENTRY}) {
  let i = i32(${GROUP_ID}) * ${WG} + i32(lid);
  if (i >= u.size) { return; }
  let n = i / D;
  let id = ids[n];
  if (id < 0 || id >= u.rows) { return; }
  let v = dy[i];
  let at = id * D + (i - n * D);
  var old = 0u; // the bits of 0.0: a first add to a zeroed slot takes one compare-exchange (as tfjs's scatter)
  loop {
    let r = atomicCompareExchangeWeak(&table[at], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`,
  };
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function embeddingGrad({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { dy, ids } = inputs as Record<string, tf.TensorInfo>;
  const [n, d] = dy.shape;
  const rows = (attrs as unknown as { rows: number }).rows;
  const table = zeros(backend, [rows, d]);
  return dispatch(backend, scatterKernel(d), grid(Math.ceil((n * d) / WG)), [dy, ids], [table], [n * d, rows]);
}

export const embeddingGradImpl: FusedImpl = {
  op: 'embeddingGrad',
  backend: 'webgpu',
  describe: 'wgsl: buffer clear, then float atomic adds by int32 id (1 dispatch)',
  kernels: [{ kernelName: 'TtcEmbeddingGrad', backendName: 'webgpu', kernelFunc: embeddingGrad as unknown as tf.KernelFunc }],
  settle: pipelineErrors,
  supports: ({ shapes, attrs }) => Number(attrs?.rows ?? 0) > 0 && shapes[0][1] > 0 && fitsI32(shapes[0]) && fitsI32([Number(attrs?.rows), shapes[0][1]]),
};
