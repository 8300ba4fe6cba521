/**
 * The ring algorithm: `Ring`, the ProcessGroup backend. Each rank listens (its predecessor,
 * rank−1 mod N, connects to it) and connects to its successor (rank+1 mod N); links.ts brings the
 * links up, liveness.ts watches them and aborts. A call sends `ring-start`, then segments. Chunk
 * ownership and summation order, the canonical convention: the buffer is cut into N chunks
 * (`chunkLayout`) and after a reduce-scatter rank r owns chunk r. Chunk c is summed in the fixed
 * rank order c+1, c+2, …, c (mod N) — it starts at the rank after its owner, the owner's own
 * contribution is added last — as float32 additions `acc = acc + x`, and for `mean` divided by N
 * once, by its owner. Reduce-scatter step s: rank r sends chunk r−1−s and receives chunk r−2−s,
 * which it adds (after N−1 steps it holds chunk r reduced). All-gather step s: rank r sends chunk
 * r−s and receives chunk r−1−s, which it copies. `allReduce` is both in ONE pipelined call: a
 * segment that completes its reduction at its owner is sent on in the all-gather at once, so it
 * equals reduceScatter followed by allGather bit for bit, on every rank. `broadcast` sends the
 * whole buffer (one chunk) from the root along the ring; every rank copies each segment and
 * forwards it unless its successor is the root. `barrier` is a 1-element all-reduce. Chunks travel
 * in segments (default 1 MiB) and everything after step 0 is driven by arrivals: when segment k
 * of a chunk arrives it is added (or copied) and sent on at once, so sending, receiving and adding
 * overlap with no barrier between steps. Frames from a predecessor that already started later
 * calls are buffered until this rank starts them.
 *
 * No copies beyond the unavoidable ones: segments travel as binary segment frames (messages.ts),
 * step-0 segments and the owner's all-gather segments are sent straight from `buf`; a received
 * reduce-scatter partial sum gets this rank's values added into its own bytes (wasm SIMD) and those
 * bytes are sent on; a received all-gather or broadcast segment is copied into `buf` (bytes) and the
 * same bytes are forwarded. Nothing a send refers to changes before ws has handed it to the kernel
 * (a region of `buf` sent at step 0 is only overwritten by data that has been round the ring since).
 * With `wire: 'bf16'` reduce-scatter segments are rounded to bf16 by their sender (send buffers from
 * a FramePool) and widened by their receiver; payloads that arrive unaligned (small segments) are
 * copied to an aligned pool buffer first.
 */
import { normalizeSecret, type SecretInput } from '../wire/auth.ts';
import { defaultLogger, FramePool, type Connection, type Logger } from '../wire/net/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import { CollectiveError } from './errors.ts';
import type { CollectiveKind, CollectiveStats, ProcessGroup, ReduceOp, ReduceOptions, WireFormat } from './index.ts';
import {
  addBf16Forward, addBf16Into, addInto, chunkLayout, DEFAULT_SEGMENT_BYTES, divideInPlace, encodeBf16, mod, type ChunkLayout,
} from './layout.ts';
import { RingLinks, type RingTls } from './links.ts';
import { Liveness } from './liveness.ts';
import {
  readSegment, RingStart, setSegmentStep, writeSegmentHead, type FromNext, type FromPrev, type Phase, type Segment,
} from './messages.ts';

export interface RingOptions {
  rank: number;
  worldSize: number;
  /** where this rank listens; port 0 = ephemeral (read `ring.port`). Default 127.0.0.1:0 */
  listen?: { host?: string; port?: number };
  secret: SecretInput;
  tls?: RingTls;
  /**
   * during a call, a predecessor silent this long (no data, no heartbeat; counted from the call's
   * start at the earliest) is declared dead or stalled; default 10 000 ms. Must exceed the longest
   * stretch any rank blocks its event loop (e.g. a synchronous training step), since a blocked
   * rank sends no heartbeats.
   */
  timeoutMs?: number;
  /** a live predecessor that has not started the same call after this long fails it; default 6 × timeoutMs */
  joinTimeoutMs?: number;
  /** connect(): how long to wait for the successor to come up and the predecessor to join; default 30 000 ms */
  connectTimeoutMs?: number;
  /** segment size in bytes (multiple of 4); default 1 MiB */
  segmentBytes?: number;
  /** an incoming connection must complete the HMAC handshake within this time; default 3000 ms */
  handshakeTimeoutMs?: number;
  /** per-frame MAC on links without TLS (docs/security.md); default true. false only to measure its cost (bench:allreduce) */
  frameMac?: boolean;
  /** identifies one ring formation; links with another ringId are refused. Default "ring" */
  ringId?: string;
  log?: Logger;
}

