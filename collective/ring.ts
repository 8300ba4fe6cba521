/**
 * Ring all-reduce over authenticated WebSocket peer links.
 *
 * Each rank listens on a port (its predecessor, rank−1 mod N, connects to it) and connects to its
 * successor (rank+1 mod N). A call splits the buffer into N chunks and runs reduce-scatter
 * (N−1 steps) then all-gather (N−1 steps). Chunks travel in segments (default 1 MiB) and the
 * pipeline is driven by arrivals: when segment k of a chunk arrives it is added and sent on at
 * once, so sending, receiving and adding overlap. Every rank sends 2(N−1)/N × bytes.
 *
 * Determinism: chunk c is summed in the fixed rank order c, c+1, …, c−1 (mod N) as float32
 * additions `acc = acc + x` (and, for `mean`, divided by N once by its owner); the all-gather then
 * copies the owner's bytes, so every rank ends with bit-identical buffers.
 *
 * Liveness: every rank sends a `ring-alive` heartbeat to its successor. A predecessor silent for
 * `timeoutMs` (no data, no heartbeat), a lost link, a failed send or a protocol violation fails the
 * ring: the detecting rank sends `ring-abort` naming the culprit to both neighbours, who forward
 * it, so every rank's pending `allReduce` rejects with a {@link RingError} naming the same rank.
 */
import * as v from 'valibot';
import type { SecretInput } from '../wire/auth.ts';
import { normalizeSecret } from '../wire/auth.ts';
import { connect, defaultLogger, describeClose, listen, type Connection, type Logger, type PeerServer } from '../wire/net/index.ts';
import { CloseCode, defineMessage, encodeFrame, float32Array, shortString, u32, type Message } from '../wire/protocol/index.ts';

// ---- messages --------------------------------------------------------------------------------

