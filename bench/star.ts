/**
 * Star all-reduce: the baseline the ring is measured against (bench/allreduce.ts), not production
 * code. Every rank sends its whole buffer to rank 0, which adds the contributions in rank order
 * (0, 1, …, N−1, float32), divides by N for `mean`, and sends the result back to every rank.
 * Segmented and pipelined like the ring (rank 0 reduces and broadcasts segment k as soon as all
 * ranks' segment k arrived), but rank 0 moves 2(N−1) × bytes through its one network interface,
 * against 2(N−1)/N × bytes per rank in a ring. All-reduce only; it uses the collective library only
 * through its public interface (collective/index.ts) and has its own messages, abort included.
 */
import { normalizeSecret, type SecretInput } from '../wire/auth.ts';
import { connect, defaultLogger, describeClose, FramePool, listen, type Connection, type Logger, type PeerServer } from '../wire/net/index.ts';
import { CloseCode, defineMessage, encodeFrame, float32Array, shortString, u32, type Message } from '../wire/protocol/index.ts';
import * as v from 'valibot';
import { addInto, CollectiveError, DEFAULT_SEGMENT_BYTES, divideInPlace, type CollectiveStats, type ReduceOp, type RingTls } from '../collective/index.ts';

export const StarJoin = defineMessage('star-join', {
  rank: u32(),
  worldSize: u32(),
  segmentBytes: u32(),
});
export const StarStart = defineMessage('star-start', {
  seq: u32(),
  length: u32(),
  op: v.picklist(['sum', 'mean']),
});
/** rank → root: a segment of its input; root → rank: a segment of the result */
export const StarChunk = defineMessage('star-chunk', {
  seq: u32(),
  segment: u32(),
  data: float32Array(),
});

/** The star failed; rank 0 tells every leaf, a leaf tells rank 0 (which tells the others). */
export const StarAbort = defineMessage('star-abort', {
  origin: u32(),
  failedRank: v.optional(u32()),
  failedAddress: v.optional(shortString(300)),
  reason: v.pipe(v.string(), v.maxLength(1024)),
});

type StarMsg = typeof StarJoin | typeof StarStart | typeof StarChunk | typeof StarAbort;

export interface StarOptions {
  rank: number;
  worldSize: number;
  /** rank 0 listens here (others ignore it); default 127.0.0.1:0 */
  listen?: { host?: string; port?: number };
  secret: SecretInput;
  tls?: RingTls;
  /** no frame from a peer we wait on for this long fails the call; default 10 000 ms */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  segmentBytes?: number;
  handshakeTimeoutMs?: number;
  log?: Logger;
}

interface RootCall {
  seq: number; buf: Float32Array; op: ReduceOp; segs: number; segElems: number;
  started: Set<number>; parts: (Float32Array | undefined)[][]; have: number[]; done: number; pendingSends: number;
  t0: number; cpu0: NodeJS.CpuUsage; busyMs: number; addMs: number; encodeMs: number; sendMs: number; framesSent: number; bytesSent: number;
  resolve: (s: CollectiveStats) => void; reject: (e: Error) => void;
}
interface LeafCall {
  seq: number; buf: Float32Array; op: ReduceOp; segs: number; segElems: number; got: Uint8Array; done: number; pendingSends: number;
  t0: number; cpu0: NodeJS.CpuUsage; busyMs: number; addMs: number; encodeMs: number; sendMs: number; framesSent: number; bytesSent: number;
  resolve: (s: CollectiveStats) => void; reject: (e: Error) => void;
}

export class Star {
  readonly rank: number;
  readonly worldSize: number;
  readonly segmentBytes: number;
  lastStats: CollectiveStats | undefined;
  private readonly opts: StarOptions;
  private readonly secret: Buffer;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private server: PeerServer<StarMsg> | undefined;
  private readonly leaves = new Map<number, Connection<StarMsg>>(); // root: rank → link
  private root: Connection<StarMsg> | undefined; // leaf: link to rank 0
  private rootAddr = '?';
  private readonly lastHeard = new Map<number, number>();
  private allJoined: (() => void) | undefined;
  private formed = false;
  private closed = false;
  private failure: CollectiveError | undefined;
  private seq = 0;
  private rootCall: RootCall | undefined;
  private leafCall: LeafCall | undefined;
  private readonly early: { from: number; msg: Message<StarMsg> }[] = [];
  private watchdog: NodeJS.Timeout | undefined;
  private readonly pool: FramePool;

