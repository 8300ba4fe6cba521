/**
 * An authenticated, validated WebSocket connection (either side). Created by `listen` (server
 * side) or `connect` (client side) once the HMAC handshake has succeeded. Every incoming frame
 * is decoded and validated against the connection's allowed message set; a bad frame closes the
 * connection with a reason code/text and a log line — it never throws into the process.
 *
 * Raw frames (`onRaw`/`sendRaw`): a binary message whose first byte is {@link RAW_FRAME_TAG} (0xc1,
 * a byte MessagePack never uses, so no msgpack frame starts with it) goes undecoded to the raw
 * handler as the message's fragments — the sender writes a small header and a large payload as two
 * WebSocket fragments of one message, neither copied, and the receiver gets them apart (ws's
 * `binaryType = 'fragments'`: no concatenation). The raw handler validates them itself. Without a
 * raw handler such a message is malformed like any other undecodable frame.
 */
import type WebSocket from 'ws';
import * as wsModule from 'ws';
import { FrameMac, splitTag } from './frame-mac.ts';
import {
  CloseCode, decodeFrame, encodeFrame, ErrorMsg, MessageSet, ProtocolError,
  type Fields, type Message, type MessageDef,
} from '../protocol/index.ts';

export type Logger = (line: string) => void;

export const defaultLogger: Logger = (line) => {
  process.stderr.write(`${new Date().toISOString()} [ttc/net] ${line}\n`);
};

/** Close reasons are limited to 123 UTF-8 bytes by RFC 6455; ws throws on longer ones. */
export function closeReason(text: string): string {
  let s = text;
  while (Buffer.byteLength(s, 'utf8') > 123) s = s.slice(0, -1);
  return s;
}

/** Close codes that may be sent in a close frame. */
export function sendableCode(code: number): number {
  return (code >= 3000 && code <= 4999) || [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014].includes(code)
    ? code : CloseCode.INTERNAL;
}

export function describeClose(code: number, reason: string): string {
  const names: Record<number, string> = {
    1000: 'normal', 1001: 'going away', 1005: 'no status', 1006: 'connection lost', 1009: 'message too big',
    1013: 'try again later', 4400: 'malformed frame', 4401: 'authentication failed', 4402: 'integrity check failed', 4403: 'unexpected message',
    4406: 'protocol version mismatch', 4408: 'timeout', 4409: 'conflict', 4410: 'aborted', 4500: 'internal error',
  };
  const name = names[code] ?? 'closed';
  return `${code} ${name}${reason && reason !== name ? `: ${reason}` : ''}`;
}

export function remoteOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined): string {
  const addr = (socket?.remoteAddress ?? '?').replace(/^::ffff:/, '');
  return `${addr.includes(':') ? `[${addr}]` : addr}:${socket?.remotePort ?? '?'}`;
}

// The pre-auth limit (4096 bytes) must apply before ws buffers a frame, so each socket starts with
// that limit as ws's public maxPayload and is raised to the real one after the handshake, through
// the Receiver's `_maxPayload` (ws has no public setter). Checked once at startup: another ws that
// lacks it fails loudly here (a bug to fix, not a user error: no code).
const WsReceiver = (wsModule as unknown as { Receiver?: new (o: { maxPayload: number }) => { _maxPayload?: unknown } }).Receiver;
if (!WsReceiver || new WsReceiver({ maxPayload: 7 })._maxPayload !== 7) {
  throw new Error('ws internals: Receiver lacks _maxPayload (ws 8.x expected), so the frame limit cannot be raised after authentication');
}

/** Raise (or lower) the largest frame `ws` accepts from now on (its Receiver's maxPayload). */
export function setReceiveLimit(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') throw new Error('ws internals: the socket has no Receiver with _maxPayload (ws 8.x expected)');
  receiver._maxPayload = bytes;
}

export interface PeerIdentity {
  role: string;
  name: string;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** true when this side initiated the close (fail/close called here) */
  byUs: boolean;
}

