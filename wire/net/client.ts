/**
 * Client side: connect to a ttc WebSocket server, run the mutual HMAC handshake and return an
 * authenticated {@link Connection}. Retries while the server is not reachable yet (bounded).
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { clientProof, newNonce, normalizeSecret, proofsEqual, serverProof, type SecretInput } from '../auth.ts';
import {
  Auth, Challenge, CloseCode, decodeFrame, encodeFrame, ErrorMsg, Hello, ProtocolError, Welcome,
  type Message, type MessageDef,
} from '../protocol/index.ts';
import { closeReason, Connection, defaultLogger, describeClose, type Logger } from './connection.ts';
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
  handshakeTimeoutMs?: number;
  /** keep retrying while the server refuses TCP connections for up to this long; default 0 */
  retryForMs?: number;
  retryIntervalMs?: number;
  tls?: TlsClientFiles;
  /**
   * Send frames with an all-zero mask: ws then skips the XOR masking pass on both ends.
   * Only for trusted cluster links (masking protects browsers' proxies, not us); frames stay
   * authenticated by the handshake. Default false.
   */
  zeroMask?: boolean;
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

export async function connect<In extends MessageDef>(opts: ConnectOptions<In>): Promise<Connection<In>> {
  normalizeSecret(opts.secret); // fail fast on a missing/short secret, before any network traffic
  const deadline = Date.now() + (opts.retryForMs ?? 0);
  const interval = opts.retryIntervalMs ?? DEFAULTS.retryIntervalMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(opts);
    } catch (err) {
      const retryable = err instanceof ConnectError && err.kind === 'unreachable';
      if (!retryable || Date.now() + interval > deadline) throw err;
      await new Promise((r) => setTimeout(r, interval));
    }
  }
}

function connectOnce<In extends MessageDef>(opts: ConnectOptions<In>): Promise<Connection<In>> {
  const secret = normalizeSecret(opts.secret);
  const log = opts.log ?? defaultLogger;
  const label = `${opts.peerLabel ?? 'server'} at ${opts.url}`;
  const maxPayload = opts.maxPayload ?? DEFAULTS.maxPayload;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs;
  const tls = opts.tls;
  const ws = new WebSocket(opts.url, {
    perMessageDeflate: false,
    maxPayload,
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

    const settle = (err: ConnectError, logIt = true) => {
      if (state === 'done') return;
      state = 'done';
      clearTimeout(timer);
      if (logIt) log(err.message);
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
      settle(new ConnectError('timeout', `${label}: handshake not completed within ${handshakeTimeoutMs} ms`, CloseCode.TIMEOUT));
      ws.terminate();
    }, handshakeTimeoutMs);

    ws.on('unexpected-response', (_req, res) => {
      settle(new ConnectError('protocol', `${label} answered HTTP ${res.statusCode} instead of a WebSocket upgrade`));
      ws.terminate();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (state === 'done') return;
      const unreachable = ['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ENETUNREACH'].includes(err.code ?? '');
      if (state === 'connecting' && unreachable) settle(new ConnectError('unreachable', `${label} unreachable: ${err.message}`), false);
      else if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') settle(new ConnectError('protocol', `${label} sent a frame larger than maxPayload (${maxPayload} bytes)`));
      else settle(new ConnectError('protocol', `${label}: ${err.message}`));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (state === 'done') return;
      if (refusal) settle(refusedError(refusal.code, refusal.reason));
      else if (state === 'connecting') settle(new ConnectError('unreachable', `${label} closed the connection before the handshake`), false);
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
        resolve(new Connection<In>({
          ws, allowed: opts.messages, peer: { role: m.role, name: m.name }, remote: new URL(opts.url).host, side: 'client',
          maxPayload, log, label: `${opts.peerLabel ?? m.role} "${m.name}" (${new URL(opts.url).host})`,
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
