/**
 * Fused attention on webgpu (TtcAttention / TtcAttentionGrad of ml/kernels/fused.ts), flash-attention
 * style: q, k, v are read in the projections' layout [B·T, H·dh] with strides (no transposes), and
 * no [B, H, T, T] buffer exists in either direction.
 *
 *   forward   1 dispatch : per (query tile, b·h): scores, key mask, online softmax and the value
 *                          product in one pass over key tiles → ctx [B·T, H·dh], lse [B·H·T]
 *   backward  3 dispatches: stats (D = rowsum(dctx∘ctx), per row) → dk, dv per (key tile, b·h)
 *                          over query tiles → dq per (query tile, b·h) over key tiles
 *                          (FlashAttention-2's split: no atomics, probabilities recomputed from lse)
 *
 * The composite it replaces is 8 dispatches forward (4 transposes, 2 batched matMuls, scale,
 * softmax; 12 with a mask) with [B·H, T, T] score buffers, and 13 backward (bench:gpu-attention).
 * Dispatches are recorded by ./dispatch.ts (as every fused webgpu kernel's); WGSL in ./attention-wgsl.ts.
 */
import type { FusedCall, FusedImpl } from '../fused.ts';
import type { tf } from '../../tf.ts';
import { dispatch, pipelineErrors, release, type OutputSpec } from './dispatch.ts';
import { asWebgpu } from './program.ts';
import { attentionUniforms, dkdvKernel, dqKernel, forwardKernel, statsKernel, type AttnShape } from './attention-wgsl.ts';

/** Largest head width held in registers (q, accumulator: 2·dh floats per thread forward, 4·dh backward). */
export const MAX_HEAD_DIM = 128;
const MAX_WORKGROUPS = 65535;
/** WebGPU's guaranteed workgroup memory; the device's own limit is used when known. */
const DEFAULT_WG_BYTES = 16384;

const pow2AtLeast = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Largest power-of-two tile ≤ cap whose workgroup arrays (perRow floats per tile row) fit. */
function tileFitting(perRow: number, wgBytes: number, cap: number): number {
  let t = 64;
  while (t > 1 && (t > cap || t * perRow * 4 > wgBytes)) t /= 2;
  return t;
}

export interface AttnTiles {
  /** forward / dq: query rows (threads) per workgroup and keys per staged tile */
  bq: number;
  bk: number;
  /** dk/dv: key rows (threads) per workgroup and queries per staged tile */
  bkey: number;
  bqTile: number;
}

/** Tile sizes for head width dh and sequence length T under a workgroup-memory limit (bytes). */
export function attentionTiles(dh: number, T: number, wgBytes = DEFAULT_WG_BYTES): AttnTiles {
  const cap = Math.max(4, pow2AtLeast(T)); // short sequences: no tile wider than needed
  const threads = Math.min(64, Math.max(16, pow2AtLeast(T)));
  return {
    bq: threads,
    bk: tileFitting(2 * dh + 1, wgBytes, cap), // K and V rows + the key bias
    bkey: threads,
    bqTile: tileFitting(2 * dh + 3, wgBytes, cap), // q and dctx rows + (m, 1/l, D)
  };
}

function supports(call: FusedCall): boolean {
  const [rows, width] = call.shapes[0] ?? [];
  const batch = Number(call.attrs?.batch);
  const heads = Number(call.attrs?.heads);
  if (!(rows > 0 && width > 0 && batch > 0 && heads > 0) || rows % batch || width % heads) return false;
  const dh = width / heads;
  return dh % 4 === 0 && dh <= MAX_HEAD_DIM && batch * heads <= MAX_WORKGROUPS;
}

interface Attrs {
  batch: number;
  heads: number;
  scale: number;
}

function setup(backend: unknown, q: tf.TensorInfo, keyMask: tf.TensorInfo | undefined, attrs: Attrs) {
  const [rows, width] = q.shape;
  const { batch, heads, scale } = attrs;
  const T = rows / batch;
  const dh = width / heads;
  const shape: AttnShape = { dh4: dh / 4, masked: !!keyMask, maskType: keyMask && keyMask.dtype !== 'float32' ? 'i32' : 'f32' };
  const tiles = attentionTiles(dh, T, asWebgpu(backend).device.limits.maxComputeWorkgroupStorageSize ?? DEFAULT_WG_BYTES);
  const uniforms = attentionUniforms(T, heads, width, scale);
  /** workgroups: `rowsPer` rows of one (b, h) each */
  const groups = (rowsPer: number): [number, number, number] => [Math.ceil(T / rowsPer), batch * heads, 1];
  /** a new [B·T, H·dh] output (q's shape) */
  const matrix = (): OutputSpec => ({ shape: [rows, width], dtype: 'float32' });
  return { T, batch, heads, shape, tiles, uniforms, groups, matrix, masks: keyMask ? [keyMask] : [] };
}

const forwardConfig: tf.KernelConfig = {
  kernelName: 'TtcAttention',
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v, keyMask } = inputs as Record<string, tf.TensorInfo>;
    const s = setup(backend, q, keyMask, attrs as unknown as Attrs);
    const { bq, bk } = s.tiles;
    const lse: OutputSpec = { shape: [s.batch * s.heads * s.T], dtype: 'float32' };
    return dispatch(backend, forwardKernel(s.shape, bq, bk), s.groups(bq), [q, k, v, ...s.masks], [s.matrix(), lse], s.uniforms);
  },
};

const gradConfig: tf.KernelConfig = {
  kernelName: 'TtcAttentionGrad',
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { dctx, q, k, v, ctx, lse, keyMask } = inputs as Record<string, tf.TensorInfo>;
    const s = setup(backend, q, keyMask, attrs as unknown as Attrs);
    const [stats] = dispatch(backend, statsKernel(s.shape), s.groups(64), [dctx, ctx, lse], [{ shape: [s.batch * s.heads * s.T * 3], dtype: 'float32' }], s.uniforms);
    const { bq, bk, bkey, bqTile } = s.tiles;
    const rest = [dctx, q, k, v, stats, ...s.masks];
    const [dk, dv] = dispatch(backend, dkdvKernel(s.shape, bkey, bqTile), s.groups(bkey), rest, [s.matrix(), s.matrix()], s.uniforms);
    const [dq] = dispatch(backend, dqKernel(s.shape, bq, bk), s.groups(bq), rest, [s.matrix()], s.uniforms);
    release(backend, [stats]); // released once the queued dispatches are submitted
    return [dq, dk, dv];
  },
};

export function webgpuAttention(): FusedImpl {
  return {
    op: 'attention',
    backend: 'webgpu',
    describe: 'wgsl flash attention: forward 1 dispatch (online softmax over key tiles), backward 3 (D, dk/dv, dq); no [T,T] buffer, no transposes',
    kernels: [forwardConfig, gradConfig],
    settle: pipelineErrors,
    supports,
  };
}
