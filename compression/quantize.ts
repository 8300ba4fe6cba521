/**
 * Uniform symmetric k-bit quantization (k = 2..8) of the flat model weights.
 *
 * codes c ∈ [−qmax, qmax], qmax = 2^(k−1) − 1 (the code −2^(k−1) is never used, so the grid is
 * symmetric around 0 and 0 is exact); scale = maxAbs / qmax, computed and stored as float32;
 * c = round(v / scale) (ties away from zero); the dequantized value is fround(c · scale).
 * A scale of 0 (an all-zero channel, or one whose maxAbs is so small that maxAbs / qmax underflows
 * float32) gives all codes 0. Since |v| ≤ maxAbs there is no clipping: |v − dequant(c)| ≤ scale / 2
 * (plus the float32 rounding of c · scale).
 *
 * Granularity:
 *   'channel' – one scale per output channel: a dense weight is stored [in, out], so a channel is a
 *               COLUMN (the last axis); an embedding table [vocab, hidden] has one scale per ROW
 *               (axis 0: one per token / position). Biases and norms (1-D) always get one scale.
 *   'tensor'  – one scale for the whole tensor.
 *
 * Pure functions over Float32Array; no tfjs. No per-element allocation.
 */
import type { ParamKind, ParamLayout } from '../ml/model/spec.ts';
import { codedError } from '../core/errors.ts';

export type Granularity = 'channel' | 'tensor';

export interface QuantizedTensor {
  /** one code per element, in the tensor's row-major order */
  codes: Int8Array;
  /** one float32 scale per channel (or a single one for 'tensor' granularity) */
  scales: Float32Array;
  /** the channel axis (1 = columns of a dense [in, out] weight, 0 = rows of an embedding), null for one scale */
  axis: number | null;
  bits: number;
  shape: number[];
}

export interface QuantSpec {
  bits: number;
  granularity: Granularity;
  /** quantize the embedding tables too (dense weights always are; biases and norms never) */
  embeddings?: boolean;
}

export const QuantizeError = codedError('QuantizeError', 'TTC_ERR_COMPRESSION');
export type QuantizeError = InstanceType<typeof QuantizeError>;

export function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new QuantizeError(`bits must be an integer in 2..8, got ${bits}`);
}

export function qmaxOf(bits: number): number {
  checkBits(bits);
  return (1 << (bits - 1)) - 1;
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new QuantizeError(`bad shape [${shape}]`);
    n *= d;
  }
  return n;
}

export interface ChannelInfo {
  /** channel axis, or null for a single scale */
  axis: number | null;
  /** number of scales */
  channels: number;
  /** elements per index of axis 0 (row length) when axis = 0 */
  inner: number;
}

/**
 * Which axis carries the scales for a tensor of this kind and granularity: the last axis of a dense
 * weight, axis 0 of an embedding table, none otherwise (and none for 'tensor').
 */
export function channelInfo(shape: readonly number[], kind: ParamKind, granularity: Granularity): ChannelInfo {
  const n = sizeOf(shape);
  if (granularity === 'channel' && shape.length >= 2) {
    if (kind === 'dense') {
      const axis = shape.length - 1;
      return { axis, channels: shape[axis], inner: shape[0] === 0 ? 0 : n / shape[0] };
    }
    if (kind === 'embedding') return { axis: 0, channels: shape[0], inner: shape[0] === 0 ? 0 : n / shape[0] };
  }
  if (granularity !== 'channel' && granularity !== 'tensor') throw new QuantizeError(`granularity must be 'channel' or 'tensor', got ${String(granularity)}`);
  return { axis: null, channels: 1, inner: n };
}

/** Per-channel max |v|, into `out` (length = channels). Throws on a non-finite value. */
function channelMaxAbs(values: Float32Array, n: number, info: ChannelInfo, out: Float64Array): void {
  out.fill(0);
  const { axis, channels, inner } = info;
  if (axis === null) {
    let m = 0;
    for (let i = 0; i < n; i++) {
      const a = Math.abs(values[i]);
      if (a > m) m = a;
      else if (a !== a) throw new QuantizeError(`cannot quantize a non-finite value (element ${i})`);
    }
    out[0] = m;
  } else if (axis === 0) {
    for (let r = 0, i = 0; r < channels; r++) {
      let m = 0;
      for (const end = i + inner; i < end; i++) {
        const a = Math.abs(values[i]);
        if (a > m) m = a;
        else if (a !== a) throw new QuantizeError(`cannot quantize a non-finite value (element ${i})`);
      }
      out[r] = m;
    }
  } else {
    // last axis: rows of `channels` elements
    for (let i = 0; i < n; ) {
      for (let c = 0; c < channels; c++, i++) {
        const a = Math.abs(values[i]);
        if (a > out[c]) out[c] = a;
        else if (a !== a) throw new QuantizeError(`cannot quantize a non-finite value (element ${i})`);
      }
    }
  }
  for (let c = 0; c < channels; c++) if (out[c] === Infinity) throw new QuantizeError('cannot quantize a non-finite value (Infinity)');
}

/**
 * Quantize one tensor. `values` may be longer than the shape's size only if it is exactly the
 * tensor (use subarray for a slice of the flat buffer).
 */
