/**
 * Server side: a WebSocket server (ws:// or wss://) whose every connection must pass the HMAC
 * handshake (hello → challenge → auth → welcome) before the application sees it.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { clientProof, frameKeys, newNonce, normalizeSecret, proofsEqual, serverProof, type SecretInput } from '../auth.ts';
import {
  Auth, Challenge, CloseCode, decodeFrame, encodeFrame, ErrorMsg, Hello, ProtocolError, Welcome,
  type Message, type MessageDef,
} from '../protocol/index.ts';
import { closeReason, Connection, defaultLogger, describeClose, remoteOf, sendableCode, setReceiveLimit, type Logger } from './connection.ts';
import { DEFAULTS } from './defaults.ts';
import { TtcError } from '../../core/errors.ts';

export interface TlsServerFiles {
  /** PEM certificate chain path */
  cert: string;
  /** PEM private key path */
  key: string;
  /** optional CA bundle path (only needed with requestClientCert) */
  ca?: string;
  /** ask clients for a certificate and reject those not signed by `ca` (mutual TLS) */
  requestClientCert?: boolean;
}

export interface ListenOptions<In extends MessageDef> {
  /** interface to bind; default 127.0.0.1 (use 0.0.0.0 in a pod) */
  host?: string;
  /** 0 = ephemeral; read the bound port from the returned server */
  port?: number;
  secret: SecretInput;
  /** this server's role and name, sent in `welcome` */
  role: string;
  name: string;
  /** message types accepted after the handshake */
  messages: readonly In[];
  /** called for each authenticated connection */
  onConnection: (conn: Connection<In>, hello: Message<typeof Hello>) => void;
  /** largest frame accepted, bytes (ws maxPayload); default 16 MiB */
  maxPayload?: number;
  /** largest frame accepted before authentication; default 4096 */
  maxHandshakeFrame?: number;
  /** the whole handshake, from the upgrade; default 3000 */
  handshakeTimeoutMs?: number;
  /** `hello` must arrive within this time of the upgrade; default 2000 */
  helloTimeoutMs?: number;
  /** connections still in the handshake at once (authenticated ones do not count); more are refused with 1013 */
  maxPendingHandshakes?: number;
  /** connections in the handshake at once from one address (IPv6: one /64); more are refused with 1013 */
  maxPendingPerSource?: number;
  tls?: TlsServerFiles;
  /**
   * Tag and check every frame after the handshake (wire/net/frame-mac.ts) when there is no TLS;
   * default true. false only to measure its cost: both ends of a link must agree.
   */
  frameMac?: boolean;
  /** plain HTTP requests on the same port (health checks, metrics); default: 426 Upgrade Required */
  http?: (req: IncomingMessage, res: ServerResponse) => void;
  log?: Logger;
}

export class PeerServer<In extends MessageDef = MessageDef> {
  readonly connections = new Set<Connection<In>>();
  private closed = false;
  constructor(
    private readonly wss: WebSocketServer,
    private readonly https: HttpsServer | HttpServer,
    readonly host: string,
    readonly port: number,
    readonly tls: boolean,
  ) {}

  get url(): string {
    const h = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `${this.tls ? 'wss' : 'ws'}://${h}:${this.port}`;
  }

