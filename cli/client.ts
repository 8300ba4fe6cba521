/**
 * The CLI's side of a coordinator connection (`ttc run`, `ttc status`, `ttc report`, `ttc cancel`):
 * an authenticated WebSocket session with role "cli" and one request at a time.
 */
import { loadSecret } from '../wire/auth.ts';
import { connect, tlsClientFromEnv, type Connection } from '../wire/net/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import { M, type Status } from '../protocol/index.ts';
import { TtcError, UsageError, type ErrorCode } from '../core/errors.ts';

export type CliReply = Message<(typeof M.toCli)[number]>;

/** The coordinator refused a request (bad config, unknown run, …): a clear error, not a crash. */
export class RefusedError extends TtcError {
  override name = 'RefusedError';
  constructor(code: ErrorCode, message: string) {
    super(code, message);
  }
}

/**
 * Accepts ws://, wss://, http://, https:// (mapped to ws/wss: the coordinator serves both on one
 * port) or a bare host:port (ws://).
 */
export function coordinatorUrl(raw: string): string {
  const url = /^[a-z]+:\/\//i.test(raw) ? raw : `ws://${raw}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--coordinator: "${raw}" is not a URL (expected ws://, wss://, http://, https:// or host:port)`);
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[parsed.protocol];
  if (!scheme) throw new UsageError(`--coordinator: expected ws://, wss://, http:// or https://, got "${raw}"`);
  parsed.protocol = scheme;
  return parsed.toString().replace(/\/$/, '');
}

/** The `--coordinator URL` flag of the client commands (env TTC_COORDINATOR). */
export const coordinatorFlag = { coordinator: { type: 'string' as const, default: process.env.TTC_COORDINATOR } };

export function requireCoordinator(url: string | undefined, usage: string): string {
  if (!url) throw new UsageError(`--coordinator (or TTC_COORDINATOR) is required\n\n${usage}`);
  return url;
}

export class CliSession {
  private waiting: { accept: (m: CliReply) => boolean; resolve: (m: CliReply) => void; reject: (e: Error) => void } | undefined;
  private closedWith: Error | undefined;

  private constructor(private readonly conn: Connection<(typeof M.toCli)[number]>) {
    conn.onFrame((msg) => {
      const w = this.waiting;
      if (!w) return;
      if (msg.t === 'coord.refused') {
        this.waiting = undefined;
        w.reject(new RefusedError(msg.code, `the coordinator refused: ${msg.reason}`));
      } else if (w.accept(msg)) {
        this.waiting = undefined;
        w.resolve(msg);
      }
    });
    conn.onClose((info) => {
      this.closedWith = new TtcError('TTC_ERR_CONNECTION_LOST', `the coordinator closed the connection (${info.code}${info.reason ? `: ${info.reason}` : ''})`);
      this.waiting?.reject(this.closedWith);
      this.waiting = undefined;
    });
  }

  /** `retryForMs`: keep trying that long while the coordinator is unreachable (a restarting server). */
  static async open(url: string, purpose: string, retryForMs = 0): Promise<CliSession> {
    const conn = await connect({ url: coordinatorUrl(url), secret: loadSecret(), role: 'cli', name: `${purpose}-${process.pid}`, messages: M.toCli, peerLabel: 'coordinator', tls: tlsClientFromEnv(), retryForMs, log: () => {} });
    return new CliSession(conn);
  }

  get connection(): Connection<(typeof M.toCli)[number]> {
    return this.conn;
  }

  /** Sends a request and resolves with the first reply `accept` takes (every other frame goes to `onOther`). */
  request<T extends CliReply>(send: () => void, accept: (m: CliReply) => m is T, timeoutMs = 30_000, onOther?: (m: CliReply) => void): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new TtcError('TTC_ERR_CONNECTION_LOST', `the coordinator did not answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiting = {
        accept: (m) => {
          if (accept(m)) return true;
          onOther?.(m);
          timer.refresh();
          return false;
        },
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      send();
    });
  }

  async status(runId?: string): Promise<Status> {
    const reply = await this.request(() => this.conn.send(M.StatusRequest, runId ? { runId } : {}), (m): m is Message<typeof M.StatusReply> => m.t === 'coord.status');
    return reply.status;
  }

  close(): void {
    this.conn.close();
  }
}
