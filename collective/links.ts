/**
 * The ring's two peer links and how they come up: listening for the predecessor (rank−1 mod N),
 * dialing the successor (rank+1 mod N), both over wire/net's HMAC-authenticated WebSockets
 * (optionally TLS, zero-mask frames on the dialed link), and the `ring-join` exchange that opens
 * every link — ring id, world size, rank and segment size must agree, a second predecessor is
 * refused, a predecessor that joins and drops again while the ring forms may come back. Once a
 * link is up its frames (msgpack, and the raw segment frames once the predecessor has joined),
 * traffic and close are handed to the owner (`LinkEvents`); what they mean is decided in
 * liveness.ts and ring.ts.
 */
import {
  connect, describeClose, listen, type Connection, type Logger, type PeerServer,
} from '../wire/net/index.ts';
import { CloseCode, type Message } from '../wire/protocol/index.ts';
import { CollectiveError } from './errors.ts';
import { mod } from './layout.ts';
import { FROM_NEXT, FROM_PREV, RingJoin, type FromNext, type FromPrev } from './messages.ts';

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

export interface LinkParams {
  rank: number;
  worldSize: number;
  ringId: string;
  segmentBytes: number;
  secret: Buffer;
  tls: RingTls | undefined;
  listen: { host?: string; port?: number } | undefined;
  handshakeTimeoutMs: number | undefined;
  connectTimeoutMs: number;
  frameMac: boolean;
  log: Logger;
}

export interface LinkEvents {
  /** a validated frame from the joined predecessor */
  fromPrev(conn: Connection<FromPrev>, msg: Message<FromPrev>): void;
  /** a raw frame (a segment, not yet parsed) from the joined predecessor */
  segmentFromPrev(conn: Connection<FromPrev>, parts: Buffer[]): void;
  /** a validated frame from the joined successor */
  fromNext(msg: Message<FromNext>): void;
  /** any frame, ping or pong from the joined predecessor (liveness) */
  prevTraffic(): void;
  /** a joined link closed (the predecessor's only once the ring has formed) */
  closed(which: 'prev' | 'next', code: number, reason: string, byUs: boolean): void;
  /** why a predecessor must be refused now (the ring is closed or failed), or undefined */
  refusal(): string | undefined;
}

/** A listen address "0.0.0.0:7000" advertised by a peer that listens on all interfaces → "<its IP>:7000". */
function concreteAddress(listenAddr: string, remote: string): string {
  const m = /^(.*):(\d+)$/.exec(listenAddr);
  if (!m) return listenAddr;
  const host = m[1]!.replace(/^\[|\]$/g, '');
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return listenAddr;
  const ip = /^(.*):\d+$/.exec(remote)?.[1] ?? host;
  return `${ip}:${m[2]}`;
}

export class RingLinks {
  server: PeerServer<FromPrev> | undefined;
  /** the joined predecessor's link (we accepted it) */
  prev: Connection<FromPrev> | undefined;
  /** the predecessor's listening address, for messages */
  prevListen = '?';
  /** the joined successor's link (we dialed it) */
  next: Connection<FromNext> | undefined;
  /** the successor's address as dialed */
  nextListen = '?';
  /** both links are up (connect() finished); until then a predecessor may drop and rejoin */
  formed = false;
  private closed = false;
  private readonly prevWaiters: (() => void)[] = [];

  constructor(private readonly p: LinkParams, private readonly ev: LinkEvents) {}

  get prevRank(): number { return mod(this.p.rank - 1, this.p.worldSize); }
  get nextRank(): number { return mod(this.p.rank + 1, this.p.worldSize); }
  get port(): number { return this.server?.port ?? 0; }
  get host(): string { return this.server?.host ?? this.p.listen?.host ?? '127.0.0.1'; }
  get url(): string { return this.server?.url ?? ''; }
  get listenAddr(): string { return `${this.host}:${this.port}`; }

