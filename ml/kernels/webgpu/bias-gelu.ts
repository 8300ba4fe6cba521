/**
 * bias + exact GELU on webgpu (TtcBiasGelu, TtcBiasGeluGrad; contract in ml/kernels/fused.ts).
 * gelu(u) = u·Φ(u), Φ(u) = erfc(−u/√2)/2 (erfc from ./wgsl.ts), u = x + bias.
 * Forward: one element-wise dispatch. Backward: one dispatch in which each workgroup takes a block
 * of rows, writes dx = dy·(Φ(u) + u·φ(u)) and keeps its columns' dbias sums in registers (one row
 * of partial sums per block); a second dispatch adds the partials per column.
 */
import type { FusedImpl } from '../fused.ts';
import type { tf } from '../../tf.ts';
import { dispatch, grid, GROUP_ID, pipelineErrors, release, type Kernel } from './dispatch.ts';
import { columnGroups, columnSumKernel, ENTRY, ERFC, fitsI32, MAX_COLS, rowBlocks, workgroupFor } from './wgsl.ts';

const ELEMENTWISE_WG = 256;

const PHI = `
${ERFC}
fn phi_cdf(u: f32) -> f32 { return 0.5 * erfc_(-u * 0.70710678118654752); }
fn phi_pdf(u: f32) -> f32 { return 0.39894228040143268 * exp(-0.5 * u * u); }`;

function forwardKernel(f: number): Kernel {
  return {
    name: `ttc_bias_gelu_${f}`,
    outputs: [{ name: 'y', type: 'f32' }],
    inputs: [
      { name: 'x', type: 'f32' },
      { name: 'bias', type: 'f32' },
    ],
    uniforms: [{ name: 'size', type: 'i32' }],
    body: `
const F: i32 = ${f};
${PHI}
@compute @workgroup_size(${ELEMENTWISE_WG}) fn main(${ENTRY}) {
  let i = i32(${GROUP_ID}) * ${ELEMENTWISE_WG} + i32(lid);
  if (i >= u.size) { return; }
  let v = x[i] + bias[i % F];
  y[i] = v * phi_cdf(v);
}`,
  };
}

function gradKernel(f: number): Kernel {
  const wg = workgroupFor(f);
  return {
    name: `ttc_bias_gelu_grad_${f}`,
    outputs: [
      { name: 'dx', type: 'f32' },
      { name: 'dbias_parts', type: 'f32' },
    ],
    inputs: [
      { name: 'dy', type: 'f32' },
      { name: 'x', type: 'f32' },
      { name: 'bias', type: 'f32' },
    ],
    uniforms: [
      { name: 'rows', type: 'i32' },
      { name: 'perBlock', type: 'i32' },
      { name: 'blocks', type: 'i32' },
    ],
    body: `
const F: i32 = ${f};
const WG: u32 = ${wg}u;
const K: i32 = ${Math.ceil(f / wg)}; // columns per thread
${PHI}
@compute @workgroup_size(WG) fn main(${ENTRY}) {
  let block = i32(${GROUP_ID});
  if (block >= u.blocks) { return; }
  let r0 = block * u.perBlock;
  let r1 = min(r0 + u.perBlock, u.rows);
  var acc: array<f32, K>;
  var b: array<f32, K>;
  for (var k = 0; k < K; k++) { let c = min(i32(lid) + k * i32(WG), F - 1); b[k] = bias[c]; }
  for (var r = r0; r < r1; r++) {
    for (var k = 0; k < K; k++) {
      let c = i32(lid) + k * i32(WG);
      if (c < F) {
        let i = r * F + c;
        let v = x[i] + b[k];
        let g = dy[i] * (phi_cdf(v) + v * phi_pdf(v));
        dx[i] = g;
        acc[k] += g;
      }
    }
  }
  for (var k = 0; k < K; k++) {
    let c = i32(lid) + k * i32(WG);
    if (c < F) { dbias_parts[block * F + c] = acc[k]; }
  }
}`,
  };
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown };

function biasGelu({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { x, bias } = inputs as Record<string, tf.TensorInfo>;
  const [n, f] = x.shape;
  return dispatch(backend, forwardKernel(f), grid(Math.ceil((n * f) / ELEMENTWISE_WG)), [x, bias], [{ shape: [n, f], dtype: 'float32' }], [n * f]);
}

function biasGeluGrad({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { dy, x, bias } = inputs as Record<string, tf.TensorInfo>;
  const [n, f] = x.shape;
  const [perBlock, blocks] = rowBlocks(n);
  const [dx, parts] = dispatch(backend, gradKernel(f), grid(blocks), [dy, x, bias], [{ shape: [n, f], dtype: 'float32' }, { shape: [blocks, f], dtype: 'float32' }], [n, perBlock, blocks]);
  const [dbias] = dispatch(backend, columnSumKernel(f, ['dbias']), columnGroups(f), [parts], [{ shape: [f], dtype: 'float32' }], [blocks]);
  release(backend, [parts]);
  return [dx, dbias];
}

export const biasGeluImpl: FusedImpl = {
  op: 'biasGelu',
  backend: 'webgpu',
  describe: 'wgsl: element-wise forward; backward dx per row-block + two-stage dbias (2 dispatches); erfc to 1.2e-7 relative',
  kernels: [
    { kernelName: 'TtcBiasGelu', backendName: 'webgpu', kernelFunc: biasGelu as unknown as tf.KernelFunc },
    { kernelName: 'TtcBiasGeluGrad', backendName: 'webgpu', kernelFunc: biasGeluGrad as unknown as tf.KernelFunc },
  ],
  settle: pipelineErrors,
  supports: ({ shapes }) => fitsI32(shapes[0]) && shapes[0][0] > 0 && shapes[0][1] > 0 && shapes[0][1] <= MAX_COLS,
};
