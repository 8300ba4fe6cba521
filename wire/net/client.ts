/**
 * Client side: connect to a ttc WebSocket server, run the mutual HMAC handshake and return an
 * authenticated {@link Connection}. Retries while the server is not reachable yet (bounded).
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { clientProof, frameKeys, newNonce, normalizeSecret, proofsEqual, serverProof, type SecretInput } from '../auth.ts';
import {
  Auth, Challenge, CloseCode, decodeFrame, encodeFrame, ErrorMsg, Hello, ProtocolError, Welcome,
  type Message, type MessageDef,
} from '../protocol/index.ts';
import { closeReason, Connection, defaultLogger, describeClose, setReceiveLimit, type Logger } from './connection.ts';
import { DEFAULTS } from './defaults.ts';
import { TtcError, type ErrorCode } from '../../core/errors.ts';

export interface TlsClientFiles {
  /** PEM CA bundle path to verify the server (a self-signed cluster CA); default: system CAs */
  ca?: string;
  /** default true; false accepts any certificate (testing only — still HMAC-authenticated) */
  rejectUnauthorized?: boolean;
  /** TLS server name to verify when connecting by IP */
  servername?: string;
  /** client certificate/key paths (for servers that require mutual TLS) */
  cert?: string;
  key?: string;
}

export interface ConnectOptions<In extends MessageDef> {
  /** ws://host:port or wss://host:port */
  url: string;
  secret: SecretInput;
  /** this client's role and name, sent in `hello` */
  role: string;
  name: string;
  /** message types accepted from the server after the handshake */
  messages: readonly In[];
  /** how to name the server in logs and errors, e.g. "coordinator"; default "server" */
  peerLabel?: string;
  maxPayload?: number;
  /** one attempt (TCP, TLS, upgrade, handshake) must finish within this; default DEFAULTS.connectTimeoutMs (10 s) */
  handshakeTimeoutMs?: number;
  /**
   * keep retrying while the server is unreachable or busy for up to this long; default 0: an
   * unreachable server fails at once, a busy one (1013, a restart, a handshake timeout) is retried
   * for DEFAULTS.busyRetryForMs.
   */
  retryForMs?: number;
  /** first delay between retries (doubling, with jitter, up to DEFAULTS.maxRetryIntervalMs); default 200 */
  retryIntervalMs?: number;
  tls?: TlsClientFiles;
  /**
   * Send frames with an all-zero mask: ws then skips the XOR masking pass on both ends.
   * Only for trusted cluster links (masking protects browsers' proxies, not us); frames stay
   * authenticated by the handshake. Default false.
   */
  zeroMask?: boolean;
  /** per-frame MAC on ws:// links (see ListenOptions.frameMac); default true */
  frameMac?: boolean;
  log?: Logger;
}

export type ConnectErrorKind = 'unreachable' | 'auth' | 'version' | 'timeout' | 'protocol' | 'closed';

const CONNECT_CODES: Record<ConnectErrorKind, ErrorCode> = {
  unreachable: 'TTC_ERR_CONNECT_UNREACHABLE',
  auth: 'TTC_ERR_CONNECT_AUTH',
  version: 'TTC_ERR_CONNECT_VERSION',
  timeout: 'TTC_ERR_CONNECT_TIMEOUT',
  protocol: 'TTC_ERR_CONNECT_PROTOCOL',
  closed: 'TTC_ERR_CONNECT_REFUSED',
};

export class ConnectError extends TtcError {
  override name = 'ConnectError';
  /** `closeCode`: the WebSocket close code the server refused us with, when there was one */
  constructor(readonly kind: ConnectErrorKind, message: string, readonly closeCode?: number) {
    super(CONNECT_CODES[kind], message);
  }
}

const zeroMask = (mask: Buffer) => { mask.fill(0); };

/** Close codes of a server that is alive but busy or restarting, or that dropped us mid-handshake: try again. */
const BUSY_CODES: ReadonlySet<number> = new Set([CloseCode.GOING_AWAY, 1006, 1012, CloseCode.TRY_AGAIN_LATER, CloseCode.TIMEOUT]);