  /** Stop listening and close every connection (authenticated or not). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.connections) c.close(CloseCode.GOING_AWAY, 'server shutting down');
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.https.closeAllConnections();
    await new Promise<void>((resolve) => this.https.close(() => resolve()));
    for (const c of this.connections) c.terminate();
  }
}

/** Why a server could not listen, named (the address is the user's --host / --port), or the error itself when it is not one of those. */
function listenError(err: Error, host: string, port: number): Error {
  const why: Record<string, string> = { EADDRINUSE: 'the port is in use', EADDRNOTAVAIL: 'no such address on this machine', EACCES: 'no permission', ENOTFOUND: 'unknown host', EAI_AGAIN: 'unknown host' };
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return code in why ? new TtcError('TTC_ERR_USAGE', `cannot listen on ${host}:${port}: ${why[code]} (${code})`, { cause: err }) : err;
}

/** The address a connection counts against for the per-source limit: an IPv4 address, or an IPv6 /64 (one host's usual share). */
export function sourceOf(address: string | undefined): string {
  const a = (address ?? '?').replace(/^::ffff:/, '').replace(/%.*$/, '');
  if (!a.includes(':')) return a;
  const [head = '', tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = a.includes('::') ? [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return `${groups.slice(0, 4).map((g) => parseInt(g || '0', 16).toString(16)).join(':')}::/64`;
}

/** `log`, at most one line per `intervalMs`; the next line says how many were left out (a flood must not flood the log). */
function throttled(log: Logger, intervalMs: number): Logger {
  let last = -Infinity;
  let skipped = 0;
  return (line) => {
    const now = performance.now();
    if (now - last < intervalMs) { skipped++; return; }
    last = now;
    log(skipped ? `${line} (and ${skipped} similar lines left out)` : line);
    skipped = 0;
  };
}

interface PendingEntry {
  source: string;
  /** close this connection to make room (it calls remove()) */
  evict: (why: string) => void;
}

/**
 * The connections in the handshake, by source. A source may hold `perSource` at once; when all
 * `max` places are taken, a newcomer from a source holding fewer than the biggest holder evicts
 * that holder's oldest, so a flood from one address (or a few) never locks the others out.
 */
class PendingHandshakes {
  private readonly bySource = new Map<string, Set<PendingEntry>>(); // a Set keeps insertion (age) order
  private total = 0;
  constructor(private readonly max: number, private readonly perSource: number) {}

  /** Admits `e`, or returns why not. */
  admit(e: PendingEntry): string | undefined {
    const mine = this.bySource.get(e.source)?.size ?? 0;
    if (mine >= this.perSource) return `too many connections in the handshake from ${e.source} (${this.perSource})`;
    if (this.total >= this.max) {
      let biggest: Set<PendingEntry> | undefined;
      for (const set of this.bySource.values()) if (!biggest || set.size > biggest.size) biggest = set;
      const victim = biggest && biggest.size > mine + 1 ? biggest.values().next().value : undefined;
      if (!victim) return `too many connections in the handshake (${this.max})`;
      victim.evict(`${this.max} connections in the handshake, ${biggest!.size} of them from ${victim.source}; making room for ${e.source}`);
    }
    let set = this.bySource.get(e.source);
    if (!set) this.bySource.set(e.source, (set = new Set()));
    set.add(e);
    this.total++;
    return undefined;
  }

  remove(e: PendingEntry): void {
    const set = this.bySource.get(e.source);
    if (!set?.delete(e)) return;
    this.total--;
    if (set.size === 0) this.bySource.delete(e.source);
  }
}

export async function listen<In extends MessageDef>(opts: ListenOptions<In>): Promise<PeerServer<In>> {
  const secret = normalizeSecret(opts.secret);
  const log = opts.log ?? defaultLogger;
  const host = opts.host ?? '127.0.0.1';
  const maxPayload = opts.maxPayload ?? DEFAULTS.maxPayload;
  const maxHandshakeFrame = opts.maxHandshakeFrame ?? DEFAULTS.maxHandshakeFrame;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs;
  const helloTimeoutMs = opts.helloTimeoutMs ?? DEFAULTS.helloTimeoutMs;
  const maxPending = opts.maxPendingHandshakes ?? DEFAULTS.maxPendingHandshakes;
  const maxPerSource = opts.maxPendingPerSource ?? DEFAULTS.maxPendingPerSource;
  const frameMac = !opts.tls && opts.frameMac !== false; // TLS already protects every byte

  // Always our own HTTP(S) server: plain requests go to `opts.http` (health checks) or get 426 and
  // a closed connection, and clients that never finish their request headers are dropped after
  // the handshake timeout (slowloris), instead of Node's 60 s/300 s defaults.
  const httpOpts = {
    headersTimeout: handshakeTimeoutMs,
    requestTimeout: Math.max(handshakeTimeoutMs, 30_000),
    keepAliveTimeout: 2000,
    connectionsCheckingInterval: Math.max(250, Math.min(2000, Math.floor(handshakeTimeoutMs / 2))),
  };
  const onRequest = opts.http ?? ((_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(426, { Connection: 'close', 'Content-Type': 'text/plain' });
    res.end('ttc: WebSocket upgrade required\n');
  });
  const https: HttpsServer | HttpServer = opts.tls
    ? createHttpsServer({
      ...httpOpts,
      cert: readFileSync(opts.tls.cert),
      key: readFileSync(opts.tls.key),
      ...(opts.tls.ca ? { ca: readFileSync(opts.tls.ca) } : {}),
      requestCert: opts.tls.requestClientCert ?? false,
      rejectUnauthorized: opts.tls.requestClientCert ?? false,
    }, onRequest)
    : createHttpServer(httpOpts, onRequest);
  if (opts.tls) {
    https.on('tlsClientError', (err: Error, socket: { remoteAddress?: string; remotePort?: number }) => {
      log(`TLS handshake failed from ${remoteOf(socket)}: ${err.message}`);
    });
  }
  https.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    log(`dropped a malformed HTTP request from ${remoteOf(socket as unknown as { remoteAddress?: string; remotePort?: number })}: ${err.code ?? err.message}`);
    socket.destroy();
  });
  // every socket starts with the pre-auth limit; it is raised to maxPayload after the handshake
  const wss = new WebSocketServer({ maxPayload: maxHandshakeFrame, perMessageDeflate: false, clientTracking: true, server: https });
  // ws re-emits the server's errors: until listen() settles they are its rejection (with no
  // listener on wss, a port in use crashed the process)
  const asRejection = () => {};
  wss.on('error', asRejection);
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => reject(listenError(err, host, opts.port ?? 0));
    https.once('error', fail);
    https.listen(opts.port ?? 0, host, () => { https.off('error', fail); resolve(); });
  });
  wss.off('error', asRejection);
  https.on('error', (err) => log(`server error: ${err.message}`));
  wss.on('error', (err) => log(`server error: ${err.message}`));
  wss.on('wsClientError', (err, socket) => {
    // with a listener, ws leaves closing the socket to us
    log(`rejected an invalid WebSocket upgrade from ${remoteOf(socket as unknown as { remoteAddress?: string; remotePort?: number })}: ${err.message}`);
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    setTimeout(() => socket.destroy(), 500).unref();
  });
  const port = (https.address() as AddressInfo).port;
  const server = new PeerServer<In>(wss, https, host, port, !!opts.tls);

  const pendingSet = new PendingHandshakes(maxPending, maxPerSource);
  // under a flood each of these happens many times a second: one line a second each
  const refusedLog = throttled(log, 1000);
  const evictedLog = throttled(log, 1000);
  const silentLog = throttled(log, 1000);

  wss.on('connection', (ws: WebSocket, req) => {
    const remote = remoteOf(req.socket);
    let state: 'hello' | 'auth' | 'done' = 'hello';
    let hello: Message<typeof Hello> | undefined;
    let serverNonce: Buffer | undefined;
    const finish = () => {
      if (state !== 'done') { state = 'done'; pendingSet.remove(entry); }
      clearTimeout(helloTimer);
      clearTimeout(timer);
    };
    const refuse = (code: number, reason: string, logLine: string, logger = log) => {
      logger(logLine);
      finish();
      try {
        if (ws.readyState === WebSocket.OPEN) ws.send(encodeFrame(ErrorMsg, { code, reason: reason.slice(0, 1024) }, { validate: false }));
        ws.close(sendableCode(code), closeReason(reason));
      } catch {
        ws.terminate();
      }
      setTimeout(() => ws.terminate(), 1000).unref(); // a refused peer gets 1 s to read the reason
    };
    const entry: PendingEntry = {
      source: sourceOf(req.socket.remoteAddress),
      evict: (why) => refuse(CloseCode.TRY_AGAIN_LATER, 'too many pending handshakes', `evicted ${remote} from the handshake: ${why}`, evictedLog),
    };
    const refusal = pendingSet.admit(entry);
    if (refusal) {
      refusedLog(`refused ${remote}: ${refusal}`);
      ws.close(CloseCode.TRY_AGAIN_LATER, 'too many pending handshakes');
      setTimeout(() => ws.terminate(), 1000).unref();
      return;
    }
    const who = () => (hello ? `${remote} (role=${hello.role}, name=${JSON.stringify(hello.name)})` : remote);
    // A deadline that fires while the event loop was blocked may have the peer's frame waiting in
    // the socket: setImmediate runs after the poll phase has read it, so only a late peer is refused.
    const expire = (stillWaiting: () => boolean, reason: string, logLine: () => string, logger = log) => () =>
      setImmediate(() => { if (stillWaiting()) refuse(CloseCode.TIMEOUT, reason, logLine(), logger); });
    const helloTimer = helloTimeoutMs < handshakeTimeoutMs
      ? setTimeout(expire(() => state === 'hello', `no hello within ${helloTimeoutMs} ms`, () => `refused ${who()}: no hello within ${helloTimeoutMs} ms`, silentLog), helloTimeoutMs)
      : undefined;
    const timer = setTimeout(expire(() => state !== 'done', `handshake timeout after ${handshakeTimeoutMs} ms`,
      () => `refused ${who()}: handshake not completed within ${handshakeTimeoutMs} ms`), handshakeTimeoutMs);

    ws.on('error', (err: Error & { code?: string }) => {
      if (state === 'done') return;
      const what = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? `frame exceeds the pre-auth limit (${maxHandshakeFrame} bytes)` : err.message;
      log(`closing connection from ${who()} during handshake: ${what}`);
      finish(); // ws closes the socket itself
    });
    ws.on('close', (code, reason) => {
      if (state !== 'done') {
        log(`connection from ${who()} closed during handshake: ${describeClose(code, reason.toString())}`);
        finish();
      }
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (state === 'done') return;
      if (!isBinary) {
        refuse(CloseCode.MALFORMED, 'text frames are not accepted', `refused ${who()}: sent a text frame`);
        return;
      }
      try {
        if (state === 'hello') {
          hello = decodeFrame(data, [Hello], { maxBytes: maxHandshakeFrame });
          serverNonce = newNonce();
          ws.send(encodeFrame(Challenge, { nonce: serverNonce }));
          state = 'auth';
          return;
        }
        const auth = decodeFrame(data, [Auth], { maxBytes: maxHandshakeFrame });
        const transcript = { clientNonce: hello!.nonce, serverNonce: serverNonce!, clientRole: hello!.role, clientName: hello!.name };
        if (!proofsEqual(clientProof(secret, transcript), auth.proof)) {
          refuse(CloseCode.AUTH_FAILED, 'authentication failed', `auth failed: wrong secret from ${who()}`);
          return;
        }
        ws.send(encodeFrame(Welcome, { proof: serverProof(secret, transcript, opts.role, opts.name), role: opts.role, name: opts.name }));
        finish();
        setReceiveLimit(ws, maxPayload);
        const keys = frameMac ? frameKeys(secret, transcript) : undefined;
        const conn = new Connection<In>({
          ws, allowed: opts.messages, peer: { role: hello!.role, name: hello!.name }, remote, side: 'server', maxPayload, log,
          ...(keys ? { mac: { send: keys.serverToClient, receive: keys.clientToServer } } : {}),
        });
        server.connections.add(conn);
        conn.onClose(() => server.connections.delete(conn));
        try {
          opts.onConnection(conn, hello!);
        } catch (err) {
          log(`onConnection failed for ${conn.label}: ${(err as Error).stack ?? err}`);
          conn.fail(CloseCode.INTERNAL, 'internal error', { log: false });
        }
      } catch (err) {
        if (err instanceof ProtocolError) {
          const expected = state === 'hello' ? 'hello' : 'auth';
          refuse(err.closeCode, err.message, `refused ${who()} (expected "${expected}"): ${err.message}`);
        } else {
          refuse(CloseCode.INTERNAL, 'internal error', `handshake with ${who()} failed: ${(err as Error).stack ?? err}`);
        }
      }
    });
  });
  return server;
}