  /** "rank 3 (10.0.0.4:7000)" when the rank is a neighbour whose address we know, else "rank 3". */
  who(rank: number): string {
    const addr = rank === this.prevRank ? this.prevListen : rank === this.nextRank ? this.nextListen : undefined;
    return `rank ${rank}${addr && addr !== '?' ? ` (${addr})` : ''}`;
  }

  private err(message: string, failedRank?: number, failedAddress?: string): CollectiveError {
    return new CollectiveError(message, failedRank, failedAddress, this.p.rank);
  }

  /** Start listening for the predecessor. */
  async listen(): Promise<void> {
    const p = this.p;
    this.server = await listen<FromPrev>({
      host: p.listen?.host ?? '127.0.0.1',
      port: p.listen?.port ?? 0,
      secret: p.secret,
      role: 'peer',
      name: `${p.ringId}/rank-${p.rank}`,
      messages: FROM_PREV,
      maxPayload: p.segmentBytes + 4096,
      frameMac: p.frameMac,
      log: p.log,
      ...(p.handshakeTimeoutMs ? { handshakeTimeoutMs: p.handshakeTimeoutMs } : {}),
      ...(p.tls ? { tls: { cert: p.tls.cert, key: p.tls.key } } : {}),
      onConnection: (conn) => this.onInbound(conn),
    });
  }

  private joinFields() {
    const p = this.p;
    return { rank: p.rank, worldSize: p.worldSize, ringId: p.ringId, segmentBytes: p.segmentBytes, listen: this.listenAddr };
  }

  private checkJoin(msg: Message<typeof RingJoin>, expectRank: number): string | undefined {
    const p = this.p;
    if (msg.ringId !== p.ringId) return `ring id mismatch: "${msg.ringId}" vs ours "${p.ringId}"`;
    if (msg.worldSize !== p.worldSize) return `world size mismatch: ${msg.worldSize} vs ours ${p.worldSize}`;
    if (msg.rank !== expectRank) return `expected rank ${expectRank}, got rank ${msg.rank}`;
    if (msg.segmentBytes !== p.segmentBytes) return `segment size mismatch: ${msg.segmentBytes} vs ours ${p.segmentBytes}`;
    return undefined;
  }

