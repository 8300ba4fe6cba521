/**
 * The collective library's public interface, and the only file of collective/ that code outside it
 * may import (the layering test, tests/unit/layers.test.ts, enforces it). `ProcessGroup` is the
 * contract — in-place all-reduce, reduce-scatter, all-gather, broadcast and barrier over a fixed
 * set of ranks, with results that are bit-identical on every rank — and `Ring` its one backend
 * (a pipelined ring over authenticated WebSocket peer links). Every failure is a `CollectiveError`
 * naming the culprit rank. The layout and reference helpers are public so tests and benchmarks can
 * check results bit for bit.
 */
export type ReduceOp = 'sum' | 'mean';
export type CollectiveKind = 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'barrier';
/**
 * How reduce-scatter segments travel: `f32` (default, exact float32) or `bf16` (each partial sum
 * rounded to bf16, round to nearest even, before it is sent: half the bytes; the receiver widens it
 * and adds in float32, so results stay deterministic and identical on every rank, equal to
 * `referenceReduceScatter(inputs, op, { wire: 'bf16' })`). allReduce's all-gather phase stays f32.
 */
export type WireFormat = 'f32' | 'bf16';
export interface ReduceOptions {
  /** default 'f32'; every rank must pass the same */
  wire?: WireFormat;
}

/**
 * A group of `worldSize` ranks that run collectives together. All ranks must issue the same
 * sequence of calls (same kind, length, op, root), one at a time; a mismatch fails the call with a
 * message naming both sides. Do not touch `buf` until the promise settles. Chunk layout:
 * `chunkLayout(buf.length, worldSize)` (contiguous, the first `length % N` chunks one longer).
 */
export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** in place: afterwards every rank holds the sum (or mean) of all ranks' inputs, bit-identical on every rank */
  allReduce(buf: Float32Array, op?: ReduceOp, opts?: ReduceOptions): Promise<CollectiveStats>;
  /** in place: afterwards rank r's chunk r (chunkLayout(buf.length, worldSize): start[r], len[r]) holds the reduced values; the rest of buf is unspecified */
  reduceScatter(buf: Float32Array, op?: ReduceOp, opts?: ReduceOptions): Promise<CollectiveStats>;
  /** in place: rank r contributes its chunk r; afterwards every rank holds every chunk, byte for byte (any bit pattern, NaN payloads included) */
  allGather(buf: Float32Array): Promise<CollectiveStats>;
  /** in place: afterwards every rank holds root's bytes (any bit pattern) */
  broadcast(buf: Float32Array, root: number): Promise<CollectiveStats>;
  /** resolves on every rank once every rank has called it */
  barrier(): Promise<void>;
  /** closes links and the listener; a pending call rejects */
  close(): Promise<void>;
}

/** Per-call statistics (also `ring.lastStats`). */
export interface CollectiveStats {
  kind: CollectiveKind;
  /** the call's number on this group (0, 1, …): every kind counts */
  seq: number;
  /** allReduce and reduceScatter */
  op?: ReduceOp;
  /** allReduce and reduceScatter: the reduce-scatter's wire format */
  wire?: WireFormat;
  /** broadcast */
  root?: number;
  worldSize: number;
  elements: number;
  bytes: number;
  /** wall time of the call on this rank */
  totalMs: number;
  /** part of totalMs not spent in this rank's collective code: network, kernel, ws framing, peers */
  waitMs: number;
  /** adding received segments, scaling for `mean`, copying gathered or broadcast segments into the buffer */
  addMs: number;
  /** building outgoing frames: segment headers, and rounding to bf16 (f32 segments are sent from the buffer or the received bytes, not copied) */
  encodeMs: number;
  /** decoding and validating incoming frames (msgpack frames and segment headers) */
  decodeMs: number;
  /** handing frames to ws (framing and the socket write) */
  sendMs: number;
  /** process CPU time during the call (process.cpuUsage): user space, and kernel (socket copies) */
  cpuUserMs: number;
  cpuSystemMs: number;
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  /** bytes / totalMs, MB/s */
  algBandwidthMBps: number;
  /**
   * algBandwidth × the share of the bytes each link carries: 2(N−1)/N for allReduce (and barrier),
   * (N−1)/N for reduceScatter and allGather, 1 for broadcast; MB/s
   */
  busBandwidthMBps: number;
}

export { Ring, type RingOptions } from './ring.ts';
export type { RingTls } from './links.ts';
export { CollectiveError } from './errors.ts';
export {
  DEFAULT_SEGMENT_BYTES, chunkLayout, addInto, divideInPlace, referenceAllReduce, referenceReduceScatter,
  bf16Round, toBf16InPlace, type ChunkLayout,
} from './layout.ts';