export function quantizeTensor(
  values: Float32Array,
  shape: readonly number[],
  kind: ParamKind,
  bits: number,
  granularity: Granularity,
  out?: { codes?: Int8Array; scales?: Float32Array },
): QuantizedTensor {
  const qmax = qmaxOf(bits);
  const n = sizeOf(shape);
  if (values.length !== n) throw new QuantizeError(`${values.length} values for shape [${shape}] (expected ${n})`);
  const info = channelInfo(shape, kind, granularity);
  const codes = out?.codes && out.codes.length >= n ? out.codes.subarray(0, n) : new Int8Array(n);
  const scales = out?.scales && out.scales.length >= info.channels ? out.scales.subarray(0, info.channels) : new Float32Array(info.channels);
  const maxAbs = new Float64Array(info.channels);
  channelMaxAbs(values, n, info, maxAbs);
  const inv = new Float64Array(info.channels);
  for (let c = 0; c < info.channels; c++) {
    scales[c] = maxAbs[c] / qmax; // rounded to float32: the stored scale is what the codes are computed against
    inv[c] = scales[c] === 0 ? 0 : 1 / scales[c];
  }
  const quant = (v: number, s: number, iv: number): number => {
    if (iv === 0) return 0;
    // round half away from zero, on v / s computed in float64 from the float32 operands
    const x = v / s;
    let q = x >= 0 ? Math.floor(x + 0.5) : -Math.floor(-x + 0.5);
    if (q > qmax) q = qmax;
    else if (q < -qmax) q = -qmax;
    return q;
  };
  const { axis, channels, inner } = info;
  if (axis === null) {
    const s = scales[0];
    const iv = inv[0];
    for (let i = 0; i < n; i++) codes[i] = quant(values[i], s, iv);
  } else if (axis === 0) {
    for (let r = 0, i = 0; r < channels; r++) {
      const s = scales[r];
      const iv = inv[r];
      for (const end = i + inner; i < end; i++) codes[i] = quant(values[i], s, iv);
    }
  } else {
    for (let i = 0; i < n; ) for (let c = 0; c < channels; c++, i++) codes[i] = quant(values[i], scales[c], inv[c]);
  }
  return { codes, scales, axis, bits, shape: [...shape] };
}

/**
 * codes · scale → float32, into `out` (fresh array when omitted). `codes` must hold one code per
 * element in row-major order; `axis` as returned by quantizeTensor / channelInfo.
 */
export function dequantizeTensor(q: Pick<QuantizedTensor, 'codes' | 'scales' | 'axis' | 'shape'>, out?: Float32Array): Float32Array {
  const n = sizeOf(q.shape);
  if (q.codes.length !== n) throw new QuantizeError(`${q.codes.length} codes for shape [${q.shape}]`);
  const res = out ?? new Float32Array(n);
  if (res.length !== n) throw new QuantizeError(`output has ${res.length} elements for shape [${q.shape}]`);
  const { codes, scales, axis } = q;
  if (axis === null) {
    if (scales.length !== 1) throw new QuantizeError(`expected 1 scale, got ${scales.length}`);
    const s = scales[0];
    for (let i = 0; i < n; i++) res[i] = codes[i] * s;
  } else if (axis === 0) {
    const channels = q.shape[0];
    if (scales.length !== channels) throw new QuantizeError(`expected ${channels} scales, got ${scales.length}`);
    const inner = channels === 0 ? 0 : n / channels;
    for (let r = 0, i = 0; r < channels; r++) {
      const s = scales[r];
      for (const end = i + inner; i < end; i++) res[i] = codes[i] * s;
    }
  } else {
    if (axis !== q.shape.length - 1) throw new QuantizeError(`unsupported channel axis ${axis} for shape [${q.shape}]`);
    const channels = q.shape[axis];
    if (scales.length !== channels) throw new QuantizeError(`expected ${channels} scales, got ${scales.length}`);
    for (let i = 0; i < n; ) for (let c = 0; c < channels; c++, i++) res[i] = codes[i] * scales[c];
  }
  return res;
}

/** quantize → dequantize in one go (what evaluating a quantized model needs). `out` may be `values` (in place). */
export function fakeQuantize(
  values: Float32Array,
  shape: readonly number[],
  kind: ParamKind,
  bits: number,
  granularity: Granularity,
  out?: Float32Array,
): Float32Array {
  const q = quantizeTensor(values, shape, kind, bits, granularity);
  return dequantizeTensor(q, out);
}

/** Whether a tensor of this kind is quantized under the spec: dense always, embeddings on request, biases and norms never. */
export function quantizes(kind: ParamKind, spec: Pick<QuantSpec, 'embeddings'>): boolean {
  return kind === 'dense' || (kind === 'embedding' && spec.embeddings === true);
}

/**
 * Fake-quantize a whole model: every dense weight (and the embedding tables if spec.embeddings) is
 * replaced by its dequantized value; biases and norms are copied unchanged. Returns a new buffer
 * (or writes `out`, which may be `weights` itself).
 */
export function fakeQuantizeModel(weights: Float32Array, layout: ParamLayout, spec: QuantSpec, out?: Float32Array): Float32Array {
  checkBits(spec.bits);
  if (weights.length !== layout.total) throw new QuantizeError(`${weights.length} weights for a layout of ${layout.total}`);
  const res = out ?? new Float32Array(weights);
  if (res.length !== layout.total) throw new QuantizeError(`output has ${res.length} elements for a layout of ${layout.total}`);
  if (res !== weights && out) res.set(weights);
  let codes = new Int8Array(0);
  let scales = new Float32Array(0);
  for (const s of layout.specs) {
    if (!quantizes(s.kind, spec)) continue;
    if (codes.length < s.size) codes = new Int8Array(s.size);
    const ch = channelInfo(s.shape, s.kind, spec.granularity).channels;
    if (scales.length < ch) scales = new Float32Array(ch);
    const q = quantizeTensor(weights.subarray(s.offset, s.offset + s.size), s.shape, s.kind, spec.bits, spec.granularity, { codes, scales });
    dequantizeTensor(q, res.subarray(s.offset, s.offset + s.size));
  }
  return res;
}
