/**
 * Layout and arithmetic of the collectives: how a buffer is cut into one contiguous chunk per rank
 * (`chunkLayout`) and each chunk into segments; the float32 helpers the reduction uses (`addInto`,
 * `divideInPlace`: WebAssembly SIMD from simd.ts for long arrays, bit-identical to the JS loops);
 * the bf16 wire format's rounding (`bf16Round`, `toBf16InPlace`, `encodeBf16`, and the receiver's
 * widen-and-add `addBf16Into` / `addBf16Forward`); the reference reductions
 * (`referenceReduceScatter`, `referenceAllReduce`, with `{ wire: 'bf16' }` too) that reproduce the
 * ring's summation order and roundings bit for bit, so tests and benchmarks can check results
 * exactly. Pure functions: no sockets, no timers.
 */
import type { ReduceOp, WireFormat } from './index.ts';
import { SIMD } from './simd.ts';

/** Default segment size: chunks travel in frames of at most this many bytes of data. */
export const DEFAULT_SEGMENT_BYTES = 1 << 20;

export interface ChunkLayout {
  length: number;
  worldSize: number;
  segmentElems: number;
  /** chunk c is buf[start[c], start[c] + len[c]) */
  start: number[];
  len: number[];
  /** number of segments of chunk c: ceil(len[c] / segmentElems) */
  segments: number[];
}

/**
 * Split `length` elements into `worldSize` contiguous chunks (the first `length % N` one element
 * longer), each cut into segments of `segmentElems` (default: the whole chunk in one segment).
 * After a reduce-scatter rank r owns chunk r.
 */
export function chunkLayout(length: number, worldSize: number, segmentElems = Math.max(1, length)): ChunkLayout {
  const base = Math.floor(length / worldSize);
  const rem = length % worldSize;
  const start: number[] = [];
  const len: number[] = [];
  const segments: number[] = [];
  for (let c = 0; c < worldSize; c++) {
    start.push(c * base + Math.min(c, rem));
    len.push(base + (c < rem ? 1 : 0));
    segments.push(Math.ceil(len[c]! / segmentElems));
  }
  return { length, worldSize, segmentElems, start, len, segments };
}

/** Shorter arrays stay in JS: copying into wasm memory does not pay off. */
const SIMD_MIN = 64;

/** dst[off + i] = dst[off + i] + src[i] (float32): wasm SIMD for long arrays, else an unrolled JS loop. */
export function addInto(dst: Float32Array, off: number, src: Float32Array): void {
  if (SIMD && src.length >= SIMD_MIN) return SIMD.add(dst, off, src);
  addIntoJs(dst, off, src);
}

/** addInto in plain JS, unrolled (~2× faster than the plain loop in V8); the SIMD kernel's yardstick. */
export function addIntoJs(dst: Float32Array, off: number, src: Float32Array): void {
  const n = src.length;
  const n4 = n & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    dst[off + i] += src[i]!;
    dst[off + i + 1] += src[i + 1]!;
    dst[off + i + 2] += src[i + 2]!;
    dst[off + i + 3] += src[i + 3]!;
  }
  for (; i < n; i++) dst[off + i] += src[i]!;
}

/** a[i] = a[i] / d (float32, correctly rounded): wasm SIMD for long arrays, else JS */
export function divideInPlace(a: Float32Array, d: number): void {
  if (SIMD && a.length >= SIMD_MIN) return SIMD.divide(a, d);
  divideInPlaceJs(a, d);
}

/** divideInPlace in plain JS; the SIMD kernel's yardstick. */
export function divideInPlaceJs(a: Float32Array, d: number): void {
  const n = a.length;
  const n4 = n & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    a[i] /= d;
    a[i + 1] /= d;
    a[i + 2] /= d;
    a[i + 3] /= d;
  }
  for (; i < n; i++) a[i] /= d;
}

export const mod = (a: number, n: number): number => ((a % n) + n) % n;

// ---- bf16 ----------------------------------------------------------------------------------------

const f1 = new Float32Array(1);
const u1 = new Uint32Array(f1.buffer);

