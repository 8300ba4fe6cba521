/**
 * Loopback tools for protocol tests: a deterministic generator of bad frames, a raw WebSocket
 * session that sends them (with or without authenticating first) and reports how the endpoint
 * closed, and a throw-away self-signed certificate for wss:// tests.
 */
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { clientProof, frameKeys, newNonce, normalizeSecret } from '../../wire/auth.ts';
import { FrameMac } from '../../wire/net/frame-mac.ts';
import { encodeMsgpack, PROTOCOL_VERSION } from '../../wire/protocol/index.ts';
import { scaled } from './time-scale.mjs';

export class Rng {
  private x: number;
  constructor(seed: number) { this.x = (seed * 2654435761) >>> 0 || 1; }
  u32(): number { let x = this.x; x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; this.x = x; return x; }
  int(n: number): number { return this.u32() % n; }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  bytes(n: number): Buffer { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff; return b; }
}

export interface BadFrame {
  kind: string;
  /** binary payload; `text` frames are sent as a text message instead */
  bytes?: Buffer;
  text?: string;
}

const msgpackr = new Packr({ moreTypes: true, useRecords: false });
const msgpackrRecords = new Packr({ useRecords: true });

/** Frames that look like ours, for mutation. */
function sampleFrames(rng: Rng): Record<string, unknown>[] {
  const f32 = new Float32Array(1 + rng.int(64)).map(() => rng.u32() / 1e6);
  return [
    { v: PROTOCOL_VERSION, t: 'hello', role: 'peer', name: 'fuzz', nonce: rng.bytes(32) },
    { v: PROTOCOL_VERSION, t: 'auth', proof: rng.bytes(32) },
    { v: PROTOCOL_VERSION, t: 'chunk', seq: 0, step: 0, phase: 'rs', index: 0, segment: 0, data: f32 },
    { v: PROTOCOL_VERSION, t: 'ring-join', rank: rng.int(8), worldSize: 1 + rng.int(8), ringId: 'ring', segmentBytes: 1 << 20, listen: '127.0.0.1:1' },
    { v: PROTOCOL_VERSION, t: 'ring-alive', seq: 0, active: false },
    { v: PROTOCOL_VERSION, t: 'error', code: 4400, reason: 'fuzz' },
  ];
}

/**
 * `count` bad frames (deterministic for a seed): random bytes, truncations and bit flips of real
 * frames, wrong versions, unknown and out-of-state types, schema violations, msgpackr-only
 * extensions (Error, RegExp, Set, Map, Date, records), nesting and length bombs, text frames and
 * oversized frames (`oversize` bytes).
 */