export interface ConnectionOptions<In extends MessageDef> {
  ws: WebSocket;
  allowed: readonly In[];
  peer: PeerIdentity;
  remote: string;
  side: 'server' | 'client';
  maxPayload: number;
  log: Logger;
  /** how to call the other side in log lines, e.g. "coordinator" or "ring peer rank 3" */
  label?: string;
  /** per-frame MAC keys (links without TLS): tag every message sent, check every one received */
  mac?: { send: Buffer; receive: Buffer };
}

const MAX_QUEUED_FRAMES = 4096;

/** First byte of a raw frame (0xc1 is never used by MessagePack). */
export const RAW_FRAME_TAG = 0xc1;

export class Connection<In extends MessageDef = MessageDef> {
  readonly peer: PeerIdentity;
  /** "address:port" of the other side */
  readonly remote: string;
  readonly side: 'server' | 'client';
  label: string;
  /** cumulative counters (read by collectives for their timing breakdown) */
  readonly counters = { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0, decodeMs: 0 };

  private readonly ws: WebSocket;
  private readonly allowed: MessageSet<In | typeof ErrorMsg>;
  private readonly maxPayload: number;
  private readonly log: Logger;
  private frameHandler: ((msg: Message<In>) => void) | undefined;
  private rawHandler: ((parts: Buffer[]) => void) | undefined;
  private readonly queued: Message<In>[] = [];
  private readonly closeHandlers: ((info: CloseInfo) => void)[] = [];
  private readonly messageHandlers: (() => void)[] = [];
  private closing: { code: number; reason: string } | undefined;
  private remoteError: { code: number; reason: string } | undefined;
  private closedInfo: CloseInfo | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly sendMac: FrameMac | undefined;
  private readonly receiveMac: FrameMac | undefined;