type CallFrame = Message<typeof RingStart> | Segment;

interface Call {
  kind: CollectiveKind;
  seq: number;
  what: string;
  buf: Float32Array;
  /** as on the wire: allReduce and reduceScatter only */
  op: ReduceOp | undefined;
  /** as on the wire: 'bf16' for a bf16 reduce-scatter, else undefined (f32) */
  wire: 'bf16' | undefined;
  /** broadcast only */
  root: number | undefined;
  mean: boolean;
  /** this call has a reduce-scatter phase / an all-gather phase */
  rs: boolean;
  ag: boolean;
  lay: ChunkLayout;
  maxSeg: number;
  got: Uint8Array;
  expected: number;
  received: number;
  pendingSends: number;
  prevStarted: boolean;
  t0: number;
  addMs: number;
  encodeMs: number;
  decodeMs: number;
  sendMs: number;
  busyMs: number;
  framesSent: number;
  bytesSent: number;
  in0: { frames: number; bytes: number; decodeMs: number };
  cpu0: NodeJS.CpuUsage;
  resolve: (s: CollectiveStats) => void;
  reject: (e: Error) => void;
}

/** "allReduce(10 elements, sum)", "reduceScatter(10 elements, mean, bf16 wire)", "broadcast(10 elements, root 2)", "barrier" */
function describeCall(c: { kind: CollectiveKind; length: number; op?: ReduceOp | undefined; wire?: string | undefined; root?: number | undefined }): string {
  if (c.kind === 'barrier') return 'barrier';
  return `${c.kind}(${c.length} elements${c.op ? `, ${c.op}` : ''}${c.wire ? `, ${c.wire} wire` : ''}${c.root !== undefined ? `, root ${c.root}` : ''})`;
}

/** The float32 elements of `b` as a view when aligned, else undefined. */
function f32View(b: Buffer): Float32Array | undefined {
  return b.byteOffset % 4 === 0 ? new Float32Array(b.buffer, b.byteOffset, b.length / 4) : undefined;
}
function u16View(b: Buffer): Uint16Array | undefined {
  return b.byteOffset % 2 === 0 ? new Uint16Array(b.buffer, b.byteOffset, b.length / 2) : undefined;
}
/** The bytes of a region of a Float32Array, as a Buffer on the same memory (no copy). */
function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Share of the bytes each link carries, for busBandwidthMBps. */
function busFactor(kind: CollectiveKind, N: number): number {
  if (N === 1) return 0;
  if (kind === 'broadcast') return 1;
  if (kind === 'reduceScatter' || kind === 'allGather') return (N - 1) / N;
  return (2 * (N - 1)) / N;
}

const MAX_EARLY_FRAMES = 1_000_000;

