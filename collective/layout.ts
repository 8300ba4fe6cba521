/**
 * Layout and arithmetic of the collectives: how a buffer is cut into one contiguous chunk per rank
 * (`chunkLayout`) and each chunk into segments; the float32 helpers the reduction uses (`addInto`,
 * `divideInPlace`); the reference reductions (`referenceReduceScatter`, `referenceAllReduce`) that
 * reproduce the ring's summation order bit for bit, so tests and benchmarks can check results
 * exactly. Pure functions: no sockets, no timers (the frames' send buffers come from wire/net's
 * FramePool).
 */
import type { ReduceOp } from './index.ts';

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

/** dst[off + i] = dst[off + i] + src[i] (float32), unrolled: ~2× faster than the plain loop in V8. */
export function addInto(dst: Float32Array, off: number, src: Float32Array): void {
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

/** a[i] = a[i] / d (float32, correctly rounded) */
export function divideInPlace(a: Float32Array, d: number): void {
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

/** Chunk c of the reduction, written at `out[lay.start[c] …]`: the canonical order, see referenceReduceScatter. */
function reduceChunk(inputs: Float32Array[], op: ReduceOp, lay: ChunkLayout, c: number, out: Float32Array, at: number): void {
  const N = inputs.length;
  const s = lay.start[c]!;
  const e = s + lay.len[c]!;
  out.set(inputs[(c + 1) % N]!.subarray(s, e), at);
  for (let k = 2; k <= N; k++) addInto(out, at, inputs[(c + k) % N]!.subarray(s, e));
  if (op === 'mean' && N > 1) divideInPlace(out.subarray(at, at + (e - s)), N);
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
 * N once for `mean`.
 */
export function referenceReduceScatter(inputs: Float32Array[], op: ReduceOp = 'sum'): Float32Array[] {
  const N = inputs.length;
  const lay = chunkLayout(checkInputs(inputs, 'referenceReduceScatter'), N);
  return inputs.map((_, r) => {
    const out = new Float32Array(lay.len[r]!);
    reduceChunk(inputs, op, lay, r, out, 0);
    return out;
  });
}

/** The full result of an all-reduce over `inputs.length` ranks, bit for bit: every chunk as in referenceReduceScatter. */
export function referenceAllReduce(inputs: Float32Array[], op: ReduceOp = 'sum'): Float32Array {
  const N = inputs.length;
  const length = checkInputs(inputs, 'referenceAllReduce');
  const out = new Float32Array(length);
  const lay = chunkLayout(length, N);
  for (let c = 0; c < N; c++) reduceChunk(inputs, op, lay, c, out, lay.start[c]!);
  return out;
}