/**
 * How long an error may be retried for: an unreachable server for `retryForMs`; a busy one (1013,
 * a restart, a handshake timeout, a connection dropped during the handshake) for `retryForMs` too,
 * or DEFAULTS.busyRetryForMs when the caller asked to fail fast (0: a server that is up but busy
 * is still worth waiting for); anything else (a wrong secret, another protocol version, not a ttc
 * server) not at all.
 */
function retryWindow(err: unknown, retryForMs: number): number {
  if (!(err instanceof ConnectError)) return 0;
  if (err.kind === 'unreachable') return retryForMs;
  if (err.kind === 'timeout' || (err.kind === 'closed' && err.closeCode !== undefined && BUSY_CODES.has(err.closeCode))) {
    return retryForMs > 0 ? retryForMs : DEFAULTS.busyRetryForMs;
  }
  return 0;
}

export async function connect<In extends MessageDef>(opts: ConnectOptions<In>): Promise<Connection<In>> {
  normalizeSecret(opts.secret); // fail fast on a missing/short secret, before any network traffic
  const log = opts.log ?? defaultLogger;
  const start = Date.now();
  const retryForMs = opts.retryForMs ?? 0;
  let interval = opts.retryIntervalMs ?? DEFAULTS.retryIntervalMs;
  let busyLogged = false;
  for (;;) {
    try {
      return await connectOnce(opts);
    } catch (err) {
      const window = retryWindow(err, retryForMs);
      // exponential backoff with jitter (½–1 × the interval): many refused clients do not come back in step
      const delay = interval * (0.5 + Math.random() / 2);
      const retry = Date.now() + delay <= start + window;
      if (!retry) {
        if ((err as ConnectError).kind !== 'unreachable') log((err as Error).message);
        throw err;
      }
      if ((err as ConnectError).kind !== 'unreachable' && !busyLogged) {
        busyLogged = true; // once: a flood could refuse us many times
        log(`${(err as Error).message}; retrying for up to ${Math.round((start + window - Date.now()) / 1000)} s`);
      }
      await new Promise((r) => setTimeout(r, delay));
      interval = Math.min(interval * 2, DEFAULTS.maxRetryIntervalMs);
    }
  }
}