export class Ring implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly segmentBytes: number;
  readonly ringId: string;
  /** statistics of the last completed call */
  lastStats: CollectiveStats | undefined;

  private readonly links: RingLinks;
  private readonly live: Liveness;
  private readonly log: Logger;
  private readonly connectTimeoutMs: number;
  private closed = false;
  private seq = 0; // calls started
  private call: Call | undefined;
  /** frames of calls this rank has not started yet, by call number */
  private readonly early = new Map<number, CallFrame[]>();
  private earlyCount = 0;
  private readonly pool: FramePool;

  private constructor(opts: RingOptions, secret: Buffer) {
    if (!Number.isInteger(opts.worldSize) || opts.worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${opts.worldSize}`);
    if (!Number.isInteger(opts.rank) || opts.rank < 0 || opts.rank >= opts.worldSize) throw new RangeError(`rank must be in [0, ${opts.worldSize}), got ${opts.rank}`);
    const seg = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(seg) || seg < 4 || seg % 4 !== 0 || seg > 64 * 1024 * 1024) throw new RangeError(`segmentBytes must be a multiple of 4 in [4, 64 MiB], got ${seg}`);
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.segmentBytes = seg;
    this.ringId = opts.ringId ?? 'ring';
    this.log = opts.log ?? defaultLogger;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
    // send buffers of bf16 segments and aligned copies of payloads that arrive unaligned
    this.pool = new FramePool(seg);
    this.links = new RingLinks({
      rank: this.rank, worldSize: this.worldSize, ringId: this.ringId, segmentBytes: seg, secret, tls: opts.tls, listen: opts.listen,
      handshakeTimeoutMs: opts.handshakeTimeoutMs, connectTimeoutMs: this.connectTimeoutMs, frameMac: opts.frameMac !== false, log: this.log,
    }, {
      fromPrev: (conn, msg) => this.onFromPrev(conn, msg),
      segmentFromPrev: (conn, parts) => this.onSegmentFrame(conn, parts),
      fromNext: (msg) => this.onFromNext(msg),
      prevTraffic: () => { this.live.prevHeard = performance.now(); },
      closed: (which, code, reason, byUs) => this.live.linkClosed(which, code, reason, byUs),
      refusal: () => (this.closed || this.live.failure ? 'ring is closed' : undefined),
    });
    this.live = new Liveness({ rank: this.rank, timeoutMs, joinTimeoutMs: opts.joinTimeoutMs ?? 6 * timeoutMs, log: this.log }, this.links, {
      current: () => this.call,
      started: () => this.seq,
      failed: (err) => {
        const call = this.call;
        this.call = undefined;
        call?.reject(err);
      },
    });
  }

  /** Create a ring node and start listening (N = 1: nothing is opened). */
  static async open(opts: RingOptions): Promise<Ring> {
    const ring = new Ring(opts, normalizeSecret(opts.secret));
    if (ring.worldSize > 1) await ring.links.listen();
    return ring;
  }

  get prevRank(): number { return this.links.prevRank; }
  get nextRank(): number { return this.links.nextRank; }
  /** the bound port (0 for N = 1) */
  get port(): number { return this.links.port; }
  get host(): string { return this.links.host; }
  get url(): string { return this.links.url; }
  /** the error that broke the ring, if any */
  get error(): CollectiveError | undefined { return this.live.failure; }

  private err(message: string): CollectiveError {
    return new CollectiveError(message, undefined, undefined, this.rank);
  }

  // ---- forming the ring ----------------------------------------------------------------------

  /**
   * Connect to the successor (`next` = its listening address) and wait until the predecessor has
   * joined. Resolves when both links are up; rejects after `connectTimeoutMs`.
   * For N = 1 no argument is needed and nothing happens.
   */
  async connect(next?: { host: string; port: number }): Promise<void> {
    if (this.closed) throw this.err('ring is closed');
    if (this.links.formed) return;
    if (this.worldSize === 1) { this.links.formed = true; return; }
    if (!next) throw new TypeError('connect(next): the successor address is required for worldSize > 1');
    const deadline = Date.now() + this.connectTimeoutMs;
    await this.links.connectNext(next, deadline);
    if (this.closed) throw this.err('ring closed while forming');
    // heartbeats start as soon as the successor knows us (it may finish forming before we do)
    this.live.startHeartbeat();
    await this.links.waitForPrev(deadline, () => this.live.failure);
    if (this.live.failure) throw this.live.failure;
    this.links.formed = true;
    this.live.startWatchdog();
  }

  // ---- incoming frames -----------------------------------------------------------------------

  private onFromNext(msg: Message<FromNext>): void {
    if (msg.t === 'ring-abort') this.live.onAbort(msg);
    else this.live.violationByNext(`unexpected ${msg.t}`);
  }

  private onFromPrev(conn: Connection<FromPrev>, msg: Message<FromPrev>): void {
    if (conn !== this.links.prev || this.live.failure) return;
    switch (msg.t) {
      case 'ring-alive':
        return this.live.onAlive(msg);
      case 'ring-abort':
        return this.live.onAbort(msg);
      case 'ring-join':
        return this.live.violation('duplicate ring-join');
      case 'ring-start':
        return this.onCallFrame(msg);
    }
  }

  /** A raw frame from the predecessor: a segment (parsed and checked here, a malformed one is a violation). */
  private onSegmentFrame(conn: Connection<FromPrev>, parts: Buffer[]): void {
    if (conn !== this.links.prev || this.live.failure) return;
    const t0 = performance.now();
    const seg = readSegment(parts);
    const dt = performance.now() - t0;
    if (typeof seg === 'string') return this.live.violation(`malformed segment frame: ${seg}`);
    if (this.call?.seq === seg.seq) this.call.decodeMs += dt;
    this.onCallFrame(seg);
  }

  private onCallFrame(msg: CallFrame): void {
    const call = this.call;
    if (call && msg.seq === call.seq) return 't' in msg ? this.onStart(call, msg) : this.onSegment(call, msg);
    // A predecessor may be ahead of us by up to N−2 calls (each call waits for its predecessor's
    // ring-start, so it cannot start call k + N − 1 before we started call k): buffer those.
    const ahead = msg.seq - this.seq;
    if (ahead >= 0 && ahead < this.worldSize - 1) {
      if (this.earlyCount >= MAX_EARLY_FRAMES) return this.live.violation('too many frames ahead of this rank');
      const list = this.early.get(msg.seq);
      if (list) list.push(msg);
      else this.early.set(msg.seq, [msg]);
      this.earlyCount++;
      return;
    }
    return this.live.violation(`${'t' in msg ? msg.t : `${msg.phase} segment`} for call #${msg.seq}, expected #${call ? call.seq : this.seq}`);
  }

  private onStart(call: Call, msg: Message<typeof RingStart>): void {
    if (call.prevStarted) return this.live.violation('duplicate ring-start');
    if (msg.kind !== call.kind || msg.length !== call.buf.length || msg.op !== call.op || msg.root !== call.root || msg.wire !== call.wire) {
      return this.live.violation(`call #${call.seq} mismatch: rank ${this.prevRank} called ${describeCall(msg)}, rank ${this.rank} called ${describeCall({ ...call, length: call.buf.length })} — every rank must pass the same length and op (and wire), and issue the same collectives (kind, root) in the same order`);
    }
    call.prevStarted = true;
    this.maybeFinish(call);
  }

  private onSegment(call: Call, msg: Segment): void {
    const t0 = performance.now();
    const N = this.worldSize;
    if (!call.prevStarted) return this.live.violation('segment before ring-start');
    const phase = msg.phase;
    let expectIndex: number;
    let bit: number;
    if (phase === 'bc') {
      if (call.kind !== 'broadcast') return this.live.violation(`broadcast segment in ${call.what}`);
      const hop = mod(this.rank - call.root!, N);
      if (hop === 0) return this.live.violation('broadcast segment sent back to its root');
      if (msg.step !== hop - 1) return this.live.violation(`broadcast step ${msg.step}, expected ${hop - 1}`);
      expectIndex = 0;
      bit = msg.segment;
    } else {
      if (phase === 'rs' ? !call.rs : !call.ag) return this.live.violation(`${phase} segment in ${call.what}`);
      if (msg.step >= N - 1) return this.live.violation(`step ${msg.step} out of range`);
      expectIndex = phase === 'rs' ? mod(this.rank - msg.step - 2, N) : mod(this.rank - msg.step - 1, N);
      bit = ((phase === 'rs' ? 0 : N - 1) + msg.step) * call.maxSeg + msg.segment;
    }
    const wire = phase === 'rs' ? call.wire ?? 'f32' : 'f32';
    if (msg.wire !== wire) return this.live.violation(`${phase} segment in ${msg.wire}, expected ${wire} in ${call.what}`);
    if (msg.index !== expectIndex) return this.live.violation(`${phase} step ${msg.step}: chunk ${msg.index}, expected ${expectIndex}`);
    const lay = call.lay;
    if (msg.segment >= lay.segments[msg.index]!) return this.live.violation(`segment ${msg.segment} out of range`);
    if (call.got[bit]) return this.live.violation(`duplicate segment ${phase}/${msg.step}/${msg.index}/${msg.segment}`);
    const segOff = msg.segment * lay.segmentElems;
    const start = lay.start[msg.index]! + segOff;
    const len = Math.min(lay.segmentElems, lay.len[msg.index]! - segOff);
    if (msg.elements !== len) return this.live.violation(`segment ${phase}/${msg.step}/${msg.index}/${msg.segment} has ${msg.elements} elements, expected ${len}`);
    call.got[bit] = 1;
    const ta = performance.now();
    const own = call.buf.subarray(start, start + len);
    if (phase === 'rs') {
      const last = msg.step === N - 2;
      let payload = msg.payload;
      let pooled = false;
      if (wire === 'bf16') {
        let io = u16View(payload);
        if (!io) { payload = this.aligned(payload); pooled = true; io = u16View(payload)!; }
        if (last) addBf16Into(call.buf, start, io);
        else addBf16Forward(io, own);
      } else {
        let acc = f32View(payload);
        if (!acc) { payload = this.aligned(payload); pooled = true; acc = f32View(payload)!; }
        if (last) addInto(call.buf, start, acc);
        else addInto(acc, 0, own); // the partial sum + this rank's values, in the received bytes: sent on as they are
      }
      if (!last) {
        call.addMs += performance.now() - ta;
        setSegmentStep(msg.headBytes, msg.step + 1);
        this.send(call, msg.headBytes, payload, pooled);
      } else {
        // chunk `rank` is fully reduced: we own it
        if (pooled) this.pool.release(payload);
        if (call.mean) divideInPlace(own, N);
        call.addMs += performance.now() - ta;
        if (call.ag) this.sendSegment(call, 'ag', 0, msg.index, msg.segment, own);
      }
    } else {
      // a byte copy: any bit pattern arrives unchanged
      bytesOf(own).set(msg.payload);
      call.addMs += performance.now() - ta;
      if (phase === 'ag' ? msg.step < N - 2 : this.nextRank !== call.root) {
        setSegmentStep(msg.headBytes, msg.step + 1);
        this.send(call, msg.headBytes, msg.payload, false);
      }
    }
    call.received++;
    call.busyMs += performance.now() - t0;
    this.maybeFinish(call);
  }

  /** A copy of `b` at an aligned offset, from the pool (a payload that arrived unaligned: small segments). */
  private aligned(b: Buffer): Buffer {
    const copy = this.pool.alloc(b.length);
    copy.set(b);
    return copy;
  }

  /** Hand one segment frame to the successor; `pooled`: release `payload` to the pool once sent. */
  private send(call: Call, head: Buffer, payload: Buffer, pooled: boolean): void {
    const t0 = performance.now();
    call.pendingSends++;
    call.framesSent++;
    call.bytesSent += head.length + payload.length;
    this.links.next!.sendRaw(head, payload, (err) => {
      call.pendingSends--;
      if (err) {
        if (this.call === call) this.live.fail(this.nextRank, this.links.nextListen, `sending to rank ${this.nextRank} (${this.links.nextListen}) failed: ${err.message}`);
        return;
      }
      if (pooled) this.pool.release(payload);
      this.maybeFinish(call);
    });
    call.sendMs += performance.now() - t0;
  }

  /** Send `data` (a region of the call's buffer) as a new segment: f32 from the buffer itself, or rounded to bf16. */
  private sendSegment(call: Call, phase: Phase, step: number, index: number, segment: number, data: Float32Array): void {
    const t0 = performance.now();
    const wire: WireFormat = phase === 'rs' && call.wire === 'bf16' ? 'bf16' : 'f32';
    const head = writeSegmentHead({ seq: call.seq, step, phase, wire, index, segment, elements: data.length });
    let payload: Buffer;
    if (wire === 'bf16') {
      payload = this.pool.alloc(data.length * 2);
      encodeBf16(data, new Uint16Array(payload.buffer, payload.byteOffset, data.length));
    } else {
      payload = bytesOf(data);
    }
    call.encodeMs += performance.now() - t0;
    this.send(call, head, payload, wire === 'bf16');
  }

  /** Every segment of chunk `index` of the call's layout, as step 0 of `phase`. */
  private sendAll(call: Call, phase: Phase, index: number): void {
    const lay = call.lay;
    const s0 = lay.start[index]!;
    const end = s0 + lay.len[index]!;
    for (let k = 0; k < lay.segments[index]!; k++) {
      const s = s0 + k * lay.segmentElems;
      this.sendSegment(call, phase, 0, index, k, call.buf.subarray(s, Math.min(end, s + lay.segmentElems)));
    }
  }

  private maybeFinish(call: Call): void {
    if (this.call !== call || !call.prevStarted || call.received !== call.expected || call.pendingSends !== 0) return;
    this.call = undefined;
    const c = this.links.prev!.counters;
    const decodeMs = c.decodeMs - call.in0.decodeMs + call.decodeMs;
    this.finish(call, {
      waitMs: Math.max(0, performance.now() - call.t0 - call.busyMs - decodeMs), addMs: call.addMs, encodeMs: call.encodeMs, decodeMs, sendMs: call.sendMs,
      framesSent: call.framesSent, bytesSent: call.bytesSent, framesReceived: c.framesIn - call.in0.frames, bytesReceived: c.bytesIn - call.in0.bytes,
    }, process.cpuUsage(call.cpu0));
  }

  private finish(
    call: { kind: CollectiveKind; seq: number; op: ReduceOp | undefined; wire: 'bf16' | undefined; root: number | undefined; buf: Float32Array; t0: number; resolve: (s: CollectiveStats) => void },
    part: Pick<CollectiveStats, 'waitMs' | 'addMs' | 'encodeMs' | 'decodeMs' | 'sendMs' | 'framesSent' | 'bytesSent' | 'framesReceived' | 'bytesReceived'>,
    cpu: NodeJS.CpuUsage,
  ): void {
    const totalMs = performance.now() - call.t0;
    const bytes = call.buf.length * 4;
    const N = this.worldSize;
    const alg = N === 1 ? Infinity : bytes / 1e6 / (totalMs / 1e3);
    const stats: CollectiveStats = {
      kind: call.kind, seq: call.seq,
      ...(call.op ? { op: call.op, wire: call.wire ?? 'f32' } : {}), ...(call.root !== undefined ? { root: call.root } : {}),
      worldSize: N, elements: call.buf.length, bytes, totalMs, ...part,
      cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000,
      algBandwidthMBps: alg,
      busBandwidthMBps: N === 1 ? 0 : alg * busFactor(call.kind, N),
    };
    this.lastStats = stats;
    call.resolve(stats);
  }

  // ---- the collectives -----------------------------------------------------------------------

  /** Why a call cannot start now (as an error to reject with), or undefined. */
  private refuse(kind: CollectiveKind, buf: Float32Array, op: ReduceOp | undefined, reducing: boolean, opts?: ReduceOptions): Error | undefined {
    if (!(buf instanceof Float32Array)) return new TypeError(`${kind}: buf must be a Float32Array`);
    if (reducing && op !== 'sum' && op !== 'mean') return new TypeError(`${kind}: op must be 'sum' or 'mean', got ${String(op)}`);
    const wire = opts?.wire;
    if (wire !== undefined && wire !== 'f32' && wire !== 'bf16') return new TypeError(`${kind}: wire must be 'f32' or 'bf16', got ${String(wire)}`);
    if (this.live.failure) return this.live.failure;
    if (this.closed) return this.err('ring is closed');
    if (!this.links.formed) return this.err(`${kind} before connect()`);
    if (this.call) return this.err(`${kind}: a call is already in progress on this rank (${this.call.what})`);
    if (buf.length > 0xffffffff) return new RangeError(`${kind}: buffer too long`);
    return undefined;
  }

  /**
   * In-place all-reduce of `buf`: afterwards every rank holds the same bytes, the sum (or mean) of
   * all ranks' inputs. Rejects with a {@link CollectiveError} naming the failed rank when a peer
   * dies, stalls or misbehaves. `opts.wire: 'bf16'`: the reduce-scatter phase travels as bf16
   * (see {@link WireFormat}); the all-gather phase stays f32.
   */
  allReduce(buf: Float32Array, op: ReduceOp = 'sum', opts?: ReduceOptions): Promise<CollectiveStats> {
    const no = this.refuse('allReduce', buf, op, true, opts);
    return no ? Promise.reject(no) : this.begin('allReduce', buf, op, undefined, opts?.wire);
  }

  /** In-place reduce-scatter: afterwards chunk `rank` of `buf` holds the reduced values; the rest of `buf` is unspecified. */
  reduceScatter(buf: Float32Array, op: ReduceOp = 'sum', opts?: ReduceOptions): Promise<CollectiveStats> {
    const no = this.refuse('reduceScatter', buf, op, true, opts);
    return no ? Promise.reject(no) : this.begin('reduceScatter', buf, op, undefined, opts?.wire);
  }

  /** In-place all-gather: this rank contributes chunk `rank` of `buf`; afterwards every rank holds every chunk, byte for byte. */
  allGather(buf: Float32Array): Promise<CollectiveStats> {
    const no = this.refuse('allGather', buf, undefined, false);
    return no ? Promise.reject(no) : this.begin('allGather', buf, undefined, undefined);
  }

  /** In-place broadcast: afterwards every rank holds `root`'s bytes. */
  broadcast(buf: Float32Array, root: number): Promise<CollectiveStats> {
    const no = this.refuse('broadcast', buf, undefined, false);
    if (no) return Promise.reject(no);
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) return Promise.reject(new RangeError(`broadcast: root must be a rank in [0, ${this.worldSize}), got ${root}`));
    return this.begin('broadcast', buf, undefined, root);
  }

  /** Resolves on every rank once every rank has called it (a 1-element all-reduce). */
  async barrier(): Promise<void> {
    const buf = new Float32Array(1);
    const no = this.refuse('barrier', buf, undefined, false);
    if (no) throw no;
    await this.begin('barrier', buf, undefined, undefined);
  }

  private begin(kind: CollectiveKind, buf: Float32Array, op: ReduceOp | undefined, root: number | undefined, wireOpt?: WireFormat): Promise<CollectiveStats> {
    const N = this.worldSize;
    const seq = this.seq++;
    const t0 = performance.now();
    const wire = wireOpt === 'bf16' ? 'bf16' : undefined;
    if (N === 1) {
      return new Promise<CollectiveStats>((resolve) => {
        this.finish({ kind, seq, op, wire, root, buf, t0, resolve }, {
          waitMs: 0, addMs: 0, encodeMs: 0, decodeMs: 0, sendMs: 0, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0,
        }, { user: 0, system: 0 });
      });
    }
    const bc = kind === 'broadcast';
    const rs = kind === 'allReduce' || kind === 'reduceScatter' || kind === 'barrier';
    const ag = kind === 'allReduce' || kind === 'allGather' || kind === 'barrier';
    const lay = chunkLayout(buf.length, bc ? 1 : N, this.segmentBytes / 4);
    const maxSeg = Math.max(1, ...lay.segments);
    let expected = 0;
    if (bc) expected = this.rank === root ? 0 : lay.segments[0]!;
    else {
      for (let s = 0; s < N - 1; s++) {
        if (rs) expected += lay.segments[mod(this.rank - s - 2, N)]!;
        if (ag) expected += lay.segments[mod(this.rank - s - 1, N)]!;
      }
    }
    const c = this.links.prev!.counters;
    return new Promise<CollectiveStats>((resolve, reject) => {
      const call: Call = {
        kind, seq, what: `${kind} #${seq}`, buf, op, wire, root, mean: op === 'mean', rs, ag, lay, maxSeg,
        got: new Uint8Array(bc ? maxSeg : 2 * (N - 1) * maxSeg), expected, received: 0, pendingSends: 0,
        prevStarted: false, t0, addMs: 0, encodeMs: 0, decodeMs: 0, sendMs: 0, busyMs: 0, framesSent: 0, bytesSent: 0,
        in0: { frames: c.framesIn, bytes: c.bytesIn, decodeMs: c.decodeMs }, cpu0: process.cpuUsage(), resolve, reject,
      };
      this.call = call;
      const tb = performance.now();
      this.links.next!.send(RingStart, {
        seq, kind, length: buf.length, ...(op ? { op } : {}), ...(wire ? { wire } : {}), ...(root !== undefined ? { root } : {}),
      }, undefined, { validate: false });
      // step 0; everything else is driven by arrivals
      if (rs) this.sendAll(call, 'rs', mod(this.rank - 1, N));
      else if (ag) this.sendAll(call, 'ag', this.rank);
      else if (this.rank === root) this.sendAll(call, 'bc', 0);
      call.busyMs += performance.now() - tb;
      // frames the predecessor sent before we got here
      const early = this.early.get(seq);
      if (early) {
        this.early.delete(seq);
        this.earlyCount -= early.length;
        for (const m of early) {
          if (this.call !== call) break;
          this.onCallFrame(m);
        }
      }
      this.maybeFinish(call);
    });
  }

  /** Close the links and the listening socket. A pending call rejects. */
  async close(): Promise<void> {
    if (this.closed) return;
    const call = this.call;
    this.call = undefined;
    this.closed = true;
    this.live.stop();
    call?.reject(this.err(`ring closed during ${call.what}`));
    this.early.clear();
    this.earlyCount = 0;
    await this.links.close();
  }
}