  constructor(opts: ConnectionOptions<In>) {
    this.ws = opts.ws;
    this.peer = opts.peer;
    this.remote = opts.remote;
    this.side = opts.side;
    this.maxPayload = opts.maxPayload;
    this.log = opts.log;
    this.label = opts.label ?? `${opts.peer.role} "${opts.peer.name}" (${opts.remote})`;
    this.allowed = new MessageSet<In | typeof ErrorMsg>([...opts.allowed, ErrorMsg]);
    if (opts.mac) {
      this.sendMac = new FrameMac(opts.mac.send);
      this.receiveMac = new FrameMac(opts.mac.receive);
      this.ws.binaryType = 'fragments'; // the tag is the last fragment: taking it off copies nothing
    }
    // handshake listeners stay attached but ignore everything once the handshake is done
    this.ws.on('message', (data, isBinary) => this.onMessage(data as Buffer | Buffer[], isBinary));
    this.ws.on('ping', () => this.onAnyTraffic());
    this.ws.on('pong', () => this.onAnyTraffic());
    this.ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.log(`closing connection with ${this.label}: frame exceeds maxPayload (${this.maxPayload} bytes)`);
        this.closing ??= { code: CloseCode.TOO_BIG, reason: 'message too big' };
      } else {
        this.log(`connection with ${this.label}: ${err.message}`);
      }
    });
    this.ws.on('close', (code: number, reason: Buffer) => {
      if (this.killTimer) clearTimeout(this.killTimer);
      const byUs = this.closing !== undefined && this.remoteError === undefined;
      const info: CloseInfo = this.remoteError
        ? { code: this.remoteError.code, reason: this.remoteError.reason, byUs: false }
        : byUs
          ? { code: this.closing!.code, reason: this.closing!.reason, byUs }
          : { code, reason: reason.toString('utf8'), byUs };
      this.closedInfo = info;
      for (const h of this.closeHandlers.splice(0)) {
        try { h(info); } catch (err) { this.log(`close handler failed: ${(err as Error).stack ?? err}`); }
      }
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === 1 && this.closing === undefined;
  }
  get closeInfo(): CloseInfo | undefined {
    return this.closedInfo;
  }
  /** bytes queued in user space, not yet handed to the kernel */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Set the handler for incoming frames; frames that arrived earlier are delivered now. */
  onFrame(handler: (msg: Message<In>) => void): void {
    this.frameHandler = handler;
    while (this.queued.length && this.frameHandler === handler && !this.closing) this.dispatch(this.queued.shift()!);
  }

  /**
   * Take raw frames (first byte {@link RAW_FRAME_TAG}) from now on: `handler` gets each such message
   * as its fragments (at least one, the first starting with the tag), undecoded and unvalidated.
   * A throw from the handler closes the connection like a failing frame handler.
   */
  onRaw(handler: (parts: Buffer[]) => void): void {
    this.rawHandler = handler;
    this.ws.binaryType = 'fragments';
  }

  /** Called once when the connection is closed (by either side, for any reason). */
  onClose(handler: (info: CloseInfo) => void): void {
    if (this.closedInfo) queueMicrotask(() => handler(this.closedInfo!));
    else this.closeHandlers.push(handler);
  }

  /** Called on every frame, ping or pong received (liveness tracking). */
  onTraffic(handler: () => void): void {
    this.messageHandlers.push(handler);
  }

  send<D extends MessageDef>(def: D, fields: Fields<D>, cb?: (err?: Error) => void, opts: { validate?: boolean } = {}): void {
    this.sendEncoded(encodeFrame(def, fields, opts), cb);
  }

  /** send(), resolved once the frame was handed to the kernel (rejected when the connection is closed): streaming with bounded memory. */
  sendAsync<D extends MessageDef>(def: D, fields: Fields<D>): Promise<void> {
    return new Promise((resolve, reject) => this.send(def, fields, (err) => (err ? reject(err) : resolve())));
  }

  /** Send an already-encoded frame; `cb` runs once it was handed to the kernel (or failed). */
  sendEncoded(frame: Uint8Array, cb?: (err?: Error) => void): void {
    if (this.ws.readyState !== 1) {
      const err = new Error(`connection with ${this.label} is closed`);
      if (cb) queueMicrotask(() => cb(err));
      return;
    }
    this.counters.framesOut++;
    this.counters.bytesOut += frame.length;
    if (!this.sendMac) {
      this.ws.send(frame, { binary: true }, cb);
      return;
    }
    const tag = this.sendMac.next([frame]);
    this.ws.send(frame, { binary: true, fin: false });
    this.ws.send(tag, { binary: true, fin: true }, cb);
  }

  /**
   * Send one message made of `head` (starting with RAW_FRAME_TAG) and `payload` as two WebSocket
   * fragments, neither copied (on a zero-mask or unmasked link): both must stay unchanged until
   * `cb` runs (handed to the kernel, or failed).
   */
  sendRaw(head: Uint8Array, payload: Uint8Array, cb?: (err?: Error) => void): void {
    if (this.ws.readyState !== 1) {
      const err = new Error(`connection with ${this.label} is closed`);
      if (cb) queueMicrotask(() => cb(err));
      return;
    }
    this.counters.framesOut++;
    this.counters.bytesOut += head.length + payload.length;
    this.ws.send(head, { binary: true, fin: false });
    if (!this.sendMac) {
      this.ws.send(payload, { binary: true, fin: true }, cb);
      return;
    }
    const tag = this.sendMac.next([head, payload]);
    this.ws.send(payload, { binary: true, fin: false });
    this.ws.send(tag, { binary: true, fin: true }, cb);
  }

  ping(): void {
    if (this.ws.readyState === 1) this.ws.ping();
  }

  /**
   * Close because of a problem: logs `reason`, sends an `error` frame (best effort) and closes
   * with `code`. Idempotent.
   */
  fail(code: number, reason: string, opts: { log?: boolean } = {}): void {
    if (this.closing || this.ws.readyState >= 2) return;
    if (opts.log !== false) this.log(`closing connection with ${this.label}: ${reason}`);
    this.closing = { code, reason };
    try {
      this.sendEncoded(encodeFrame(ErrorMsg, { code, reason: reason.slice(0, 1024) }, { validate: false }));
    } catch { /* best effort */ }
    this.shutdown(code, reason);
  }

  /** Normal close. */
  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.closing || this.ws.readyState >= 2) return;
    this.closing = { code, reason };
    this.shutdown(code, reason);
  }

  /** Drop the TCP connection at once. */
  terminate(): void {
    this.closing ??= { code: 1006, reason: 'terminated' };
    this.ws.terminate();
  }

  private shutdown(code: number, reason: string): void {
    this.closing ??= { code, reason };
    try {
      this.ws.close(sendableCode(code), closeReason(reason));
    } catch {
      this.ws.terminate();
    }
    // do not wait 30 s (ws's default) for a peer that does not answer the close frame
    this.killTimer = setTimeout(() => this.ws.terminate(), 2000);
    this.killTimer.unref();
  }

  private onAnyTraffic(): void {
    for (const h of this.messageHandlers) h();
  }

  private onMessage(raw: Buffer | Buffer[], isBinary: boolean): void {
    if (this.closing) return;
    this.onAnyTraffic();
    if (!isBinary) {
      this.fail(CloseCode.MALFORMED, 'text frames are not accepted');
      return;
    }
    this.counters.framesIn++;
    if (this.receiveMac) {
      const parts = Array.isArray(raw) ? raw : [raw];
      const split = splitTag(parts);
      const n = this.receiveMac.count;
      if (!split || !this.receiveMac.check(split.body, split.tag)) {
        let bytes = 0;
        for (const b of parts) bytes += b.length;
        this.counters.bytesIn += bytes;
        this.fail(CloseCode.INTEGRITY, `frame integrity check failed on message #${n} (${bytes} bytes): altered, injected, replayed or dropped in transit`);
        return;
      }
      raw = Array.isArray(raw) ? split.body : split.body[0]!;
    }
    if (Array.isArray(raw)) {
      let n = 0;
      for (const b of raw) n += b.length;
      this.counters.bytesIn += n;
      if (this.rawHandler && raw[0] && raw[0].length > 0 && raw[0][0] === RAW_FRAME_TAG) {
        const handler = this.rawHandler;
        try {
          handler(raw);
        } catch (err) {
          this.log(`raw frame handler from ${this.label} failed: ${(err as Error).stack ?? err}`);
          this.fail(CloseCode.INTERNAL, 'internal error handling a raw frame', { log: false });
        }
        return;
      }
      raw = raw.length === 1 ? raw[0]! : Buffer.concat(raw, n);
    } else {
      this.counters.bytesIn += raw.length;
    }
    const data = raw;
    const t0 = performance.now();
    let msg: Message<In | typeof ErrorMsg>;
    try {
      msg = decodeFrame(data, this.allowed, { maxBytes: this.maxPayload });
    } catch (err) {
      const e = err instanceof ProtocolError ? err : new ProtocolError('malformed', String(err));
      this.fail(e.closeCode, e.message);
      return;
    } finally {
      this.counters.decodeMs += performance.now() - t0;
    }
    if (msg.t === 'error') {
      // the peer is closing because of `reason`: close our side too (it may never send the close frame)
      const m = msg as Message<typeof ErrorMsg>;
      this.remoteError = { code: m.code, reason: m.reason };
      this.log(`${this.label} reports an error and closes: ${m.reason} (${m.code})`);
      this.shutdown(CloseCode.NORMAL, '');
      return;
    }
    if (!this.frameHandler) {
      if (this.queued.length >= MAX_QUEUED_FRAMES) {
        this.fail(CloseCode.INTERNAL, `more than ${MAX_QUEUED_FRAMES} frames queued before a handler was set`);
        return;
      }
      this.queued.push(msg as Message<In>);
      return;
    }
    this.dispatch(msg as Message<In>);
  }

  private dispatch(msg: Message<In>): void {
    try {
      this.frameHandler!(msg);
    } catch (err) {
      this.log(`handler for "${String((msg as { t: string }).t)}" from ${this.label} failed: ${(err as Error).stack ?? err}`);
      this.fail(CloseCode.INTERNAL, `internal error handling "${String((msg as { t: string }).t)}"`, { log: false });
    }
  }
}