/** First frame on a peer link, both directions: who we are and the ring parameters we use. */
export const RingJoin = defineMessage('ring-join', {
  rank: u32(),
  worldSize: u32(),
  ringId: shortString(128),
  segmentBytes: u32(),
  /** the sender's listening address "host:port", for error messages */
  listen: shortString(300),
});
/** Precedes the chunks of one all-reduce call; lets the receiver check lengths and ops agree. */
export const RingStart = defineMessage('ring-start', {
  seq: u32(),
  length: u32(),
  op: v.picklist(['sum', 'mean']),
});
/** One segment of one chunk in one step. */
export const Chunk = defineMessage('chunk', {
  seq: u32(),
  step: u32(),
  phase: v.picklist(['rs', 'ag']),
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

type FromPrev = typeof RingJoin | typeof RingStart | typeof Chunk | typeof RingAlive | typeof RingAbort;
type FromNext = typeof RingJoin | typeof RingAbort;

// ---- public types ----------------------------------------------------------------------------

export type ReduceOp = 'sum' | 'mean';

export interface RingTls {
  /** server certificate chain and key (PEM paths): this rank serves wss:// */
  cert: string;
  key: string;
  /** CA bundle (PEM path) used to verify the successor's certificate */
  ca?: string;
  /** default true; false skips certificate verification (links stay HMAC-authenticated) */
  rejectUnauthorized?: boolean;
  /** name to verify in the successor's certificate when connecting by IP */
  servername?: string;
}

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
  /** a live predecessor that has not started the same all-reduce after this long fails it; default 6 × timeoutMs */
  joinTimeoutMs?: number;
  /** connect(): how long to wait for the successor to come up and the predecessor to join; default 30 000 ms */
  connectTimeoutMs?: number;
  /** segment size in bytes (multiple of 4); default 1 MiB */
  segmentBytes?: number;
  /** an incoming connection must complete the HMAC handshake within this time; default 5000 ms */
  handshakeTimeoutMs?: number;
  /** identifies one ring formation; links with another ringId are refused. Default "ring" */
  ringId?: string;
  log?: Logger;
}

export interface AllReduceStats {
  seq: number;
  op: ReduceOp;
  worldSize: number;
  elements: number;
  bytes: number;
  /** wall time of the call on this rank */
  totalMs: number;
  /** part of totalMs not spent in this rank's ring code: network, kernel, ws framing, peers */
  waitMs: number;
  /** adding received segments, scaling for `mean`, copying all-gathered segments into the buffer */
  addMs: number;
  /** building outgoing frames (one copy of each segment) */
  encodeMs: number;
  /** decoding and validating incoming frames */
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
  /** algBandwidth × 2(N−1)/N, MB/s */
  busBandwidthMBps: number;
}

export class RingError extends Error {
  override name = 'RingError';
  constructor(
    message: string,
    /** the rank held responsible (dead, stalled, misbehaving), when known */
    readonly failedRank: number | undefined,
    readonly failedAddress: string | undefined,
    /** the rank that detected the failure */
    readonly detectedBy: number,
  ) {
    super(message);
  }
}

// ---- helpers shared with the star baseline and tests ----------------------------------------

export const DEFAULT_SEGMENT_BYTES = 1 << 20;

export interface ChunkLayout {
  length: number;
  worldSize: number;
  segmentElems: number;
  start: number[];
  len: number[];
  segments: number[];
}

/** Split `length` elements into `worldSize` contiguous chunks (the first `length % N` one longer). */
export function chunkLayout(length: number, worldSize: number, segmentElems: number): ChunkLayout {
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

/**
 * The exact result a ring of `inputs.length` ranks produces (bit for bit): chunk c summed in rank
 * order c, c+1, …, c−1 with float32 rounding after every addition, then divided by N for `mean`.
 */
export function referenceRingReduce(inputs: Float32Array[], op: ReduceOp = 'sum'): Float32Array {
  const N = inputs.length;
  const length = inputs[0]?.length ?? 0;
  const out = new Float32Array(length);
  const lay = chunkLayout(length, N, Math.max(1, length));
  for (let c = 0; c < N; c++) {
    const s = lay.start[c]!;
    const e = s + lay.len[c]!;
    out.set(inputs[c]!.subarray(s, e), s);
    for (let k = 1; k < N; k++) addInto(out, s, inputs[(c + k) % N]!.subarray(s, e));
    if (op === 'mean' && N > 1) divideInPlace(out.subarray(s, e), N);
  }
  return out;
}

const mod = (a: number, n: number) => ((a % n) + n) % n;

/** "0.0.0.0:7000" advertised by a peer that listens on all interfaces → "<its IP>:7000". */
function concreteAddress(listen: string, remote: string): string {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) return listen;
  const host = m[1]!.replace(/^\[|\]$/g, '');
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return listen;
  const ip = /^(.*):\d+$/.exec(remote)?.[1] ?? host;
  return `${ip}:${m[2]}`;
}

/**
 * Reusable send buffers for segment frames: a frame's buffer goes back to the pool once ws has
 * handed it to the kernel (the send callback), so steady-state sends allocate nothing (fresh
 * 1 MiB ArrayBuffers per frame cost page faults and external-memory GCs).
 */
export class FramePool {
  private readonly free: Buffer[] = [];
  constructor(readonly capacity: number, readonly maxFree = 64) {}
  readonly alloc = (size: number): Buffer => {
    if (size > this.capacity || size < 16384) return Buffer.allocUnsafe(size);
    return (this.free.pop() ?? Buffer.allocUnsafeSlow(this.capacity)).subarray(0, size);
  };
  release(frame: Buffer): void {
    const ab = frame.buffer;
    if (ab.byteLength === this.capacity && frame.byteOffset === 0 && this.free.length < this.maxFree) {
      this.free.push(Buffer.from(ab, 0, this.capacity));
    }
  }
}

// ---- the ring --------------------------------------------------------------------------------

interface Call {
  seq: number;
  buf: Float32Array;
  op: ReduceOp;
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
  sendMs: number;
  busyMs: number;
  framesSent: number;
  bytesSent: number;
  in0: { frames: number; bytes: number; decodeMs: number };
  cpu0: NodeJS.CpuUsage;
  resolve: (s: AllReduceStats) => void;
  reject: (e: Error) => void;
}

export class Ring {
  readonly rank: number;
  readonly worldSize: number;
  readonly segmentBytes: number;
  readonly ringId: string;
  /** statistics of the last completed call */
  lastStats: AllReduceStats | undefined;

  private readonly opts: RingOptions;
  private readonly secret: Buffer;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly joinTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private server: PeerServer<FromPrev> | undefined;
  private prev: Connection<FromPrev> | undefined;
  private prevListen = '?';
  private next: Connection<FromNext> | undefined;
  private nextListen = '?';
  private formed = false;
  private closed = false;
  private failure: RingError | undefined;
  private seq = 0; // calls started
  private call: Call | undefined;
  private readonly early: Message<FromPrev>[] = [];
  private readonly pool: FramePool;
  private prevHeard = 0;
  private prevSeq = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private watchdogLast = 0;
  private readonly prevWaiters: (() => void)[] = [];

  private constructor(opts: RingOptions, secret: Buffer) {
    if (!Number.isInteger(opts.worldSize) || opts.worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${opts.worldSize}`);
    if (!Number.isInteger(opts.rank) || opts.rank < 0 || opts.rank >= opts.worldSize) throw new RangeError(`rank must be in [0, ${opts.worldSize}), got ${opts.rank}`);
    const seg = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(seg) || seg < 4 || seg % 4 !== 0 || seg > 64 * 1024 * 1024) throw new RangeError(`segmentBytes must be a multiple of 4 in [4, 64 MiB], got ${seg}`);
    this.opts = opts;
    this.secret = secret;
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.segmentBytes = seg;
    this.ringId = opts.ringId ?? 'ring';
    this.log = opts.log ?? defaultLogger;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.joinTimeoutMs = opts.joinTimeoutMs ?? 6 * this.timeoutMs;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
    this.pool = new FramePool(seg + 256);
  }

  /** Create a ring node and start listening (N = 1: nothing is opened). */
  static async open(opts: RingOptions): Promise<Ring> {
    const ring = new Ring(opts, normalizeSecret(opts.secret));
    if (ring.worldSize > 1) await ring.startServer();
    return ring;
  }

  get prevRank(): number { return mod(this.rank - 1, this.worldSize); }
  get nextRank(): number { return mod(this.rank + 1, this.worldSize); }
  /** the bound port (0 for N = 1) */
  get port(): number { return this.server?.port ?? 0; }
  get host(): string { return this.server?.host ?? this.opts.listen?.host ?? '127.0.0.1'; }
  get url(): string { return this.server?.url ?? ''; }
  /** the error that broke the ring, if any */
  get error(): RingError | undefined { return this.failure; }

  private get listenAddr(): string { return `${this.host}:${this.port}`; }
  private who(rank: number): string {
    const addr = rank === this.prevRank ? this.prevListen : rank === this.nextRank ? this.nextListen : undefined;
    return `rank ${rank}${addr && addr !== '?' ? ` (${addr})` : ''}`;
  }

  private async startServer(): Promise<void> {
    this.server = await listen<FromPrev>({
      host: this.opts.listen?.host ?? '127.0.0.1',
      port: this.opts.listen?.port ?? 0,
      secret: this.secret,
      role: 'peer',
      name: `${this.ringId}/rank-${this.rank}`,
      messages: [RingJoin, RingStart, Chunk, RingAlive, RingAbort],
      maxPayload: this.segmentBytes + 4096,
      log: this.log,
      ...(this.opts.handshakeTimeoutMs ? { handshakeTimeoutMs: this.opts.handshakeTimeoutMs } : {}),
      ...(this.opts.tls ? { tls: { cert: this.opts.tls.cert, key: this.opts.tls.key } } : {}),
      onConnection: (conn) => this.onInbound(conn),
    });
  }

  // ---- forming the ring ----------------------------------------------------------------------

  /**
   * Connect to the successor (`next` = its listening address) and wait until the predecessor has
   * joined. Resolves when both links are up; rejects after `connectTimeoutMs`.
   * For N = 1 no argument is needed and nothing happens.
   */
  async connect(next?: { host: string; port: number }): Promise<void> {
    if (this.closed) throw new RingError('ring is closed', undefined, undefined, this.rank);
    if (this.formed) return;
    if (this.worldSize === 1) { this.formed = true; return; }
    if (!next) throw new TypeError('connect(next): the successor address is required for worldSize > 1');
    const deadline = Date.now() + this.connectTimeoutMs;

    const host = next.host.includes(':') ? `[${next.host}]` : next.host;
    this.nextListen = `${next.host}:${next.port}`;
    const tls = this.opts.tls;
    const conn = await connect<FromNext>({
      url: `${tls ? 'wss' : 'ws'}://${host}:${next.port}`,
      secret: this.secret,
      role: 'peer',
      name: `${this.ringId}/rank-${this.rank}`,
      messages: [RingJoin, RingAbort],
      peerLabel: `ring peer rank ${this.nextRank}`,
      zeroMask: true,
      maxPayload: 64 * 1024,
      retryForMs: this.connectTimeoutMs,
      log: this.log,
      ...(tls ? { tls: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}), ...(tls.servername ? { servername: tls.servername } : {}) } } : {}),
    });
    if (this.closed) {
      conn.close(CloseCode.NORMAL, 'ring closed');
      throw new RingError('ring closed while forming', undefined, undefined, this.rank);
    }
    const remaining = () => Math.max(1, deadline - Date.now());
    const hb = this.heartbeatMs;
    // exchange ring-join on the outbound link
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { conn.fail(CloseCode.TIMEOUT, 'no ring-join reply'); reject(new RingError(`${this.who(this.nextRank)} did not answer ring-join within ${this.connectTimeoutMs} ms`, this.nextRank, this.nextListen, this.rank)); }, remaining());
      conn.onClose((info) => {
        clearTimeout(timer);
        reject(new RingError(`link to ${this.who(this.nextRank)} closed while forming the ring: ${describeClose(info.code, info.reason)}`, this.nextRank, this.nextListen, this.rank));
      });
      conn.onFrame((msg) => {
        if (msg.t === 'ring-join') {
          const problem = this.checkJoin(msg, this.nextRank);
          clearTimeout(timer);
          if (problem) {
            conn.fail(CloseCode.CONFLICT, problem);
            reject(new RingError(`${this.who(this.nextRank)}: ${problem}`, this.nextRank, this.nextListen, this.rank));
            return;
          }
          this.next = conn; // keep the address we dialed in nextListen: it is the one that works
          conn.label = `ring successor rank ${this.nextRank} (${this.nextListen})`;
          conn.onFrame((m) => this.onFromNext(m));
          conn.onClose((info) => this.onLinkClosed('next', info.code, info.reason, info.byUs));
          // heartbeats start as soon as the successor knows us (it may finish forming before we do)
          this.heartbeat = setInterval(() => this.sendHeartbeat(), hb);
          this.heartbeat.unref();
          resolve();
        } else {
          clearTimeout(timer);
          conn.fail(CloseCode.UNEXPECTED, `expected ring-join, got ${msg.t}`);
          reject(new RingError(`${this.who(this.nextRank)} sent ${msg.t} instead of ring-join`, this.nextRank, this.nextListen, this.rank));
        }
      });
      conn.send(RingJoin, this.joinFields());
    });
    // wait for the predecessor (a link that joins and drops again while forming does not count)
    while (!this.prev?.isOpen) {
      if (this.failure) throw this.failure;
      if (this.closed) throw new RingError('ring closed while forming', undefined, undefined, this.rank);
      if (Date.now() >= deadline) throw new RingError(`rank ${this.prevRank} (predecessor) did not join within ${this.connectTimeoutMs} ms`, this.prevRank, undefined, this.rank);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, remaining());
        this.prevWaiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    if (this.failure) throw this.failure;
    this.formed = true;
    this.prevHeard = performance.now();
    this.watchdogLast = performance.now();
    this.watchdog = setInterval(() => this.checkLiveness(hb), Math.max(10, Math.floor(hb / 2)));
    this.watchdog.unref();
  }

  private get heartbeatMs(): number {
    return Math.max(20, Math.min(1000, Math.floor(this.timeoutMs / 4)));
  }

  private joinFields() {
    return { rank: this.rank, worldSize: this.worldSize, ringId: this.ringId, segmentBytes: this.segmentBytes, listen: this.listenAddr };
  }

  private checkJoin(msg: Message<typeof RingJoin>, expectRank: number): string | undefined {
    if (msg.ringId !== this.ringId) return `ring id mismatch: "${msg.ringId}" vs ours "${this.ringId}"`;
    if (msg.worldSize !== this.worldSize) return `world size mismatch: ${msg.worldSize} vs ours ${this.worldSize}`;
    if (msg.rank !== expectRank) return `expected rank ${expectRank}, got rank ${msg.rank}`;
    if (msg.segmentBytes !== this.segmentBytes) return `segment size mismatch: ${msg.segmentBytes} vs ours ${this.segmentBytes}`;
    return undefined;
  }

  private onInbound(conn: Connection<FromPrev>): void {
    let joined = false;
    const timer = setTimeout(() => { if (!joined) conn.fail(CloseCode.TIMEOUT, 'no ring-join within 5000 ms'); }, 5000);
    timer.unref();
    conn.onClose(() => clearTimeout(timer));
    conn.onFrame((msg) => {
      if (joined) return this.onFromPrev(conn, msg);
      clearTimeout(timer);
      if (msg.t !== 'ring-join') { conn.fail(CloseCode.UNEXPECTED, `expected ring-join, got ${msg.t}`); return; }
      if (this.closed || this.failure) { conn.fail(CloseCode.CONFLICT, 'ring is closed'); return; }
      const problem = this.checkJoin(msg, this.prevRank);
      if (problem) { conn.fail(CloseCode.CONFLICT, `ring-join refused: ${problem}`); return; }
      if (this.prev && this.prev.isOpen) { conn.fail(CloseCode.CONFLICT, `ring-join refused: rank ${this.prevRank} is already connected`); return; }
      joined = true;
      this.prev = conn;
      this.prevListen = concreteAddress(msg.listen, conn.remote);
      conn.label = `ring predecessor rank ${this.prevRank} (${this.prevListen})`;
      conn.onTraffic(() => { this.prevHeard = performance.now(); });
      conn.onClose((info) => {
        if (this.prev === conn && !this.formed) { this.prev = undefined; return; } // may reconnect while forming
        if (this.prev === conn) this.onLinkClosed('prev', info.code, info.reason, info.byUs);
      });
      conn.send(RingJoin, this.joinFields());
      for (const w of this.prevWaiters.splice(0)) w();
    });
  }

  // ---- failures ------------------------------------------------------------------------------

  private onLinkClosed(which: 'prev' | 'next', code: number, reason: string, byUs: boolean): void {
    if (this.failure || this.closed || byUs) return;
    const rank = which === 'prev' ? this.prevRank : this.nextRank;
    const addr = which === 'prev' ? this.prevListen : this.nextListen;
    const what = code === CloseCode.NORMAL || code === CloseCode.GOING_AWAY ? 'closed its link' : `link lost: ${describeClose(code, reason)}`;
    this.fail(rank, addr, `rank ${rank} (${addr}) ${what}`, !!this.call);
  }

  /** Fail the ring: reject the pending call, tell both neighbours, close the links. */
  private fail(failedRank: number | undefined, failedAddress: string | undefined, reason: string, logIt = true, origin = this.rank): void {
    if (this.failure || this.closed) return;
    const culprit = failedRank !== undefined ? `rank ${failedRank}${failedAddress ? ` (${failedAddress})` : ''}` : 'unknown rank';
    const msg = origin === this.rank
      ? `ring all-reduce failed at rank ${this.rank}: ${reason}`
      : `ring all-reduce aborted: ${reason} [detected by rank ${origin}; culprit ${culprit}]`;
    this.failure = new RingError(msg, failedRank, failedAddress, origin);
    if (logIt) this.log(`ring rank ${this.rank}: ${msg}`);
    this.stopTimers();
    const abort = {
      origin, reason: reason.slice(0, 1024),
      ...(failedRank !== undefined ? { failedRank } : {}), ...(failedAddress ? { failedAddress: failedAddress.slice(0, 300) } : {}),
    };
    for (const conn of [this.next, this.prev] as (Connection<FromPrev | FromNext> | undefined)[]) {
      if (conn?.isOpen) {
        conn.send(RingAbort, abort);
        conn.close(CloseCode.ABORTED, `ring aborted: ${culprit}`);
      }
    }
    const call = this.call;
    this.call = undefined;
    call?.reject(this.failure);
  }

  private stopTimers(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.watchdog) clearInterval(this.watchdog);
    this.heartbeat = this.watchdog = undefined;
  }

  private sendHeartbeat(): void {
    if (this.next?.isOpen && !this.failure) this.next.send(RingAlive, { seq: this.seq, active: !!this.call }, undefined, { validate: false });
  }

  private checkLiveness(hb: number): void {
    if (this.failure || this.closed) return;
    const now = performance.now();
    // our own event loop was blocked (long synchronous work): do not blame the predecessor for it
    if (now - this.watchdogLast > 2 * hb + 50) this.prevHeard = Math.max(this.prevHeard, now - hb);
    this.watchdogLast = now;
    // Silence only matters while we wait for data: between calls the predecessor may be busy in
    // synchronous work (no heartbeats then), and a dead process closes its sockets anyway. Within a
    // call the predecessor gets timeoutMs counted from our call's start at the earliest.
    const call = this.call;
    if (!call) return;
    const heard = Math.max(this.prevHeard, call.t0);
    if (now - heard > this.timeoutMs) {
      this.fail(this.prevRank, this.prevListen, `rank ${this.prevRank} (${this.prevListen}) stopped responding: no data or heartbeat for ${Math.round(now - heard)} ms (timeout ${this.timeoutMs} ms)`);
      return;
    }
    if (!call.prevStarted && this.prevSeq <= call.seq && now - call.t0 > this.joinTimeoutMs) {
      this.fail(this.prevRank, this.prevListen, `rank ${this.prevRank} (${this.prevListen}) is alive but has not started all-reduce #${call.seq} within ${this.joinTimeoutMs} ms`);
    }
  }

  private violation(text: string): void {
    this.fail(this.prevRank, this.prevListen, `protocol violation by rank ${this.prevRank} (${this.prevListen}): ${text}`);
  }

  // ---- incoming frames -----------------------------------------------------------------------

  private onFromNext(msg: Message<FromNext>): void {
    if (msg.t === 'ring-abort') this.onAbort(msg);
    else this.fail(this.nextRank, this.nextListen, `protocol violation by rank ${this.nextRank}: unexpected ${msg.t}`);
  }

  private onAbort(msg: Message<typeof RingAbort>): void {
    this.fail(msg.failedRank, msg.failedAddress, msg.reason, !!this.call, msg.origin);
  }

  private onFromPrev(conn: Connection<FromPrev>, msg: Message<FromPrev>): void {
    if (conn !== this.prev || this.failure) return;
    switch (msg.t) {
      case 'ring-alive':
        this.prevSeq = msg.seq;
        return;
      case 'ring-abort':
        return this.onAbort(msg);
      case 'ring-join':
        return this.violation('duplicate ring-join');
      case 'ring-start':
      case 'chunk': {
        const call = this.call;
        if (call && msg.seq === call.seq) return msg.t === 'chunk' ? this.onChunk(call, msg) : this.onStart(call, msg);
        if (msg.seq === this.seq) {
          if (this.early.length > 1_000_000) return this.violation('too many frames ahead of this rank');
          this.early.push(msg);
          return;
        }
        return this.violation(`${msg.t} for all-reduce #${msg.seq}, expected #${call ? call.seq : this.seq}`);
      }
    }
  }

  private onStart(call: Call, msg: Message<typeof RingStart>): void {
    if (call.prevStarted) return this.violation('duplicate ring-start');
    if (msg.length !== call.buf.length || msg.op !== call.op) {
      return this.violation(`all-reduce #${call.seq} mismatch: rank ${this.prevRank} has ${msg.length} elements (${msg.op}), rank ${this.rank} has ${call.buf.length} (${call.op}) — every rank must pass the same length and op`);
    }
    call.prevStarted = true;
    this.maybeFinish(call);
  }

  private onChunk(call: Call, msg: Message<typeof Chunk>): void {
    const t0 = performance.now();
    const N = this.worldSize;
    if (!call.prevStarted) return this.violation('chunk before ring-start');
    if (msg.step >= N - 1) return this.violation(`step ${msg.step} out of range`);
    const rs = msg.phase === 'rs';
    const expectIndex = rs ? mod(this.rank - msg.step - 1, N) : mod(this.rank - msg.step, N);
    if (msg.index !== expectIndex) return this.violation(`${msg.phase} step ${msg.step}: chunk ${msg.index}, expected ${expectIndex}`);
    const lay = call.lay;
    if (msg.segment >= lay.segments[msg.index]!) return this.violation(`segment ${msg.segment} out of range`);
    const bit = ((rs ? 0 : 1) * (N - 1) + msg.step) * call.maxSeg + msg.segment;
    if (call.got[bit]) return this.violation(`duplicate segment ${msg.phase}/${msg.step}/${msg.index}/${msg.segment}`);
    const segOff = msg.segment * lay.segmentElems;
    const start = lay.start[msg.index]! + segOff;
    const len = Math.min(lay.segmentElems, lay.len[msg.index]! - segOff);
    if (msg.data.length !== len) return this.violation(`segment ${msg.phase}/${msg.step}/${msg.index}/${msg.segment} has ${msg.data.length} floats, expected ${len}`);
    call.got[bit] = 1;
    const region = call.buf.subarray(start, start + len);
    const ta = performance.now();
    if (rs) {
      addInto(call.buf, start, msg.data);
      if (msg.step === N - 2 && call.op === 'mean') divideInPlace(region, N);
    } else {
      call.buf.set(msg.data, start);
    }
    call.addMs += performance.now() - ta;
    if (rs) {
      if (msg.step < N - 2) this.sendChunk(call, 'rs', msg.step + 1, msg.index, msg.segment, region);
      else this.sendChunk(call, 'ag', 0, msg.index, msg.segment, region); // fully reduced: we own it
    } else if (msg.step < N - 2) {
      this.sendChunk(call, 'ag', msg.step + 1, msg.index, msg.segment, msg.data);
    }
    call.received++;
    call.busyMs += performance.now() - t0;
    this.maybeFinish(call);
  }

  private sendChunk(call: Call, phase: 'rs' | 'ag', step: number, index: number, segment: number, data: Float32Array): void {
    const t0 = performance.now();
    const frame = encodeFrame(Chunk, { seq: call.seq, step, phase, index, segment, data }, { validate: false, alloc: this.pool.alloc });
    const t1 = performance.now();
    call.pendingSends++;
    call.framesSent++;
    call.bytesSent += frame.length;
    this.next!.sendEncoded(frame, (err) => {
      call.pendingSends--;
      if (err) {
        if (this.call === call) this.fail(this.nextRank, this.nextListen, `sending to rank ${this.nextRank} (${this.nextListen}) failed: ${err.message}`);
        return;
      }
      this.pool.release(frame);
      this.maybeFinish(call);
    });
    const t2 = performance.now();
    call.encodeMs += t1 - t0;
    call.sendMs += t2 - t1;
  }

  private maybeFinish(call: Call): void {
    if (this.call !== call || !call.prevStarted || call.received !== call.expected || call.pendingSends !== 0) return;
    this.call = undefined;
    const totalMs = performance.now() - call.t0;
    const c = this.prev!.counters;
    const decodeMs = c.decodeMs - call.in0.decodeMs;
    const bytes = call.buf.length * 4;
    const N = this.worldSize;
    const busy = call.busyMs + decodeMs;
    const cpu = process.cpuUsage(call.cpu0);
    const stats: AllReduceStats = {
      seq: call.seq, op: call.op, worldSize: N, elements: call.buf.length, bytes, totalMs,
      waitMs: Math.max(0, totalMs - busy), addMs: call.addMs, encodeMs: call.encodeMs, decodeMs, sendMs: call.sendMs,
      cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000,
      framesSent: call.framesSent, bytesSent: call.bytesSent,
      framesReceived: c.framesIn - call.in0.frames, bytesReceived: c.bytesIn - call.in0.bytes,
      algBandwidthMBps: bytes / 1e6 / (totalMs / 1e3),
      busBandwidthMBps: (bytes / 1e6 / (totalMs / 1e3)) * (2 * (N - 1)) / N,
    };
    this.lastStats = stats;
    call.resolve(stats);
  }

  // ---- the collective ------------------------------------------------------------------------

  /**
   * In-place all-reduce of `buf` across the ring: afterwards every rank holds the same bytes, the
   * sum (or mean) of all ranks' inputs. All ranks must call it the same number of times with the
   * same length and op. Do not touch `buf` until the promise settles. Rejects with a
   * {@link RingError} naming the failed rank when a peer dies, stalls or misbehaves.
   */
  allReduce(buf: Float32Array, op: ReduceOp = 'sum'): Promise<AllReduceStats> {
    if (!(buf instanceof Float32Array)) return Promise.reject(new TypeError('allReduce: buf must be a Float32Array'));
    if (op !== 'sum' && op !== 'mean') return Promise.reject(new TypeError(`allReduce: op must be 'sum' or 'mean', got ${String(op)}`));
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new RingError('ring is closed', undefined, undefined, this.rank));
    if (!this.formed) return Promise.reject(new RingError('allReduce before connect()', undefined, undefined, this.rank));
    if (this.call) return Promise.reject(new RingError('allReduce: a call is already in progress on this rank', undefined, undefined, this.rank));
    if (buf.length > 0xffffffff) return Promise.reject(new RangeError('allReduce: buffer too long'));
    const N = this.worldSize;
    const seq = this.seq++;
    const t0 = performance.now();
    if (N === 1) {
      const stats: AllReduceStats = {
        seq, op, worldSize: 1, elements: buf.length, bytes: buf.length * 4, totalMs: performance.now() - t0, waitMs: 0,
        addMs: 0, encodeMs: 0, decodeMs: 0, sendMs: 0, cpuUserMs: 0, cpuSystemMs: 0, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0,
        algBandwidthMBps: Infinity, busBandwidthMBps: 0,
      };
      this.lastStats = stats;
      return Promise.resolve(stats);
    }
    const lay = chunkLayout(buf.length, N, this.segmentBytes / 4);
    const maxSeg = Math.max(1, ...lay.segments);
    let expected = 0;
    for (let s = 0; s < N - 1; s++) expected += lay.segments[mod(this.rank - s - 1, N)]! + lay.segments[mod(this.rank - s, N)]!;
    const c = this.prev!.counters;
    return new Promise<AllReduceStats>((resolve, reject) => {
      const call: Call = {
        seq, buf, op, lay, maxSeg, got: new Uint8Array(2 * (N - 1) * maxSeg), expected, received: 0, pendingSends: 0,
        prevStarted: false, t0, addMs: 0, encodeMs: 0, sendMs: 0, busyMs: 0, framesSent: 0, bytesSent: 0,
        in0: { frames: c.framesIn, bytes: c.bytesIn, decodeMs: c.decodeMs }, cpu0: process.cpuUsage(), resolve, reject,
      };
      this.call = call;
      const tb = performance.now();
      this.next!.send(RingStart, { seq, length: buf.length, op }, undefined, { validate: false });
      // reduce-scatter step 0: our own chunk, every segment; everything else is driven by arrivals
      const own = this.rank;
      for (let k = 0; k < lay.segments[own]!; k++) {
        const s = lay.start[own]! + k * lay.segmentElems;
        const e = Math.min(lay.start[own]! + lay.len[own]!, s + lay.segmentElems);
        this.sendChunk(call, 'rs', 0, own, k, buf.subarray(s, e));
      }
      call.busyMs += performance.now() - tb;
      // frames the predecessor sent before we got here
      const early = this.early.splice(0);
      for (const m of early) {
        if (this.call !== call) break;
        this.onFromPrev(this.prev!, m);
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
    this.stopTimers();
    call?.reject(new RingError('ring closed during all-reduce', undefined, undefined, this.rank));
    for (const w of this.prevWaiters.splice(0)) w();
    this.next?.close(CloseCode.NORMAL, 'ring closed');
    this.prev?.close(CloseCode.NORMAL, 'ring closed');
    await this.server?.close();
  }
}
