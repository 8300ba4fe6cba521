/**
 * The wire formats of the ring's peer links. MessagePack frames (registered with wire/protocol's
 * `defineMessage`): `ring-join` (first frame both ways: who we are and the ring's parameters),
 * `ring-start` (opens one collective call: kind, length, op, wire, root — the receiver checks they
 * match its own call), `ring-alive` (heartbeat) and `ring-abort` (the ring failed: who detected it
 * and whom it blames); the message sets each link direction accepts. And the data frame, a raw
 * frame (wire/net's `sendRaw`/`onRaw`, first byte 0xc1): one segment of one chunk in one step of
 * one phase as a 24-byte header (`writeSegmentHead`) followed by the segment's bytes, float32 or
 * bf16, little-endian — so a segment is sent from the buffer, or forwarded from the received bytes,
 * without encoding; `readSegment` checks the header by hand and names what is wrong. Nothing here
 * sends or decides anything.
 */
import * as v from 'valibot';
import { RAW_FRAME_TAG } from '../wire/net/index.ts';
import { defineMessage, shortString, u32 } from '../wire/protocol/index.ts';
import type { WireFormat } from './index.ts';

export const COLLECTIVE_KINDS = ['allReduce', 'reduceScatter', 'allGather', 'broadcast', 'barrier'] as const;

/** First frame on a peer link, both directions: who we are and the ring parameters we use. */
export const RingJoin = defineMessage('ring-join', {
  rank: u32(),
  worldSize: u32(),
  ringId: shortString(128),
  segmentBytes: u32(),
  /** the sender's listening address "host:port", for error messages */
  listen: shortString(300),
});

/** Opens one collective call, to the successor; lets the receiver check that both ranks issued the same call. */
export const RingStart = defineMessage('ring-start', {
  seq: u32(),
  kind: v.picklist(COLLECTIVE_KINDS),
  length: u32(),
  /** allReduce, reduceScatter */
  op: v.optional(v.picklist(['sum', 'mean'])),
  /** allReduce, reduceScatter: the reduce-scatter's wire format when not f32 */
  wire: v.optional(v.literal('bf16')),
  /** broadcast */
  root: v.optional(u32()),
});

/**
 * The segment frame: header fields. Phases: `rs` reduce-scatter, `ag` all-gather (index = chunk
 * 0…N−1, step 0…N−2), `bc` broadcast (index 0: the whole buffer is one chunk; step = hops from the
 * root − 1). `wire`: how the payload's elements are stored (`f32` 4 bytes, `bf16` 2 bytes).
 */
export interface SegmentHead {
  seq: number;
  step: number;
  phase: Phase;
  wire: WireFormat;
  index: number;
  segment: number;
  /** elements in the payload */
  elements: number;
}
export type Phase = 'rs' | 'ag' | 'bc';

/**
 * Header layout (little-endian): 0 tag 0xc1, 1 format (1), 2 phase (0 rs, 1 ag, 2 bc), 3 wire
 * (0 f32, 1 bf16), 4 seq u32, 8 step u32, 12 index u32, 16 segment u32, 20 elements u32; the
 * payload follows (elements × 4 or × 2 bytes).
 */
export const SEGMENT_HEAD_BYTES = 24;
export const SEGMENT_FORMAT = 1;
const PHASES: readonly Phase[] = ['rs', 'ag', 'bc'];
const WIRES: readonly WireFormat[] = ['f32', 'bf16'];
export const bytesPerElement = (wire: WireFormat): number => (wire === 'bf16' ? 2 : 4);

/** A fresh 24-byte header for `h`. */
export function writeSegmentHead(h: SegmentHead): Buffer {
  const b = Buffer.allocUnsafe(SEGMENT_HEAD_BYTES);
  b[0] = RAW_FRAME_TAG;
  b[1] = SEGMENT_FORMAT;
  b[2] = PHASES.indexOf(h.phase);
  b[3] = WIRES.indexOf(h.wire);
  b.writeUInt32LE(h.seq, 4);
  b.writeUInt32LE(h.step, 8);
  b.writeUInt32LE(h.index, 12);
  b.writeUInt32LE(h.segment, 16);
  b.writeUInt32LE(h.elements, 20);
  return b;
}

/** Set the step of an encoded header in place (forwarding a received segment one step on). */
export function setSegmentStep(head: Buffer, step: number): void {
  head.writeUInt32LE(step, 8);
}

/** A received segment frame: its header fields, the header's bytes (24) and the payload's. */
export interface Segment extends SegmentHead {
  headBytes: Buffer;
  payload: Buffer;
}

/**
 * Parse a raw frame's fragments (header first, as `sendRaw` sends them; any other fragmentation
 * is joined) into a segment, or the reason it is malformed. Checks the header's structure and that
 * the payload holds exactly `elements` elements; whether the segment fits the call is the ring's.
 */
export function readSegment(parts: Buffer[]): Segment | string {
  let head: Buffer;
  let payload: Buffer;
  if (parts.length === 2 && parts[0]!.length === SEGMENT_HEAD_BYTES) {
    head = parts[0]!;
    payload = parts[1]!;
  } else {
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (all.length < SEGMENT_HEAD_BYTES) return `segment frame of ${all.length} bytes, shorter than its ${SEGMENT_HEAD_BYTES}-byte header`;
    head = all.subarray(0, SEGMENT_HEAD_BYTES);
    payload = all.subarray(SEGMENT_HEAD_BYTES);
  }
  if (head[1] !== SEGMENT_FORMAT) return `segment frame format ${head[1]}, expected ${SEGMENT_FORMAT}`;
  const phase = PHASES[head[2]!];
  if (!phase) return `segment frame with unknown phase code ${head[2]}`;
  const wire = WIRES[head[3]!];
  if (!wire) return `segment frame with unknown wire format code ${head[3]}`;
  const elements = head.readUInt32LE(20);
  if (payload.length !== elements * bytesPerElement(wire)) return `segment frame of ${elements} ${wire} elements carries ${payload.length} payload bytes, expected ${elements * bytesPerElement(wire)}`;
  return {
    seq: head.readUInt32LE(4), step: head.readUInt32LE(8), phase, wire,
    index: head.readUInt32LE(12), segment: head.readUInt32LE(16), elements, headBytes: head, payload,
  };
}

/** Heartbeat to the successor: `seq` = calls started so far, `active` = inside a call. */
export const RingAlive = defineMessage('ring-alive', {
  seq: u32(),
  active: v.boolean(),
});

/** The ring failed; forwarded around so every rank names the same culprit. */
export const RingAbort = defineMessage('ring-abort', {
  origin: u32(),
  failedRank: v.optional(u32()),
  failedAddress: v.optional(shortString(300)),
  reason: v.pipe(v.string(), v.maxLength(1024)),
});

/** What the predecessor may send us (on the link we accepted), besides segment frames. */
export type FromPrev = typeof RingJoin | typeof RingStart | typeof RingAlive | typeof RingAbort;
export const FROM_PREV: readonly FromPrev[] = [RingJoin, RingStart, RingAlive, RingAbort];
/** What the successor may send us (on the link we dialed). */
export type FromNext = typeof RingJoin | typeof RingAbort;
export const FROM_NEXT: readonly FromNext[] = [RingJoin, RingAbort];
