/**
 * The worker process (`ttc worker --coordinator ws://host:port`): registers with the coordinator,
 * then does what it is told, in order, as its lifecycle allows (worker/lifecycle.ts): join a ring
 * formation with a task (ring-member.ts, tasks.ts), load a state, run training steps (compute
 * gradients → ring all-reduce → apply), evaluations, parameter hashes and state transfers, or run
 * evaluation jobs (jobs.ts) between rings. It never decides the schedule. A message its state does
 * not accept is refused with a stable code. When the coordinator goes away it leaves its ring and
 * reconnects (with retries), so a restarted coordinator finds it again.
 */
import os from 'node:os';
import { CollectiveError, type RingTls } from '../collective/index.ts';
import { isTtcError, type ErrorCode } from '../core/errors.ts';
import { resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/run/log.ts';
import type { BackendInfo } from '../ml/backend.ts';
import { initRunBackend } from '../ml/loop/run-backend.ts';
import { BlobStreams, M, sendBlobs } from '../protocol/index.ts';
import type { SecretInput } from '../wire/auth.ts';
import { connect, tlsClientFromEnv, type Connection } from '../wire/net/index.ts';
import { CloseCode, type Message } from '../wire/protocol/index.ts';
import { runJob } from './jobs.ts';
import { Lifecycle, type Refusal, type WorkerInMsg } from './lifecycle.ts';
import { RingMember } from './ring-member.ts';
import { TaskFactory } from './tasks.ts';

export interface WorkerOptions {
  coordinatorUrl: string;
  secret: SecretInput;
  name?: string;
  /** interface the ring listener binds (0.0.0.0 in a pod) */
  listenHost: string;
  /** address other workers use to reach this one (pod IP in Kubernetes) */
  advertiseHost: string;
  /** ring listener port; 0 = ephemeral */
  ringPort: number;
  /** keep trying to reach the coordinator this long (at start and after losing it) */
  retryForMs: number;
  log: Logger;
}

/** The largest blob a coordinator may send this worker (a model of 2^30 parameters). */
const MAX_BLOB_FLOATS = 2 ** 30;

/** Ring links use TLS when the worker has a certificate (TTC_TLS_CERT/KEY; TTC_TLS_CA verifies peers, TTC_TLS_INSECURE=1 skips that). */
function ringTlsFromEnv(env: NodeJS.ProcessEnv = process.env): RingTls | undefined {
  if (!env.TTC_TLS_CERT || !env.TTC_TLS_KEY) return undefined;
  return { cert: env.TTC_TLS_CERT, key: env.TTC_TLS_KEY, ...(env.TTC_TLS_CA ? { ca: env.TTC_TLS_CA } : {}), rejectUnauthorized: env.TTC_TLS_INSECURE !== '1' };
}

export class Worker {
  private conn: Connection<(typeof M.toWorker)[number]> | undefined;
  private readonly life = new Lifecycle();
  private member: RingMember | undefined;
  private backend: BackendInfo | undefined;
  private backendAsked: string | undefined;
  private readonly tasks: TaskFactory;
  private readonly blobs = new BlobStreams(MAX_BLOB_FLOATS);
  private queue: Promise<void> = Promise.resolve();
  private stopped: { ok: boolean; reason: string } | undefined;
  readonly name: string;

  constructor(private readonly opts: WorkerOptions) {
    this.name = opts.name ?? `${os.hostname()}-${process.pid}`;
    this.tasks = new TaskFactory(opts.log);
  }

  private get log(): Logger {
    return this.opts.log;
  }

  /** Runs until the coordinator says stop; returns the process exit code. */
  async run(): Promise<number> {
    while (!this.stopped) {
      let conn: Connection<(typeof M.toWorker)[number]>;
      try {
        conn = await connect({
          url: this.opts.coordinatorUrl,
          secret: this.opts.secret,
          role: 'worker',
          name: this.name,
          messages: M.toWorker,
          peerLabel: 'coordinator',
          retryForMs: this.opts.retryForMs,
          tls: tlsClientFromEnv(),
          log: (l) => this.log.info(l),
        });
      } catch (e) {
        this.log.error(`cannot reach the coordinator at ${this.opts.coordinatorUrl}: ${(e as Error).message}`);
        return 1;
      }
      this.conn = conn;
      this.log.info(`worker ${this.name}: connected to coordinator ${this.opts.coordinatorUrl}`);
      const closed = new Promise<void>((resolve) => conn.onClose((info) => {
        if (!this.stopped) this.log.warn(`lost the coordinator (code ${info.code}${info.reason ? `: ${info.reason}` : ''}); dropping the ring and reconnecting`);
        resolve();
      }));
      conn.onFrame((msg) => {
        // A reset or stop interrupts a running step at once (its ring is closed, so a collective
        // blocked on a dead peer fails now instead of at its timeout); the rest waits its turn.
        if ((msg.t === 'coord.reset' || msg.t === 'coord.stop') && this.life.state === 'stepping') void this.member?.ring.close();
        this.queue = this.queue.then(() => this.handle(msg)).catch((e) => this.fatal(e as Error));
      });
      conn.send(M.Register, { name: this.name, pid: process.pid, advertiseHost: this.opts.advertiseHost, ringPort: this.opts.ringPort });
      await closed;
      await this.queue;
      await this.leaveFormation();
      this.blobs.dropPrefix('');
    }
    return this.stopped.ok ? 0 : 1;
  }

  /**
   * Leaves for good (SIGTERM from Kubernetes or a supervisor, Ctrl-C): the ring is closed, so a
   * step in flight ends now, and the coordinator sees the worker go at once (1001, going away)
   * instead of at its heartbeat timeout; `run()` then returns 0.
   */
  leave(reason: string): void {
    if (this.stopped) return;
    this.stopped = { ok: true, reason };
    void this.member?.ring.close();
    this.conn?.close(CloseCode.GOING_AWAY, reason.slice(0, 120));
  }

  private fatal(e: Error): void {
    // A bug ends this worker: retrying would fail the same way.
    this.log.error(`worker ${this.name}: ${e.stack ?? e.message}`);
    this.stopped = { ok: false, reason: e.message };
    this.conn?.fail(CloseCode.INTERNAL, `worker error: ${e.message}`.slice(0, 120));
  }

  private send<D extends (typeof M.fromWorker)[number]>(def: D, fields: Omit<Message<D>, 'v' | 't'>): void {
    this.conn?.send(def, fields as never);
  }

  private refuse(msg: WorkerInMsg, r: Refusal): void {
    this.log.warn(`refusing ${msg.t}: ${r.reason} (${r.code})`);
    const formation = this.life.formation ?? ('formation' in msg ? msg.formation : undefined);
    this.send(M.WorkerRefused, { code: r.code, refused: msg.t, reason: r.reason.slice(0, 2000), ...(formation !== undefined ? { formation } : {}) });
  }

  private async leaveFormation(): Promise<void> {
    const m = this.member;
    this.member = undefined;
    if (m) {
      this.blobs.dropPrefix(`load/${m.formation}`);
      await m.close();
    }
    if (this.life.state !== 'stopped') this.life.to('idle');
  }

  private async handle(msg: WorkerInMsg): Promise<void> {
    const refusal = this.life.check(msg);
    if (refusal) return this.refuse(msg, refusal);
    switch (msg.t) {
      case 'coord.assign':
        return this.assign(msg);
      case 'coord.ring-connect':
        return this.ringOp(msg, 0, async (m) => {
          await m.connect({ host: msg.host, port: msg.port });
          this.life.to('ring-up');
          this.send(M.RingUp, { formation: m.formation });
        });
      case 'coord.blob': {
        // Load parts (ring-up, or loaded: a restore; rank 0) belong to this formation's load stream; job inputs (idle) to a job's.
        const expected = this.life.state === 'ring-up' || this.life.state === 'loaded' ? `load/${this.life.formation}` : 'job/';
        if (!msg.stream.startsWith(expected)) return this.refuse(msg, { code: 'TTC_ERR_UNEXPECTED_MESSAGE', reason: `a blob of stream "${msg.stream}" in state "${this.life.state}" (expected ${expected}…)` });
        try {
          this.blobs.add(msg);
        } catch (e) {
          if (!isTtcError(e)) throw e;
          this.refuse(msg, { code: e.code, reason: e.message });
        }
        return;
      }
      case 'coord.load':
        return this.ringOp(msg, 0, async (m) => {
          await m.load(this.blobs.take(`load/${m.formation}`), msg);
          this.life.to('loaded');
          this.send(M.Loaded, { formation: m.formation });
        });
      case 'coord.step':
        return this.stepping(msg, msg.step, async (m) => {
          const r = await m.loaded.step(msg.step, msg.lr, { epoch: msg.epoch, offset: msg.offset });
          this.send(M.StepDone, { formation: m.formation, step: msg.step, loss: r.loss, gradNorm: Number.isFinite(r.gradNorm) ? r.gradNorm : null, computeMs: r.computeMs, ...(r.readBackMs !== undefined ? { readBackMs: r.readBackMs } : {}), reduceMs: r.reduceMs, applyMs: r.applyMs, commMs: r.commMs, hiddenMs: r.hiddenMs });
        });
      case 'coord.calibrate':
        return this.stepping(msg, 0, async (m) => {
          const t0 = performance.now();
          await m.loaded.calibrate(msg.count, { epoch: msg.epoch, offset: msg.offset });
          this.send(M.Calibrated, { formation: m.formation, seconds: (performance.now() - t0) / 1000 });
        });
      case 'coord.eval':
        return this.stepping(msg, msg.step, async (m) => {
          const e = await m.loaded.evaluate(msg.step, msg.split ?? 'dev');
          this.send(M.EvalDone, { formation: m.formation, step: msg.step, ...e });
        });
      case 'coord.hash':
        return this.stepping(msg, msg.step, async (m) => this.send(M.ParamHash, { formation: m.formation, step: msg.step, hash: await m.loaded.hash() }));
      case 'coord.state':
        return this.stepping(msg, msg.step, async (m) => {
          // every rank takes part (a sharded optimizer's moments are all-gathered); rank 0 sends them
          const { weights, m: mom1, v, t } = await m.loaded.state();
          if (m.opts.rank === 0) await sendBlobs(this.conn!, `state/${m.formation}/${msg.step}`, { weights, m: mom1, v });
          this.send(M.StateDone, { formation: m.formation, step: msg.step, adamT: t });
        });
      case 'coord.reset':
        if (this.life.formation !== undefined && this.life.formation <= msg.formation) {
          this.log.warn(`leaving ring formation ${this.life.formation}: ${msg.reason}`);
          await this.leaveFormation();
        }
        return;
      case 'coord.job':
        return this.job(msg);
      case 'coord.stop':
        this.stopped = { ok: msg.ok, reason: msg.reason };
        this.log.info(`coordinator: stop (${msg.reason})`);
        await this.leaveFormation();
        this.life.to('stopped');
        this.conn?.close(CloseCode.NORMAL, 'stopped');
        return;
    }
  }

  /**
   * Runs a ring operation. A collective failure (a dead or stalled peer) is reported to the
   * coordinator, naming the culprit; another coded error (a state that does not fit the task, a
   * batch that does not split) refuses the message; anything else is a bug.
   */
  private async ringOp(msg: WorkerInMsg, step: number, body: (m: RingMember) => Promise<void>): Promise<void> {
    const m = this.member!;
    try {
      await body(m);
    } catch (e) {
      if (!isTtcError(e)) throw e;
      if (this.member !== m) return; // the formation was left meanwhile (a reset interrupted it)
      if (!(e instanceof CollectiveError)) return this.refuse(msg, { code: e.code, reason: e.message });
      this.log.warn(`formation ${m.formation}: ${e.message}`);
      this.send(M.StepFailed, { formation: m.formation, step, code: e.code, reason: e.message.slice(0, 2000), ...(e.failedRank !== undefined ? { failedRank: e.failedRank } : {}) });
    }
  }

  /** A step (or evaluation, hash, state transfer) of the loaded replica: state `stepping` while it runs. */
  private async stepping(msg: WorkerInMsg, step: number, body: (m: RingMember) => Promise<void>): Promise<void> {
    this.life.to('stepping');
    try {
      await this.ringOp(msg, step, body);
    } finally {
      if (this.life.state === 'stepping') this.life.to('loaded');
    }
  }

  private async assign(msg: Message<typeof M.Assign>): Promise<void> {
    let member: RingMember;
    try {
      const config = resolveConfig(JSON.parse(msg.config));
      const backend = await this.ensureBackend(config);
      const task = await this.tasks.create(config, msg.task);
      member = await RingMember.open({
        formation: msg.formation,
        rank: msg.rank,
        worldSize: msg.worldSize,
        ringId: msg.ringId,
        config,
        task,
        listen: { host: this.opts.listenHost, port: this.opts.ringPort },
        secret: this.opts.secret,
        tls: ringTlsFromEnv(),
        log: this.log,
      });
      this.member = member;
      this.life.to('assigned', msg.formation);
      this.log.info(`formation ${msg.formation}: rank ${msg.rank} of ${msg.worldSize}, ${msg.task.kind} task, ring listener on ${this.opts.advertiseHost}:${member.ring.port}`);
      this.send(M.RingReady, { formation: msg.formation, host: this.opts.advertiseHost, port: member.ring.port, backend: `${backend.name}: ${backend.detail}`.slice(0, 300), trainCount: task.trainCount });
    } catch (e) {
      // A bad assignment (an invalid config, a backend this machine lacks, data it cannot build) is refused, named; a bug is fatal.
      if (!isTtcError(e) && !(e instanceof SyntaxError)) throw e;
      this.refuse(msg, { code: isTtcError(e) ? e.code : 'TTC_ERR_CONFIG', reason: `cannot take formation ${msg.formation}: ${(e as Error).message}` });
    }
  }

  /** The compute backend, started once per process from the first config this worker receives. */
  private async ensureBackend(config: Config): Promise<BackendInfo> {
    if (!this.backend) {
      this.backend = await initRunBackend(config);
      this.backendAsked = config.backend;
      for (const l of this.backend.log) this.log.info(`backend: ${l}`);
    } else if (config.backend !== this.backendAsked && config.backend !== 'auto' && config.backend !== this.backend.name) {
      // tfjs holds one backend per process: a later run of a run server cannot switch it.
      this.log.warn(`this run asks for backend "${config.backend}", but this worker process already runs "${this.backend.name}" (chosen for an earlier run): it stays; restart the worker to change it`);
    }
    if (config.model.precision !== this.backend.precision) {
      // the matmul kernels are process-wide, like the backend
      this.log.warn(`this run asks for model.precision "${config.model.precision}", but this worker process runs "${this.backend.precision}" (set for an earlier run or unavailable here): it stays; restart the worker to change it`);
    }
    return this.backend;
  }

  private async job(msg: Message<typeof M.Job>): Promise<void> {
    const inputs = this.blobs.take(`job/${msg.jobId}`);
    const t0 = Date.now();
    try {
      const config = resolveConfig(JSON.parse(msg.job.config));
      await this.ensureBackend(config);
      const result = await runJob(msg.job, config, inputs, this.tasks);
      this.send(M.JobDone, { jobId: msg.jobId, result });
      this.log.info(`job ${msg.jobId} (${msg.job.kind}) done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      // A job that fails is reported, not fatal: the coordinator decides whether to retry it elsewhere.
      const code: ErrorCode | undefined = isTtcError(e) ? e.code : undefined;
      this.log.warn(`job ${msg.jobId} (${msg.job.kind}) failed: ${(e as Error).message}`);
      this.send(M.JobFailed, { jobId: msg.jobId, reason: (e as Error).message.slice(0, 2000), ...(code ? { code } : {}) });
    }
  }
}