/** The bf16 bits (upper 16 bits of the float32) of float32 bits `u`, rounded to nearest even; NaN stays NaN (quieted). */
function bf16Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/** x rounded to bf16 (round to nearest even, NaN stays NaN), as a float32 value: what the bf16 wire carries for x. */
export function bf16Round(x: number): number {
  f1[0] = x;
  u1[0] = bf16Bits(u1[0]!) << 16;
  return f1[0]!;
}

/** Round every element of `a` to bf16 in place (the values stay float32): g − toBf16InPlace(copy of g) is the wire's rounding error. */
export function toBf16InPlace(a: Float32Array): Float32Array {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < u.length; i++) u[i] = bf16Bits(u[i]!) << 16;
  return a;
}

/** out[i] = the bf16 bits of src[i] (rounded to nearest even). */
export function encodeBf16(src: Float32Array, out: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) out[i] = bf16Bits(u[i]!);
}

/** dst[off + i] = widen(src[i]) + dst[off + i] (float32): the owner adds a bf16 partial sum. */
export function addBf16Into(dst: Float32Array, off: number, src: Uint16Array): void {
  for (let i = 0; i < src.length; i++) {
    u1[0] = src[i]! << 16;
    dst[off + i] = f1[0]! + dst[off + i]!;
  }
}

/** io[i] = bf16(widen(io[i]) + own[i]): a rank on the way adds its own values to a bf16 partial sum and sends it on. */
export function addBf16Forward(io: Uint16Array, own: Float32Array): void {
  for (let i = 0; i < io.length; i++) {
    u1[0] = io[i]! << 16;
    f1[0] = f1[0]! + own[i]!;
    io[i] = bf16Bits(u1[0]!);
  }
}

// ---- the references ----------------------------------------------------------------------------

/** Chunk c of the reduction, written at `out[lay.start[c] …]`: the canonical order, see referenceReduceScatter. */
function reduceChunk(inputs: Float32Array[], op: ReduceOp, wire: WireFormat, lay: ChunkLayout, c: number, out: Float32Array, at: number): void {
  const N = inputs.length;
  const s = lay.start[c]!;
  const e = s + lay.len[c]!;
  const acc = out.subarray(at, at + (e - s));
  acc.set(inputs[(c + 1) % N]!.subarray(s, e));
  for (let k = 2; k <= N; k++) {
    if (wire === 'bf16') toBf16InPlace(acc);
    addInto(out, at, inputs[(c + k) % N]!.subarray(s, e));
  }
  if (op === 'mean' && N > 1) divideInPlace(acc, N);
}

function checkInputs(inputs: Float32Array[], what: string): number {
  const length = inputs[0]?.length ?? 0;
  for (const x of inputs) if (x.length !== length) throw new RangeError(`${what}: every input must have the same length`);
  return length;
}

/**
 * What a reduce-scatter over `inputs.length` ranks leaves in each rank's own chunk, bit for bit:
 * element [r][i] is chunk r (`chunkLayout(length, N)`) summed in the rank order r+1, r+2, …, r
 * (mod N) as float32 additions `acc = acc + x` (the owner's own value added last), then divided by
 * N once for `mean`. With `wire: 'bf16'` the partial sum is rounded to bf16 before each addition
 * (what travels between ranks: `acc = bf16Round(acc) + x`); the additions stay float32.
 */
export function referenceReduceScatter(inputs: Float32Array[], op: ReduceOp = 'sum', opts: { wire?: WireFormat } = {}): Float32Array[] {
  const N = inputs.length;
  const lay = chunkLayout(checkInputs(inputs, 'referenceReduceScatter'), N);
  return inputs.map((_, r) => {
    const out = new Float32Array(lay.len[r]!);
    reduceChunk(inputs, op, opts.wire ?? 'f32', lay, r, out, 0);
    return out;
  });
}

/** The full result of an all-reduce over `inputs.length` ranks, bit for bit: every chunk as in referenceReduceScatter (the all-gather copies bytes). */
export function referenceAllReduce(inputs: Float32Array[], op: ReduceOp = 'sum', opts: { wire?: WireFormat } = {}): Float32Array {
  const N = inputs.length;
  const length = checkInputs(inputs, 'referenceAllReduce');
  const out = new Float32Array(length);
  const lay = chunkLayout(length, N);
  for (let c = 0; c < N; c++) reduceChunk(inputs, op, opts.wire ?? 'f32', lay, c, out, lay.start[c]!);
  return out;
}
