/**
 * The coordinator's server side, shared by the training coordinator and the job coordinator:
 * the authenticated WebSocket listener (+ plain HTTP health checks on the same port), the set of
 * registered workers, status queries from the CLI, and `collect` — wait for one answer from each
 * of a set of workers, failing fast (and naming the worker) on a disconnect, a reported failure
 * or silence past a timeout.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listen, type Connection, type PeerServer, type TlsServerFiles } from '../wire/net/index.ts';
import { CloseCode, type Message } from '../wire/protocol/index.ts';
import { M, type RunRecord, type RunState, type Status, type WorkerView } from '../protocol/index.ts';
import type { Logger } from '../core/run/log.ts';
import { httpReadToken, normalizeSecret, type SecretInput } from '../wire/auth.ts';
import { Dashboard, isDashboardPath } from './dashboard.ts';
import { metricsRegistry, type TrainingSample } from './metrics.ts';
import type { Registry } from 'prom-client';
import { TtcError } from '../core/errors.ts';

export type FromWorker = (typeof M.fromWorker)[number] | (typeof M.fromCli)[number];
export type WorkerMsg = Message<FromWorker>;
export type ToWorker = (typeof M.toWorker)[number];

export interface WorkerEntry {
  id: number;
  name: string;
  conn: Connection<FromWorker>;
  advertiseHost: string;
  rank?: number;
  backend?: string;
}

/** A set of workers failed at something: `culprits` (maybe empty) are the ones to drop. */
export class WorkerFailure extends TtcError {
  override name = 'WorkerFailure';
  constructor(message: string, readonly culprits: WorkerEntry[]) {
    super('TTC_ERR_WORKER_FAILED', message);
  }
}

export interface RegistryOptions {
  secret: SecretInput;
  host: string;
  port: number;
  tls?: TlsServerFiles;
  /** this coordinator's name in the handshake (the run id) */
  name: string;
  log: Logger;
  status: (runId?: string) => Status;
  /**
   * Requests from the CLI beyond status (run submissions, cancellations, reports): a run server
   * (`ttc serve`) handles them; without a handler they are refused with the reason.
   */
  cli?: (conn: Connection<FromWorker>, msg: CliMsg) => void;
  /** the training runs `/metrics` reports (coordinator/metrics.ts); none by default */
  trainings?: () => TrainingSample[];
  /** a run server's queue, for `/metrics` */
  runStates?: () => RunState[];
  /** a run server's runs and sweeps, for the dashboard (without: it lists the trainings) */
  runRecords?: () => RunRecord[];
}

export type CliMsg = Message<(typeof M.fromCli)[number]>;
const cliTypes = new Set<string>(M.fromCli.map((d) => d.type));

export class WorkerRegistry {
  private server: PeerServer<FromWorker> | undefined;
  readonly workers = new Map<Connection<FromWorker>, WorkerEntry>();
  private nextWorkerId = 1;
  private readonly frameListeners = new Set<(w: WorkerEntry, msg: WorkerMsg) => void>();
  private readonly closeListeners = new Set<(w: WorkerEntry, why: string) => void>();
  private changed: () => void = () => {};
  quiet = false;
  private readonly metrics: Registry;
  /** the page, its API and the reports; it also checks the read token `/metrics` requires */
  private readonly dashboard: Dashboard;

  constructor(private readonly opts: RegistryOptions) {
    const trainings = opts.trainings ?? (() => []);
    this.metrics = metricsRegistry({ workers: () => this.size, trainings, runStates: opts.runStates });
    this.dashboard = new Dashboard({
      readToken: Buffer.from(httpReadToken(normalizeSecret(opts.secret))),
      source: { kind: opts.runRecords ? 'server' : 'run', records: opts.runRecords, trainings, workers: () => this.workerViews() },
      log: opts.log,
      secure: opts.tls !== undefined,
    });
  }

  get url(): string {
    return this.server?.url ?? '';
  }

  get size(): number {
    return this.workers.size;
  }

  async listen(): Promise<string> {
    this.server = await listen<FromWorker>({
      host: this.opts.host,
      port: this.opts.port,
      secret: this.opts.secret,
      role: 'coordinator',
      name: this.opts.name,
      messages: [...M.fromWorker, ...M.fromCli],
      tls: this.opts.tls,
      log: (l) => this.opts.log.info(l),
      onConnection: (conn, hello) => this.onConnection(conn, hello.role),
      http: (req, res) => this.onHttp(req, res),
    });
    return this.server.url;
  }

