/**
 * The wire schemas of the ring's peer links (registered with wire/protocol's `defineMessage`):
 * `ring-join` (first frame both ways: who we are and the ring's parameters), `ring-start` (opens
 * one collective call: kind, length, op, root — the receiver checks they match its own call),
 * `chunk` (one segment of one chunk in one step of one phase), `ring-alive` (heartbeat) and
 * `ring-abort` (the ring failed: who detected it and whom it blames). Also the message sets each
 * link direction accepts. Nothing here sends or decides anything.
 */
import * as v from 'valibot';
import { defineMessage, float32Array, shortString, u32 } from '../wire/protocol/index.ts';

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
  /** broadcast */
  root: v.optional(u32()),
});

/**
 * One segment of one chunk in one step. Phases: `rs` reduce-scatter, `ag` all-gather (index =
 * chunk 0…N−1, step 0…N−2), `bc` broadcast (index 0: the whole buffer is one chunk; step = hops
 * from the root − 1).
 */
export const Chunk = defineMessage('chunk', {
  seq: u32(),
  step: u32(),
  phase: v.picklist(['rs', 'ag', 'bc']),
  index: u32(),
  segment: u32(),
  data: float32Array(),
});

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

/** What the predecessor may send us (on the link we accepted). */
export type FromPrev = typeof RingJoin | typeof RingStart | typeof Chunk | typeof RingAlive | typeof RingAbort;
export const FROM_PREV: readonly FromPrev[] = [RingJoin, RingStart, Chunk, RingAlive, RingAbort];
/** What the successor may send us (on the link we dialed). */
export type FromNext = typeof RingJoin | typeof RingAbort;
export const FROM_NEXT: readonly FromNext[] = [RingJoin, RingAbort];