export function badFrames(count: number, seed: number, oversize: number): BadFrame[] {
  const rng = new Rng(seed);
  const out: BadFrame[] = [];
  const kinds = [
    'random', 'truncated', 'bitflip', 'version', 'unknown-type', 'wrong-state', 'schema', 'exotic',
    'records', 'not-a-map', 'nesting-bomb', 'length-bomb', 'proto-key', 'duplicate-key', 'text', 'oversize', 'empty',
  ] as const;
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length]!;
    const base = rng.pick(sampleFrames(rng));
    const enc = encodeMsgpack(base);
    switch (kind) {
      case 'random': out.push({ kind, bytes: rng.bytes(1 + rng.int(300)) }); break;
      case 'truncated': out.push({ kind, bytes: enc.subarray(0, rng.int(enc.length)) }); break;
      case 'bitflip': {
        const b = Buffer.from(enc);
        for (let k = 0, n = 1 + rng.int(4); k < n; k++) b[rng.int(b.length)] ^= 1 << rng.int(8);
        out.push({ kind, bytes: b });
        break;
      }
      case 'version': out.push({ kind, bytes: encodeMsgpack({ ...base, v: rng.pick([0, 2, 99, -1, 'x', 1.5, null]) }) }); break;
      case 'unknown-type': out.push({ kind, bytes: encodeMsgpack({ ...base, t: rng.pick(['', 'x', 'HELLO', 'eval', '__proto__', 'constructor', 'a'.repeat(300)]) }) }); break;
      case 'wrong-state': out.push({ kind, bytes: encodeMsgpack(rng.pick(sampleFrames(rng).slice(2))) }); break;
      case 'schema': {
        const bad = { ...base } as Record<string, unknown>;
        const key = rng.pick(Object.keys(bad).filter((k) => k !== 'v' && k !== 't'));
        bad[key] = rng.pick<unknown>([null, -1, 2 ** 40, 'str', [1, 2, 3], { a: 1 }, true, new Uint8Array(3), 1.5]);
        if (rng.int(3) === 0) bad.extra = 1;
        out.push({ kind, bytes: encodeMsgpack(bad) });
        break;
      }
      case 'exotic': {
        const val = rng.pick<unknown>([new Error('boom'), /a+$/, new Set([1]), new Map([[1, 2]]), new Date(0), 10n ** 30n, new Float64Array(2)]);
        out.push({ kind, bytes: msgpackr.pack({ ...base, name: val, data: val }) });
        break;
      }
      case 'records': out.push({ kind, bytes: msgpackrRecords.pack([base, base]) }); break;
      case 'not-a-map': out.push({ kind, bytes: encodeMsgpack(rng.pick<unknown>([[1, 2], 5, 'hello', null, new Float32Array(4)])) }); break;
      case 'nesting-bomb': {
        const depth = 20 + rng.int(5000);
        out.push({ kind, bytes: Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]) });
        break;
      }
      case 'length-bomb': out.push({ kind, bytes: Buffer.from(rng.pick([[0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0x7f, 0xff, 0xff, 0xff], [0xdb, 0xff, 0xff, 0xff, 0xf0, 0x41], [0xc6, 0xff, 0xff, 0xff, 0xff], [0xc9, 0xff, 0xff, 0xff, 0xff, 0x74, 0x07]])) }); break;
      case 'proto-key': // { v: 1, t: 'hello', __proto__: { x: 1 } }
        out.push({ kind, bytes: Buffer.concat([Buffer.from([0x83, 0xa1, 0x76, 0x01, 0xa1, 0x74, 0xa5]), Buffer.from('hello'), Buffer.from([0xa9]), Buffer.from('__proto__'), Buffer.from([0x81, 0xa1, 0x78, 0x01])]) });
        break;
      case 'duplicate-key': out.push({ kind, bytes: Buffer.concat([Buffer.from([0x83, 0xa1, 0x76, 0x01, 0xa1, 0x74]), Buffer.from([0xa5]), Buffer.from('hello'), Buffer.from([0xa1, 0x76, 0x01])]) }); break;
      case 'text': out.push({ kind, text: JSON.stringify({ v: 1, t: 'hello', role: 'peer', name: 'x' }) }); break;
      case 'oversize': out.push({ kind, bytes: Buffer.alloc(oversize, 0x90) }); break;
      case 'empty': out.push({ kind, bytes: Buffer.alloc(0) }); break;
    }
  }
  return out;
}

export interface SessionResult {
  kind: string;
  /** close code seen by the client (1006 = dropped without a close frame) */
  code: number;
  reason: string;
  /** the client never got a close within the timeout */
  hung: boolean;
}

/**
 * Open a raw WebSocket to `url`; if `secret` is given, authenticate first (hello/challenge/auth,
 * without checking the server's proof) and tag the frame with the per-frame MAC like a real peer
 * (so its content is what gets checked); then send `frame` and wait (≤ timeoutMs × the load scale) for the close.
 */
export function rawSession(url: string, frame: BadFrame, opts: { secret?: string; timeoutMs?: number; role?: string; name?: string; ca?: Buffer } = {}): Promise<SessionResult> {
  const timeoutMs = scaled(opts.timeoutMs ?? 3000);
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 20, ...(opts.ca ? { ca: opts.ca } : {}) });
    let done = false;
    const finish = (r: Omit<SessionResult, 'kind'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.terminate();
      resolve({ kind: frame.kind, ...r });
    };
    const timer = setTimeout(() => finish({ code: 0, reason: 'timeout', hung: true }), timeoutMs);
    const nonce = newNonce();
    let mac: FrameMac | undefined;
    const sendBad = () => {
      if (frame.text !== undefined) ws.send(frame.text);
      else ws.send(mac ? Buffer.concat([frame.bytes!, mac.next([frame.bytes!])]) : frame.bytes!, { binary: true });
    };
    ws.on('error', () => { /* the close event follows */ });
    ws.on('close', (code, reason) => finish({ code, reason: reason.toString(), hung: false }));
    ws.on('open', () => {
      if (!opts.secret) { sendBad(); return; }
      ws.send(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'hello', role: opts.role ?? 'peer', name: opts.name ?? 'fuzzer', nonce }));
    });
    let step = 0;
    ws.on('message', (data: Buffer) => {
      if (!opts.secret) return;
      if (step === 0) {
        // challenge: { v, t, nonce } — read the nonce without our decoder's help (the last 32 bytes)
        const serverNonce = data.subarray(data.length - 32);
        const secret = normalizeSecret(opts.secret);
        const transcript = { clientNonce: nonce, serverNonce: Buffer.from(serverNonce), clientRole: opts.role ?? 'peer', clientName: opts.name ?? 'fuzzer' };
        ws.send(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'auth', proof: clientProof(secret, transcript) }));
        if (!url.startsWith('wss:')) mac = new FrameMac(frameKeys(secret, transcript).clientToServer);
        step = 1;
      } else if (step === 1) {
        step = 2; // welcome
        sendBad();
      }
    });
  });
}