  private constructor(opts: StarOptions, secret: Buffer) {
    if (!Number.isInteger(opts.worldSize) || opts.worldSize < 1) throw new RangeError('worldSize must be a positive integer');
    if (!Number.isInteger(opts.rank) || opts.rank < 0 || opts.rank >= opts.worldSize) throw new RangeError('rank out of range');
    const seg = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(seg) || seg < 4 || seg % 4 !== 0) throw new RangeError('segmentBytes must be a positive multiple of 4');
    this.opts = opts;
    this.secret = secret;
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.segmentBytes = seg;
    this.log = opts.log ?? defaultLogger;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.pool = new FramePool(seg + 256);
  }

  static async open(opts: StarOptions): Promise<Star> {
    const star = new Star(opts, normalizeSecret(opts.secret));
    if (star.rank === 0 && star.worldSize > 1) {
      star.server = await listen<StarMsg>({
        host: opts.listen?.host ?? '127.0.0.1', port: opts.listen?.port ?? 0, secret: star.secret,
        role: 'peer', name: 'star/rank-0', messages: [StarJoin, StarStart, StarChunk, StarAbort],
        maxPayload: star.segmentBytes + 4096, log: star.log,
        ...(opts.handshakeTimeoutMs ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}),
        ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
        onConnection: (conn) => star.onLeaf(conn),
      });
    }
    return star;
  }

  get port(): number { return this.server?.port ?? 0; }

  /** Leaves: connect to rank 0. Rank 0: wait until all N−1 leaves joined. */
  async connect(root?: { host: string; port: number }): Promise<void> {
    if (this.formed || this.worldSize === 1) { this.formed = true; return; }
    const timeout = this.opts.connectTimeoutMs ?? 30_000;
    if (this.rank === 0) {
      if (this.leaves.size < this.worldSize - 1) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((r) => { this.allJoined = r; }),
          new Promise<void>((_, rej) => { timer = setTimeout(() => rej(new CollectiveError(`star: only ${this.leaves.size} of ${this.worldSize - 1} ranks joined within ${timeout} ms`, undefined, undefined, 0)), timeout); }),
        ]).finally(() => clearTimeout(timer));
      }
    } else {
      if (!root) throw new TypeError('connect(root): rank 0\'s address is required');
      this.rootAddr = `${root.host}:${root.port}`;
      const tls = this.opts.tls;
      const conn = await connect<StarMsg>({
        url: `${tls ? 'wss' : 'ws'}://${root.host}:${root.port}`, secret: this.secret, role: 'peer', name: `star/rank-${this.rank}`,
        messages: [StarChunk, StarAbort], peerLabel: 'star root rank 0', zeroMask: true, maxPayload: this.segmentBytes + 4096,
        retryForMs: timeout, log: this.log,
        ...(tls ? { tls: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}) } } : {}),
      });
      this.root = conn;
      conn.onTraffic(() => this.lastHeard.set(0, performance.now()));
      conn.onFrame((m) => this.onFromRoot(m));
      conn.onClose((info) => { if (!info.byUs) this.fail(0, this.rootAddr, `rank 0 (${this.rootAddr}) ${describeClose(info.code, info.reason)}`); });
      conn.send(StarJoin, { rank: this.rank, worldSize: this.worldSize, segmentBytes: this.segmentBytes });
    }
    this.formed = true;
    this.watchdog = setInterval(() => this.checkLiveness(), Math.max(10, Math.min(500, this.timeoutMs / 4)));
    this.watchdog.unref();
  }

  private onLeaf(conn: Connection<StarMsg>): void {
    let rank = -1;
    conn.onFrame((msg) => {
      if (rank < 0) {
        if (msg.t !== 'star-join') return conn.fail(CloseCode.UNEXPECTED, `expected star-join, got ${msg.t}`);
        if (msg.worldSize !== this.worldSize || msg.segmentBytes !== this.segmentBytes || msg.rank < 1 || msg.rank >= this.worldSize || this.leaves.has(msg.rank)) {
          return conn.fail(CloseCode.CONFLICT, `star-join refused (rank ${msg.rank}, world ${msg.worldSize}, segment ${msg.segmentBytes})`);
        }
        rank = msg.rank;
        this.leaves.set(rank, conn);
        conn.label = `star rank ${rank} (${conn.remote})`;
        this.lastHeard.set(rank, performance.now());
        conn.onTraffic(() => this.lastHeard.set(rank, performance.now()));
        conn.onClose((info) => { if (!info.byUs) this.fail(rank, conn.remote, `rank ${rank} (${conn.remote}) ${describeClose(info.code, info.reason)}`); });
        if (this.leaves.size === this.worldSize - 1) this.allJoined?.();
        return;
      }
      this.onFromLeaf(rank, msg);
    });
  }

  private fail(failedRank: number | undefined, addr: string | undefined, reason: string, origin = this.rank): void {
    if (this.failure || this.closed) return;
    this.failure = new CollectiveError(`star all-reduce failed: ${reason}${origin !== this.rank ? ` [detected by rank ${origin}]` : ''}`, failedRank, addr, origin);
    if (this.rootCall || this.leafCall) this.log(`star rank ${this.rank}: ${this.failure.message}`);
    if (this.watchdog) clearInterval(this.watchdog);
    const abort = { origin, reason: reason.slice(0, 1024), ...(failedRank !== undefined ? { failedRank } : {}), ...(addr ? { failedAddress: addr.slice(0, 300) } : {}) };
    for (const c of [...this.leaves.values(), this.root]) {
      if (c?.isOpen) { c.send(StarAbort, abort); c.close(CloseCode.ABORTED, 'star aborted'); }
    }
    const rc = this.rootCall, lc = this.leafCall;
    this.rootCall = this.leafCall = undefined;
    rc?.reject(this.failure);
    lc?.reject(this.failure);
  }

  private checkLiveness(): void {
    const now = performance.now();
    if (this.rootCall) {
      for (const [r, c] of this.leaves) {
        const waiting = this.rootCall.have.some((n, k) => n < this.worldSize - 1 && !this.rootCall!.parts[k]![r]);
        if (waiting && now - (this.lastHeard.get(r) ?? 0) > this.timeoutMs && now - this.rootCall.t0 > this.timeoutMs) {
          return this.fail(r, c.remote, `no data from rank ${r} (${c.remote}) for ${this.timeoutMs} ms`);
        }
      }
    }
    if (this.leafCall && now - Math.max(this.lastHeard.get(0) ?? 0, this.leafCall.t0) > this.timeoutMs) {
      this.fail(0, this.rootAddr, `no data from rank 0 (${this.rootAddr}) for ${this.timeoutMs} ms`);
    }
  }

  private onFromRoot(msg: Message<StarMsg>): void {
    if (msg.t === 'star-abort') return this.fail(msg.failedRank, msg.failedAddress, msg.reason, msg.origin);
    const call = this.leafCall;
    if (msg.t !== 'star-chunk' || !call || msg.seq !== call.seq || msg.segment >= call.segs || call.got[msg.segment]) {
      return this.fail(0, this.rootAddr, `protocol violation by rank 0: unexpected ${msg.t}`);
    }
    const t0 = performance.now();
    const off = msg.segment * call.segElems;
    const len = Math.min(call.segElems, call.buf.length - off);
    if (msg.data.length !== len) return this.fail(0, this.rootAddr, 'protocol violation by rank 0: wrong segment length');
    call.got[msg.segment] = 1;
    call.buf.set(msg.data, off);
    call.done++;
    const dt = performance.now() - t0;
    call.addMs += dt;
    call.busyMs += dt;
    this.maybeFinishLeaf(call);
  }

  private onFromLeaf(rank: number, msg: Message<StarMsg>): void {
    if (msg.t === 'star-abort') return this.fail(msg.failedRank, msg.failedAddress, msg.reason, msg.origin);
    const call = this.rootCall;
    if (msg.t === 'star-join') return this.fail(rank, undefined, `protocol violation by rank ${rank}: duplicate star-join`);
    if (!call || msg.seq !== call.seq) {
      if (msg.seq === this.seq) { this.early.push({ from: rank, msg }); return; }
      return this.fail(rank, undefined, `protocol violation by rank ${rank}: frame for all-reduce #${msg.seq}`);
    }
    if (msg.t === 'star-start') {
      if (msg.length !== call.buf.length || msg.op !== call.op) return this.fail(rank, undefined, `rank ${rank} has ${msg.length} elements (${msg.op}), rank 0 has ${call.buf.length} (${call.op})`);
      call.started.add(rank);
      return this.maybeFinishRoot(call);
    }
    const t0 = performance.now();
    const k = msg.segment;
    if (!call.started.has(rank) || k >= call.segs || call.parts[k]![rank]) return this.fail(rank, undefined, `protocol violation by rank ${rank}: bad segment ${k}`);
    const off = k * call.segElems;
    const len = Math.min(call.segElems, call.buf.length - off);
    if (msg.data.length !== len) return this.fail(rank, undefined, `protocol violation by rank ${rank}: wrong segment length`);
    call.parts[k]![rank] = msg.data;
    if (++call.have[k]! === this.worldSize - 1) {
      const ta = performance.now();
      for (let r = 1; r < this.worldSize; r++) addInto(call.buf, off, call.parts[k]![r]!); // fixed rank order
      const region = call.buf.subarray(off, off + len);
      if (call.op === 'mean') divideInPlace(region, this.worldSize);
      call.parts[k] = [];
      const tb = performance.now();
      const frame = encodeFrame(StarChunk, { seq: call.seq, segment: k, data: region }, { validate: false, alloc: this.pool.alloc });
      const tc = performance.now();
      let outstanding = this.leaves.size;
      for (const c of this.leaves.values()) {
        call.pendingSends++;
        call.framesSent++;
        call.bytesSent += frame.length;
        c.sendEncoded(frame, (err) => {
          call.pendingSends--;
          if (err) return this.fail(undefined, c.remote, `sending to ${c.label} failed: ${err.message}`);
          if (--outstanding === 0) this.pool.release(frame);
          this.maybeFinishRoot(call);
        });
      }
      call.addMs += tb - ta;
      call.encodeMs += tc - tb;
      call.sendMs += performance.now() - tc;
      call.done++;
    }
    call.busyMs += performance.now() - t0;
  }

  private stats(call: RootCall | LeafCall, decodeMs: number, framesIn: number, bytesIn: number): CollectiveStats {
    const totalMs = performance.now() - call.t0;
    const bytes = call.buf.length * 4;
    const N = this.worldSize;
    const alg = bytes / 1e6 / (totalMs / 1e3);
    const cpu = process.cpuUsage(call.cpu0);
    return {
      kind: 'allReduce', seq: call.seq, op: call.op, worldSize: N, elements: call.buf.length, bytes, totalMs,
      waitMs: Math.max(0, totalMs - call.busyMs - decodeMs), addMs: call.addMs, encodeMs: call.encodeMs, decodeMs, sendMs: call.sendMs,
      cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000,
      framesSent: call.framesSent, bytesSent: call.bytesSent, framesReceived: framesIn, bytesReceived: bytesIn,
      algBandwidthMBps: alg, busBandwidthMBps: (alg * 2 * (N - 1)) / N,
    };
  }

  private decode0 = { ms: 0, frames: 0, bytes: 0 };
  private inCounters(): { ms: number; frames: number; bytes: number } {
    const out = { ms: 0, frames: 0, bytes: 0 };
    for (const c of this.rank === 0 ? this.leaves.values() : [this.root!]) {
      out.ms += c.counters.decodeMs; out.frames += c.counters.framesIn; out.bytes += c.counters.bytesIn;
    }
    return out;
  }

  private maybeFinishRoot(call: RootCall): void {
    if (this.rootCall !== call || call.started.size !== this.worldSize - 1 || call.done !== call.segs || call.pendingSends) return;
    this.rootCall = undefined;
    const c = this.inCounters();
    this.lastStats = this.stats(call, c.ms - this.decode0.ms, c.frames - this.decode0.frames, c.bytes - this.decode0.bytes);
    call.resolve(this.lastStats);
  }

  private maybeFinishLeaf(call: LeafCall): void {
    if (this.leafCall !== call || call.done !== call.segs || call.pendingSends) return;
    this.leafCall = undefined;
    const c = this.inCounters();
    this.lastStats = this.stats(call, c.ms - this.decode0.ms, c.frames - this.decode0.frames, c.bytes - this.decode0.bytes);
    call.resolve(this.lastStats);
  }

  /** Same contract as Ring.allReduce. */
  allReduce(buf: Float32Array, op: ReduceOp = 'sum'): Promise<CollectiveStats> {
    if (!(buf instanceof Float32Array)) return Promise.reject(new TypeError('allReduce: buf must be a Float32Array'));
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed || !this.formed) return Promise.reject(new CollectiveError('star is not connected', undefined, undefined, this.rank));
    if (this.rootCall || this.leafCall) return Promise.reject(new CollectiveError('a call is already in progress', undefined, undefined, this.rank));
    const seq = this.seq++;
    const segElems = this.segmentBytes / 4;
    const segs = Math.ceil(buf.length / segElems);
    const t0 = performance.now();
    this.decode0 = this.worldSize > 1 ? this.inCounters() : { ms: 0, frames: 0, bytes: 0 };
    const base = { seq, buf, op, segs, segElems, pendingSends: 0, t0, cpu0: process.cpuUsage(), busyMs: 0, addMs: 0, encodeMs: 0, sendMs: 0, framesSent: 0, bytesSent: 0, done: 0 };
    if (this.worldSize === 1) {
      return Promise.resolve(this.lastStats = this.stats({ ...base, got: new Uint8Array(0), resolve: () => {}, reject: () => {} }, 0, 0, 0));
    }
    return new Promise<CollectiveStats>((resolve, reject) => {
      if (this.rank === 0) {
        const call: RootCall = { ...base, started: new Set(), parts: Array.from({ length: segs }, () => []), have: new Array<number>(segs).fill(0), resolve, reject };
        this.rootCall = call;
        for (const { from, msg } of this.early.splice(0)) if (this.rootCall === call) this.onFromLeaf(from, msg);
        this.maybeFinishRoot(call);
      } else {
        const call: LeafCall = { ...base, got: new Uint8Array(segs), resolve, reject };
        this.leafCall = call;
        const tb = performance.now();
        this.root!.send(StarStart, { seq, length: buf.length, op }, undefined, { validate: false });
        for (let k = 0; k < segs; k++) {
          const t1 = performance.now();
          const frame = encodeFrame(StarChunk, { seq, segment: k, data: buf.subarray(k * segElems, Math.min(buf.length, (k + 1) * segElems)) }, { validate: false, alloc: this.pool.alloc });
          const t2 = performance.now();
          call.pendingSends++;
          call.framesSent++;
          call.bytesSent += frame.length;
          this.root!.sendEncoded(frame, (err) => {
            call.pendingSends--;
            if (err) return this.fail(0, this.rootAddr, `sending to rank 0 failed: ${err.message}`);
            this.pool.release(frame);
            this.maybeFinishLeaf(call);
          });
          call.encodeMs += t2 - t1;
          call.sendMs += performance.now() - t2;
        }
        call.busyMs += performance.now() - tb;
        this.maybeFinishLeaf(call);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    const err = new CollectiveError('star closed during all-reduce', undefined, undefined, this.rank);
    this.rootCall?.reject(err);
    this.leafCall?.reject(err);
    this.rootCall = this.leafCall = undefined;
    this.root?.close(CloseCode.NORMAL, 'star closed');
    for (const c of this.leaves.values()) c.close(CloseCode.NORMAL, 'star closed');
    await this.server?.close();
  }
}