  /**
   * Dial the successor (retrying until `deadline`) and exchange `ring-join` on that link.
   * Rejects with a CollectiveError naming the successor.
   */
  async connectNext(next: { host: string; port: number }, deadline: number): Promise<void> {
    const p = this.p;
    const host = next.host.includes(':') ? `[${next.host}]` : next.host;
    this.nextListen = `${next.host}:${next.port}`;
    const tls = p.tls;
    const conn = await connect<FromNext>({
      url: `${tls ? 'wss' : 'ws'}://${host}:${next.port}`,
      secret: p.secret,
      role: 'peer',
      name: `${p.ringId}/rank-${p.rank}`,
      messages: FROM_NEXT,
      peerLabel: `ring peer rank ${this.nextRank}`,
      zeroMask: true,
      frameMac: p.frameMac,
      maxPayload: 64 * 1024,
      retryForMs: Math.max(1, deadline - Date.now()),
      log: p.log,
      ...(tls ? { tls: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}), ...(tls.servername ? { servername: tls.servername } : {}) } } : {}),
    });
    if (this.closed) {
      conn.close(CloseCode.NORMAL, 'ring closed');
      throw this.err('ring closed while forming');
    }
    const remaining = () => Math.max(1, deadline - Date.now());
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.fail(CloseCode.TIMEOUT, 'no ring-join reply');
        reject(this.err(`${this.who(this.nextRank)} did not answer ring-join within ${p.connectTimeoutMs} ms`, this.nextRank, this.nextListen));
      }, remaining());
      conn.onClose((info) => {
        clearTimeout(timer);
        reject(this.err(`link to ${this.who(this.nextRank)} closed while forming the ring: ${describeClose(info.code, info.reason)}`, this.nextRank, this.nextListen));
      });
      conn.onFrame((msg) => {
        clearTimeout(timer);
        if (msg.t !== 'ring-join') {
          conn.fail(CloseCode.UNEXPECTED, `expected ring-join, got ${msg.t}`);
          reject(this.err(`${this.who(this.nextRank)} sent ${msg.t} instead of ring-join`, this.nextRank, this.nextListen));
          return;
        }
        const problem = this.checkJoin(msg, this.nextRank);
        if (problem) {
          conn.fail(CloseCode.CONFLICT, problem);
          reject(this.err(`${this.who(this.nextRank)}: ${problem}`, this.nextRank, this.nextListen));
          return;
        }
        this.next = conn; // keep the address we dialed in nextListen: it is the one that works
        conn.label = `ring successor rank ${this.nextRank} (${this.nextListen})`;
        conn.onFrame((m) => this.ev.fromNext(m));
        conn.onClose((info) => this.ev.closed('next', info.code, info.reason, info.byUs));
        resolve();
      });
      conn.send(RingJoin, this.joinFields());
    });
  }

  /**
   * Wait until the predecessor has joined (a link that joins and drops again while forming does
   * not count). `broken()` is checked on every wake-up: a failure of the ring ends the wait.
   */
  async waitForPrev(deadline: number, broken: () => CollectiveError | undefined): Promise<void> {
    while (!this.prev?.isOpen) {
      const failure = broken();
      if (failure) throw failure;
      if (this.closed) throw this.err('ring closed while forming');
      if (Date.now() >= deadline) throw this.err(`rank ${this.prevRank} (predecessor) did not join within ${this.p.connectTimeoutMs} ms`, this.prevRank);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.prevWaiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  private onInbound(conn: Connection<FromPrev>): void {
    let joined = false;
    const timer = setTimeout(() => { if (!joined) conn.fail(CloseCode.TIMEOUT, 'no ring-join within 5000 ms'); }, 5000);
    timer.unref();
    conn.onClose(() => clearTimeout(timer));
    conn.onFrame((msg) => {
      if (joined) return this.ev.fromPrev(conn, msg);
      clearTimeout(timer);
      if (msg.t !== 'ring-join') { conn.fail(CloseCode.UNEXPECTED, `expected ring-join, got ${msg.t}`); return; }
      const refusal = this.closed ? 'ring is closed' : this.ev.refusal();
      if (refusal) { conn.fail(CloseCode.CONFLICT, refusal); return; }
      const problem = this.checkJoin(msg, this.prevRank);
      if (problem) { conn.fail(CloseCode.CONFLICT, `ring-join refused: ${problem}`); return; }
      if (this.prev && this.prev.isOpen) { conn.fail(CloseCode.CONFLICT, `ring-join refused: rank ${this.prevRank} is already connected`); return; }
      joined = true;
      this.prev = conn;
      this.prevListen = concreteAddress(msg.listen, conn.remote);
      conn.label = `ring predecessor rank ${this.prevRank} (${this.prevListen})`;
      conn.onTraffic(() => this.ev.prevTraffic());
      conn.onRaw((parts) => this.ev.segmentFromPrev(conn, parts));
      conn.onClose((info) => {
        if (this.prev === conn && !this.formed) { this.prev = undefined; return; } // may reconnect while forming
        if (this.prev === conn) this.ev.closed('prev', info.code, info.reason, info.byUs);
      });
      conn.send(RingJoin, this.joinFields());
      for (const w of this.prevWaiters.splice(0)) w();
    });
  }

  /** Close both links (normal close) and the listening socket; wakes a pending waitForPrev. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.prevWaiters.splice(0)) w();
    this.next?.close(CloseCode.NORMAL, 'ring closed');
    this.prev?.close(CloseCode.NORMAL, 'ring closed');
    await this.server?.close();
  }
}