/** Run `tasks` with at most `lanes` at once. */
export async function inLanes<T>(tasks: (() => Promise<T>)[], lanes: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(lanes, tasks.length) }, async () => {
    while (next < tasks.length) { const i = next++; out[i] = await tasks[i]!(); }
  }));
  return out;
}

/** A self-signed certificate for 127.0.0.1/localhost via the openssl CLI; undefined if unavailable. */
export function selfSignedCert(): { cert: string; key: string; dir: string } | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'ttc-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: 'ignore', timeout: 20_000 });
    return { cert, key, dir };
  } catch {
    writeFileSync(join(dir, 'unavailable'), '');
    return undefined;
  }
}

/**
 * Raw TCP garbage (not even HTTP) at `port`: random bytes, an upgrade request without a key, an
 * upgrade that never sends a frame, a plain POST. Resolves with whether the server closed the
 * socket within `timeoutMs` × the load scale.
 */
export function rawTcpGarbage(port: number, rng: Rng, timeoutMs = 3000): Promise<{ kind: string; closed: boolean }> {
  const variants: [string, () => Buffer][] = [
    ['random', () => rng.bytes(1 + rng.int(2000))],
    ['upgrade-no-key', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n')],
    ['upgrade-then-silence', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')],
    ['post', () => Buffer.concat([Buffer.from('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n'), rng.bytes(5)])],
    ['partial', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n')],
  ];
  const [kind, make] = rng.pick(variants);
  const data = make();
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => { sock.destroy(); resolve({ kind, closed: false }); }, scaled(timeoutMs));
    sock.on('error', () => {});
    sock.on('close', () => { clearTimeout(timer); resolve({ kind, closed: true }); });
    sock.resume(); // read (and drop) the answer, so the server's FIN is seen
    sock.on('connect', () => sock.write(data));
  });
}

/**
 * A handshake flood: `count` bare WebSocket upgrades to `url` from `localAddress` (any 127.x.y.z
 * on Linux loopback) that never send a frame, each reopened `reopenMs` after it closes, until
 * stop(). `codes` counts the close codes the server gave them.
 */
export function holdUpgrades(url: string, count: number, localAddress: string, reopenMs = 20): { codes: Map<number, number>; opened: () => number; stop: () => void } {
  const codes = new Map<number, number>();
  const live = new Set<WebSocket>();
  let opened = 0;
  let stopped = false;
  const open = () => {
    if (stopped) return;
    const ws = new WebSocket(url, { localAddress, perMessageDeflate: false, handshakeTimeout: 5000 });
    opened++;
    live.add(ws);
    ws.on('error', () => { /* the close event follows */ });
    ws.on('close', (code) => {
      live.delete(ws);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (!stopped) setTimeout(open, reopenMs);
    });
  };
  for (let i = 0; i < count; i++) open();
  return { codes, opened: () => opened, stop: () => { stopped = true; for (const ws of live) ws.terminate(); } };
}

/**
 * A TCP proxy to 127.0.0.1:`target` that meddles with the server → client stream once armed:
 * `flip` inverts one byte of the first chunk holding `marker`, `inject` writes `frame` (raw bytes)
 * into the stream, `replay` sends the next chunk twice. Each act happens once per arming.
 */
export async function tamperProxy(target: number): Promise<{ port: number; arm: (act: { flip: Buffer } | { inject: Buffer } | { replay: true }) => void; close: () => void }> {
  let act: { flip: Buffer } | { inject: Buffer } | { replay: true } | undefined;
  const sockets = new Set<net.Socket>();
  let toClient: net.Socket | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => { client.destroy(); upstream.destroy(); }); }
    toClient = client;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (act && 'flip' in act) {
        const at = chunk.indexOf(act.flip);
        if (at >= 0) { chunk = Buffer.from(chunk); chunk[at + 1] ^= 0xff; act = undefined; }
      } else if (act && 'replay' in act) {
        client.write(chunk);
        act = undefined;
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: (a) => {
      if ('inject' in a) toClient?.write(a.inject);
      else act = a;
    },
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

/** A whole unmasked binary WebSocket frame (as a server sends it) carrying `payload` (< 64 KiB). */
export function serverFrame(payload: Buffer): Buffer {
  const head = payload.length < 126 ? Buffer.from([0x82, payload.length]) : Buffer.from([0x82, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}
