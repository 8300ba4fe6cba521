/**
 * LayerNorm on webgpu (TtcLayerNorm, TtcLayerNormGrad; contract in ml/kernels/fused.ts).
 * Forward: one dispatch, one workgroup per row (mean, then the variance about it, by workgroup
 * reductions; x is read three times, from cache after the first). Backward: one dispatch in
 * which each workgroup takes a block of rows, writes dx row by row (two row sums in one
 * reduction) and keeps its columns' dγ/dβ sums in registers, leaving one row of partial sums per
 * block; a second dispatch adds those partials per column.
 */
import type { FusedImpl } from '../fused.ts';
import type { tf } from '../../tf.ts';
import { dispatch, grid, GROUP_ID, pipelineErrors, release, type Kernel } from './dispatch.ts';
import { columnGroups, columnSumKernel, ENTRY, fitsI32, MAX_COLS, rowBlocks, workgroupFor, workgroupReduce } from './wgsl.ts';

function forwardKernel(d: number): Kernel {
  const wg = workgroupFor(d);
  return {
    name: `ttc_layer_norm_${d}`,
    outputs: [
      { name: 'y', type: 'f32' },
      { name: 'meanOut', type: 'f32' },
      { name: 'rstdOut', type: 'f32' },
    ],
    inputs: [
      { name: 'x', type: 'f32' },
      { name: 'gamma', type: 'f32' },
      { name: 'beta', type: 'f32' },
    ],
    uniforms: [
      { name: 'rows', type: 'i32' },
      { name: 'eps', type: 'f32' },
    ],
    body: `
const D: i32 = ${d};
const WG: u32 = ${wg}u;
${workgroupReduce('rowSum', 'f32', (a, b) => `${a} + ${b}`)}
@compute @workgroup_size(WG) fn main(${ENTRY}) {
  let row = i32(${GROUP_ID});
  if (row >= u.rows) { return; }
  let base = row * D;
  var s = 0.0;
  for (var c = i32(lid); c < D; c += i32(WG)) { s += x[base + c]; }
  let mean = rowSum(s, lid) / f32(D);
  var q = 0.0;
  for (var c = i32(lid); c < D; c += i32(WG)) { let v = x[base + c] - mean; q += v * v; }
  let rstd = inverseSqrt(rowSum(q, lid) / f32(D) + u.eps);
  for (var c = i32(lid); c < D; c += i32(WG)) { y[base + c] = (x[base + c] - mean) * rstd * gamma[c] + beta[c]; }
  if (lid == 0u) { meanOut[row] = mean; rstdOut[row] = rstd; }
}`,
  };
}

function gradKernel(d: number): Kernel {
  const wg = workgroupFor(d);
  return {
    name: `ttc_layer_norm_grad_${d}`,
    outputs: [
      { name: 'dx', type: 'f32' },
      { name: 'dgamma_parts', type: 'f32' },
      { name: 'dbeta_parts', type: 'f32' },
    ],
    inputs: [
      { name: 'dy', type: 'f32' },
      { name: 'x', type: 'f32' },
      { name: 'gamma', type: 'f32' },
      { name: 'mean', type: 'f32' },
      { name: 'rstd', type: 'f32' },
    ],
    uniforms: [
      { name: 'rows', type: 'i32' },
      { name: 'perBlock', type: 'i32' },
      { name: 'blocks', type: 'i32' },
    ],
    body: `
const D: i32 = ${d};
const WG: u32 = ${wg}u;
const K: i32 = ${Math.ceil(d / wg)}; // columns per thread
${workgroupReduce('rowSum2', 'vec2<f32>', (a, b) => `${a} + ${b}`)}
@compute @workgroup_size(WG) fn main(${ENTRY}) {
  let block = i32(${GROUP_ID});
  if (block >= u.blocks) { return; }
  let r0 = block * u.perBlock;
  let r1 = min(r0 + u.perBlock, u.rows);
  var dg: array<f32, K>;
  var db: array<f32, K>;
  for (var r = r0; r < r1; r++) {
    let m = mean[r];
    let rs = rstd[r];
    let base = r * D;
    // dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ
    var a = vec2<f32>(0.0);
    for (var k = 0; k < K; k++) {
      let c = i32(lid) + k * i32(WG);
      if (c < D) { let g = dy[base + c] * gamma[c]; a += vec2<f32>(g, g * (x[base + c] - m) * rs); }
    }
    let t = rowSum2(a, lid) / f32(D);
    for (var k = 0; k < K; k++) {
      let c = i32(lid) + k * i32(WG);
      if (c < D) {
        let g = dy[base + c];
        let xh = (x[base + c] - m) * rs;
        dx[base + c] = rs * (g * gamma[c] - t.x - xh * t.y);
        dg[k] += g * xh;
        db[k] += g;
      }
    }
  }
  for (var k = 0; k < K; k++) {
    let c = i32(lid) + k * i32(WG);
    if (c < D) { dgamma_parts[block * D + c] = dg[k]; dbeta_parts[block * D + c] = db[k]; }
  }
}`,
  };
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function layerNorm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
  const [n, d] = x.shape;
  const eps = (attrs as unknown as { eps: number }).eps;
  return dispatch(backend, forwardKernel(d), grid(n), [x, gamma, beta], [{ shape: [n, d], dtype: 'float32' }, { shape: [n], dtype: 'float32' }, { shape: [n], dtype: 'float32' }], [n, eps]);
}

function layerNormGrad({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { dy, x, gamma, mean, rstd } = inputs as Record<string, tf.TensorInfo>;
  const [n, d] = x.shape;
  const [perBlock, blocks] = rowBlocks(n);
  const [dx, pg, pb] = dispatch(backend, gradKernel(d), grid(blocks), [dy, x, gamma, mean, rstd], [
    { shape: [n, d], dtype: 'float32' },
    { shape: [blocks, d], dtype: 'float32' },
    { shape: [blocks, d], dtype: 'float32' },
  ], [n, perBlock, blocks]);
  const [dgamma, dbeta] = dispatch(backend, columnSumKernel(d, ['dgamma', 'dbeta']), columnGroups(d), [pg, pb], [{ shape: [d], dtype: 'float32' }, { shape: [d], dtype: 'float32' }], [blocks]);
  release(backend, [pg, pb]);
  return [dx, dgamma, dbeta];
}

export const layerNormImpl: FusedImpl = {
  op: 'layerNorm',
  backend: 'webgpu',
  describe: 'wgsl: one workgroup per row; backward dx per row-block + two-stage dγ/dβ (3 dispatches in all)',
  kernels: [
    { kernelName: 'TtcLayerNorm', backendName: 'webgpu', kernelFunc: layerNorm as unknown as tf.KernelFunc },
    { kernelName: 'TtcLayerNormGrad', backendName: 'webgpu', kernelFunc: layerNormGrad as unknown as tf.KernelFunc },
  ],
  settle: pipelineErrors,
  supports: ({ shapes }) => fitsI32(shapes[0]) && shapes[0][0] > 0 && shapes[0][1] > 0 && shapes[0][1] <= MAX_COLS,
};