  /**
   * Plain HTTP, GET or HEAD only (405 otherwise). Probes for Kubernetes: /healthz (liveness: the
   * process serves) and /readyz (ready: listening) answer 200 "ok" to anyone and tell nothing about
   * the run (no id, no phase). /metrics (Prometheus text) and the dashboard (/, /dashboard, /api/…,
   * /assets/…, /report/…; coordinator/dashboard.ts) tell about the run, so they require the read
   * token derived from the secret (`ttc token`, docs/security.md): 401 without it.
   */
  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://ttc');
    } catch {
      return void res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request\n');
    }
    const path = url.pathname;
    const known = path === '/healthz' || path === '/readyz' || path === '/metrics' || isDashboardPath(path);
    if (!known) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: use a WebSocket client (ttc worker / ttc status), or GET /healthz, /readyz, /metrics, /dashboard\n');
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed: GET or HEAD\n');
    } else if (path === '/healthz' || path === '/readyz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'); // Node sends no body to a HEAD
    } else if (path !== '/metrics') {
      this.dashboard.handle(req, res, url);
    } else if (!this.dashboard.authorized(req)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="ttc"', 'content-type': 'text/plain' }).end('unauthorized: send Authorization: Bearer <token> (`ttc token` prints it)\n');
    } else {
      this.metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.metrics.contentType }).end(text),
        (e: Error) => {
          this.opts.log.error(`/metrics failed: ${e.stack}`);
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed: see the coordinator log\n');
        },
      );
    }
  }

  private onConnection(conn: Connection<FromWorker>, role: string): void {
    const log = this.opts.log;
    if (role === 'cli') {
      conn.onFrame((msg) => {
        if (!cliTypes.has(msg.t)) return conn.fail(CloseCode.UNEXPECTED, `a cli does not send ${msg.t}`);
        const cli = msg as CliMsg;
        if (cli.t === 'coord.status-request' && !this.opts.cli) return conn.send(M.StatusReply, { status: this.opts.status(cli.runId) });
        if (this.opts.cli) return this.opts.cli(conn, cli);
        conn.send(M.Refused, { code: 'TTC_ERR_REFUSED', reason: 'this coordinator drives a single run (`ttc coordinator`); submit runs to a run server started with `ttc serve`' });
      });
      return;
    }
    if (role !== 'worker') return conn.fail(CloseCode.UNEXPECTED, `unknown role ${role}`);
    conn.onFrame((msg) => {
      const entry = this.workers.get(conn);
      if (msg.t === 'coord.register') {
        if (entry) return conn.fail(CloseCode.UNEXPECTED, 'registered twice');
        const w: WorkerEntry = { id: this.nextWorkerId++, name: msg.name, conn, advertiseHost: msg.advertiseHost };
        this.workers.set(conn, w);
        log.info(`worker "${msg.name}" (pid ${msg.pid}, ${conn.remote}) registered; ${this.workers.size} connected`);
        this.changed();
        return;
      }
      if (!entry) return conn.fail(CloseCode.UNEXPECTED, `${msg.t} before coord.register`);
      if (cliTypes.has(msg.t)) return conn.fail(CloseCode.UNEXPECTED, `workers do not send ${msg.t}`);
      if (msg.t === 'worker.refused') log.warn(`${this.who(entry)} refused ${msg.refused}: ${msg.reason} (${msg.code})`);
      for (const l of this.frameListeners) l(entry, msg);
    });
    conn.onClose((info) => {
      const entry = this.workers.get(conn);
      if (!entry) return;
      this.workers.delete(conn);
      const why = `connection closed (code ${info.code}${info.reason ? `: ${info.reason}` : ''})`;
      if (!this.quiet) log.warn(`${this.who(entry)} left: ${why}`);
      for (const l of this.closeListeners) l(entry, why);
      this.changed();
    });
  }

  who(w: WorkerEntry): string {
    return `worker "${w.name}"${w.rank !== undefined ? ` (rank ${w.rank}, ${w.conn.remote})` : ` (${w.conn.remote})`}`;
  }

  /** Every frame from a registered worker; returns the unsubscribe function. */
  onFrame(l: (w: WorkerEntry, msg: WorkerMsg) => void): () => void {
    this.frameListeners.add(l);
    return () => this.frameListeners.delete(l);
  }

  onWorkerClose(l: (w: WorkerEntry, why: string) => void): () => void {
    this.closeListeners.add(l);
    return () => this.closeListeners.delete(l);
  }

  /**
   * Waits until every member sent a frame that `pick` accepts. Rejects with a WorkerFailure naming
   * the worker when a member disconnects, `failed` recognises a reported failure, or members stay
   * silent past the timeout.
   */
  collect<T>(
    members: WorkerEntry[],
    what: string,
    pick: (msg: WorkerMsg) => T | undefined,
    timeoutMs: number,
    failed: (w: WorkerEntry, msg: WorkerMsg) => Error | undefined = () => undefined,
  ): Promise<Map<WorkerEntry, T>> {
    const got = new Map<WorkerEntry, T>();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        offFrame();
        offClose();
        if (err) reject(err);
        else resolve(got);
      };
      const offFrame = this.onFrame((w, msg) => {
        if (!members.includes(w)) return;
        const failure = failed(w, msg);
        if (failure) return done(failure);
        const value = pick(msg);
        if (value === undefined) return;
        got.set(w, value);
        if (got.size === members.length) done();
      });
      const offClose = this.onWorkerClose((w, why) => {
        if (members.includes(w)) done(new WorkerFailure(`${this.who(w)} disconnected during ${what}: ${why}`, [w]));
      });
      const timer = setTimeout(() => {
        const silent = members.filter((m) => !got.has(m));
        done(new WorkerFailure(`no answer to ${what} within ${(timeoutMs / 1000).toFixed(0)} s from ${silent.map((w) => this.who(w)).join(', ')}: stalled`, silent));
      }, timeoutMs);
      for (const m of members) if (!this.workers.has(m.conn)) return done(new WorkerFailure(`${this.who(m)} is gone`, [m]));
    });
  }

  /** Waits until `want` workers are connected or `seconds` have passed, whichever is first; returns how many are. */
  async waitUpTo(want: number, seconds: number): Promise<number> {
    try {
      await this.waitFor(want, seconds);
    } catch {
      // fewer than wanted: the caller goes on with those connected
    }
    return this.workers.size;
  }

  /** Resolves with the registered workers (oldest first) once at least `min` are connected. */
  async waitFor(min: number, waitSeconds: number, signal?: AbortSignal): Promise<WorkerEntry[]> {
    const deadline = waitSeconds > 0 ? Date.now() + waitSeconds * 1000 : Infinity;
    const waited = this.workers.size < min;
    if (waited) this.opts.log.info(`waiting for ${min} worker(s) (${this.workers.size} connected)`);
    while (this.workers.size < min) {
      if (signal?.aborted) throw new TtcError('TTC_ERR_RUN', `cancelled while waiting for workers (${this.workers.size} of ${min} connected)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new TtcError('TTC_ERR_RUN', `only ${this.workers.size} of the ${min} workers needed connected within ${waitSeconds} s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.changed = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    // Workers that start together register within moments of each other: when this call had to
    // wait for them, give the rest of the group that moment, so one ring takes them all.
    if (waited) await new Promise((r) => setTimeout(r, 300));
    return [...this.workers.values()].sort((a, b) => a.id - b.id);
  }

  broadcast<D extends ToWorker>(members: WorkerEntry[], def: D, fields: (w: WorkerEntry) => Omit<Message<D>, 'v' | 't'>): void {
    for (const w of members) w.conn.send(def, fields(w) as never);
  }

  /** Tells every connected worker to exit (`ok`: the job is done; a stop after success is not logged as a loss). */
  stopAll(ok: boolean, reason: string): void {
    if (ok) this.quiet = true;
    this.broadcast([...this.workers.values()], M.Stop, () => ({ reason: reason.slice(0, 1000), ok }));
  }

  /** The connected workers as status views. */
  workerViews(): WorkerView[] {
    return [...this.workers.values()].map((w) => ({ name: w.name, rank: w.rank ?? null, remote: w.conn.remote, backend: w.backend ?? null }));
  }

  /** Closes a worker's connection after a failure and forgets it. */
  drop(w: WorkerEntry, reason: string): void {
    w.conn.fail(CloseCode.ABORTED, reason);
    w.conn.terminate();
    this.workers.delete(w.conn);
  }

  async close(): Promise<void> {
    await this.server?.close();
  }
}