/** One attempt; rejects with a ConnectError that connect() logs (or retries). */
function connectOnce<In extends MessageDef>(opts: ConnectOptions<In>): Promise<Connection<In>> {
  const secret = normalizeSecret(opts.secret);
  const log = opts.log ?? defaultLogger;
  const label = `${opts.peerLabel ?? 'server'} at ${opts.url}`;
  const maxPayload = opts.maxPayload ?? DEFAULTS.maxPayload;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  const tls = opts.tls;
  const ws = new WebSocket(opts.url, {
    perMessageDeflate: false,
    maxPayload: DEFAULTS.maxHandshakeFrame, // raised to maxPayload once the server has proved itself
    handshakeTimeout: handshakeTimeoutMs,
    ...(opts.zeroMask ? { generateMask: zeroMask } : {}),
    ...(tls?.ca ? { ca: readFileSync(tls.ca) } : {}),
    ...(tls?.cert ? { cert: readFileSync(tls.cert) } : {}),
    ...(tls?.key ? { key: readFileSync(tls.key) } : {}),
    ...(tls?.servername ? { servername: tls.servername } : {}),
    ...(tls?.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
  });

  return new Promise<Connection<In>>((resolve, reject) => {
    let state: 'connecting' | 'challenge' | 'welcome' | 'done' = 'connecting';
    const nonce = newNonce();
    let transcript: Parameters<typeof clientProof>[1] | undefined;
    let refusal: Message<typeof ErrorMsg> | undefined;

    const settle = (err: ConnectError) => {
      if (state === 'done') return;
      state = 'done';
      clearTimeout(timer);
      reject(err);
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
        try { ws.close(err.closeCode && err.closeCode >= 4000 ? err.closeCode : CloseCode.NORMAL, closeReason(err.kind === 'auth' ? 'authentication failed' : err.kind)); } catch { ws.terminate(); }
        setTimeout(() => ws.terminate(), 2000).unref();
      }
    };
    const refusedError = (code: number, reason: string): ConnectError => {
      if (code === CloseCode.AUTH_FAILED) {
        return new ConnectError('auth', `${label} refused us: authentication failed — check TTC_SECRET`, code);
      }
      if (code === CloseCode.VERSION) return new ConnectError('version', `${label} refused us: ${reason}`, code);
      return new ConnectError('closed', `${label} refused us: ${describeClose(code, reason)}`, code);
    };
    const timer = setTimeout(() => {
      // no WebSocket yet (no TCP connection or no upgrade answer): as good as unreachable
      settle(state === 'connecting'
        ? new ConnectError('unreachable', `${label} unreachable: no answer within ${handshakeTimeoutMs} ms`)
        : new ConnectError('timeout', `${label}: handshake not completed within ${handshakeTimeoutMs} ms`, CloseCode.TIMEOUT));
      ws.terminate();
    }, handshakeTimeoutMs);

    ws.on('unexpected-response', (_req, res) => {
      settle(new ConnectError('protocol', `${label} answered HTTP ${res.statusCode} instead of a WebSocket upgrade`));
      ws.terminate();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (state === 'done') return;
      const network = ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ENETUNREACH'].includes(err.code ?? '');
      if (state === 'connecting' && network) settle(new ConnectError('unreachable', `${label} unreachable: ${err.message}`));
      else if (network) settle(new ConnectError('closed', `${label} dropped the connection during the handshake: ${err.message}`, 1006));
      else if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') settle(new ConnectError('protocol', `${label} sent a frame larger than the pre-auth limit (${DEFAULTS.maxHandshakeFrame} bytes) during the handshake`, CloseCode.TOO_BIG));
      else settle(new ConnectError('protocol', `${label}: ${err.message}`));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (state === 'done') return;
      if (refusal) settle(refusedError(refusal.code, refusal.reason));
      else if (state === 'connecting') settle(new ConnectError('unreachable', `${label} closed the connection before the handshake`));
      else settle(refusedError(code, reason.toString('utf8')));
    });
    ws.on('open', () => {
      if (state !== 'connecting') return;
      state = 'challenge';
      ws.send(encodeFrame(Hello, { role: opts.role, name: opts.name, nonce }));
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (state === 'done' || state === 'connecting') return;
      if (!isBinary) { settle(new ConnectError('protocol', `${label} sent a text frame during the handshake`, CloseCode.MALFORMED)); return; }
      try {
        if (state === 'challenge') {
          const m = decodeFrame(data, [Challenge, ErrorMsg], { maxBytes: DEFAULTS.maxHandshakeFrame });
          if (m.t === 'error') { refusal = m; return; }
          transcript = { clientNonce: nonce, serverNonce: m.nonce, clientRole: opts.role, clientName: opts.name };
          ws.send(encodeFrame(Auth, { proof: clientProof(secret, transcript) }));
          state = 'welcome';
          return;
        }
        const m = decodeFrame(data, [Welcome, ErrorMsg], { maxBytes: DEFAULTS.maxHandshakeFrame });
        if (m.t === 'error') { refusal = m; return; }
        if (!proofsEqual(serverProof(secret, transcript!, m.role, m.name), m.proof)) {
          settle(new ConnectError('auth', `${label} failed to prove it knows the shared secret: authentication failed — check TTC_SECRET on both sides`, CloseCode.AUTH_FAILED));
          return;
        }
        state = 'done';
        clearTimeout(timer);
        setReceiveLimit(ws, maxPayload);
        const keys = opts.frameMac !== false && !opts.url.startsWith('wss:') ? frameKeys(secret, transcript!) : undefined;
        resolve(new Connection<In>({
          ws, allowed: opts.messages, peer: { role: m.role, name: m.name }, remote: new URL(opts.url).host, side: 'client',
          maxPayload, log, label: `${opts.peerLabel ?? m.role} "${m.name}" (${new URL(opts.url).host})`,
          ...(keys ? { mac: { send: keys.clientToServer, receive: keys.serverToClient } } : {}),
        }));
      } catch (err) {
        if (err instanceof ProtocolError) {
          settle(new ConnectError(err.kind === 'version' ? 'version' : 'protocol', `${label}: ${err.message}`, err.closeCode));
        } else {
          settle(new ConnectError('protocol', `${label}: ${(err as Error).message}`, CloseCode.INTERNAL));
        }
      }
    });
  });
}
