/**
 * The coordinator: accepts authenticated workers, forms them into a ring, drives the budgeted
 * run step by step, and owns the budget, the metrics and the checkpoints. It never computes
 * gradients. When a worker dies or stalls, the failure is named, that worker is dropped, and the
 * ring is re-formed from the remaining (or newly joined) workers, resuming from the last
 * checkpoint: at most one checkpoint interval is lost, and the budget counts each step once.
 */
import fs from 'node:fs';
import { listen, type Connection, type PeerServer, type TlsServerFiles } from '../shared/net/index.ts';
import { CloseCode, type Message } from '../shared/protocol/index.ts';
import * as M from '../shared/protocol/training.ts';
import type { Config } from '../shared/config/schema.ts';
import { paramLayout, type ParamLayout } from '../shared/model/spec.ts';
import { initialWeights } from '../shared/model/weights.ts';
import { RunController, modelDims, type RunSummary } from '../shared/train/controller.ts';
import { advancePosition } from '../shared/data/batches.ts';
import { loadLatestCheckpoint, saveCheckpoint, type TrainingState } from '../shared/checkpoint/checkpoint.ts';
import { MetricsWriter } from '../shared/run/metrics.ts';
import type { RunDir } from '../shared/run/rundir.ts';
import type { Logger } from '../shared/run/log.ts';
import type { Progress } from '../shared/run/progress.ts';
import type { SecretInput } from '../shared/auth.ts';

type FromWorker = (typeof M.fromWorker)[number] | (typeof M.fromCli)[number];
type WorkerMsg = Message<FromWorker>;

interface WorkerEntry {
  id: number;
  name: string;
  conn: Connection<FromWorker>;
  advertiseHost: string;
  rank?: number;
  backend?: string;
}

/** A ring formation failed: a worker died, stalled or reported a broken ring. `culprits` are dropped. */
export class FormationError extends Error {
  override name = 'FormationError';
  constructor(message: string, readonly culprits: WorkerEntry[]) {
    super(message);
  }
}

/** The run cannot continue (parameter divergence, no workers): stop everything. */
export class RunError extends Error {
  override name = 'RunError';
}

/** The last checkpointed state: what a re-formed ring restarts from. */
interface Snapshot {
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
  adamT: number;
  state: TrainingState;
}

export interface CoordinatorOptions {
  config: Config;
  run: RunDir;
  secret: SecretInput;
  host: string;
  port: number;
  tls?: TlsServerFiles;
  log: Logger;
  progress: Progress;
}

export class Coordinator {
  private server: PeerServer<FromWorker> | undefined;
  private readonly workers = new Map<Connection<FromWorker>, WorkerEntry>();
  private nextWorkerId = 1;
  private formation = 0;
  private members: WorkerEntry[] = [];
  private readonly frameListeners = new Set<(w: WorkerEntry, msg: WorkerMsg) => void>();
  private readonly closeListeners = new Set<(w: WorkerEntry, why: string) => void>();
  private workersChanged: () => void = () => {};
  private readonly layout: ParamLayout;
  private readonly ctl: RunController;
  private snapshot: Snapshot;
  private trainSequences = 0;
  private phase = 'starting';
  private backendSeen = '';
  private unigramEntropy = NaN;
  private lastStepSeconds = NaN;
  private readonly startedAt = Date.now();
  readonly failures: string[] = [];

  constructor(private readonly opts: CoordinatorOptions) {
    const { config, run, log } = opts;
    this.layout = paramLayout(modelDims(config));
    const ckpt = loadLatestCheckpoint(run.dir, this.layout, (m) => log.warn(m));
    if (ckpt) {
      this.snapshot = { weights: ckpt.weights, m: ckpt.optimizer.m, v: ckpt.optimizer.v, adamT: ckpt.optimizer.t, state: ckpt.state };
      log.info(`resuming run ${run.id} from its checkpoint at step ${ckpt.state.step}/${ckpt.state.totalSteps}`);
    }
    this.ctl = new RunController(config, ckpt?.state.worldSize ?? config.dist.minWorkers, new MetricsWriter(run.metricsFile), opts.progress, ckpt?.state);
    this.snapshot ??= {
      weights: initialWeights(this.layout, config.seed, config.model.initStd),
      m: new Float32Array(this.layout.total),
      v: new Float32Array(this.layout.total),
      adamT: 0,
      state: structuredClone(this.ctl.state),
    };
  }

  get url(): string {
    return this.server?.url ?? '';
  }

  async listen(): Promise<string> {
    this.server = await listen<FromWorker>({
      host: this.opts.host,
      port: this.opts.port,
      secret: this.opts.secret,
      role: 'coordinator',
      name: this.opts.run.id,
      messages: [...M.fromWorker, ...M.fromCli],
      tls: this.opts.tls,
      log: (l) => this.opts.log.info(l),
      onConnection: (conn, hello) => this.onConnection(conn, hello.role, hello.name),
      http: (req, res) => this.onHttp(req.url ?? '/', res),
    });
    this.phase = 'waiting for workers';
    return this.server.url;
  }

  /** GET /healthz: liveness (200 while the process serves); GET /readyz: 200 once training, 503 before. No run data without the secret. */
  private onHttp(url: string, res: import('node:http').ServerResponse): void {
    const path = url.split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, phase: this.phase }));
    } else if (path === '/readyz') {
      const ready = this.phase !== 'starting';
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, phase: this.phase }));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: use a WebSocket client (ttc worker / ttc status), or GET /healthz\n');
    }
  }

  private onConnection(conn: Connection<FromWorker>, role: string, name: string): void {
    const log = this.opts.log;
    if (role === 'cli') {
      conn.onFrame((msg) => {
        if (msg.t !== 'coord.status-request') return conn.fail(CloseCode.UNEXPECTED, `a cli may only ask for status, not ${msg.t}`);
        conn.send(M.StatusReply, { status: JSON.stringify(this.status()) });
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
        this.workersChanged();
        return;
      }
      if (!entry) return conn.fail(CloseCode.UNEXPECTED, `${msg.t} before coord.register`);
      if (msg.t === 'coord.status-request') return conn.fail(CloseCode.UNEXPECTED, 'workers do not ask for status');
      for (const l of this.frameListeners) l(entry, msg);
    });
    conn.onClose((info) => {
      const entry = this.workers.get(conn);
      if (!entry) return;
      this.workers.delete(conn);
      const why = `connection closed (code ${info.code}${info.reason ? `: ${info.reason}` : ''})`;
      if (this.phase !== 'done') log.warn(`worker "${entry.name}"${entry.rank !== undefined ? ` (rank ${entry.rank})` : ''} left: ${why}`);
      for (const l of this.closeListeners) l(entry, why);
      this.workersChanged();
    });
    void name;
  }

  private who(w: WorkerEntry): string {
    return `worker "${w.name}"${w.rank !== undefined ? ` (rank ${w.rank}, ${w.conn.remote})` : ''}`;
  }

  /**
   * Waits until every member sent a frame that `pick` accepts. Rejects with a FormationError
   * naming the worker when a member disconnects, reports a broken ring, or stays silent past the timeout.
   */
  private collect<T>(members: WorkerEntry[], what: string, pick: (msg: WorkerMsg) => T | undefined, timeoutMs: number): Promise<Map<WorkerEntry, T>> {
    const got = new Map<WorkerEntry, T>();
    const formation = this.formation;
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.frameListeners.delete(onFrame);
        this.closeListeners.delete(onClose);
        if (err) reject(err);
        else resolve(got);
      };
      const onFrame = (w: WorkerEntry, msg: WorkerMsg) => {
        if (!members.includes(w)) return;
        if (msg.t === 'coord.step-failed' && msg.formation === formation) {
          const blamed = msg.failedRank !== undefined ? members.find((m) => m.rank === msg.failedRank) : undefined;
          return done(new FormationError(`${this.who(w)} reports during ${what}: ${msg.reason}`, blamed ? [blamed] : []));
        }
        const value = pick(msg);
        if (value === undefined) return;
        got.set(w, value);
        if (got.size === members.length) done();
      };
      const onClose = (w: WorkerEntry, why: string) => {
        if (members.includes(w)) done(new FormationError(`${this.who(w)} disconnected during ${what}: ${why}`, [w]));
      };
      const timer = setTimeout(() => {
        const silent = members.filter((m) => !got.has(m));
        done(new FormationError(`no answer to ${what} within ${(timeoutMs / 1000).toFixed(0)} s from ${silent.map((w) => this.who(w)).join(', ')}: stalled`, silent));
      }, timeoutMs);
      this.frameListeners.add(onFrame);
      this.closeListeners.add(onClose);
      for (const m of members) {
        if (!this.workers.has(m.conn)) return done(new FormationError(`${this.who(m)} is gone`, [m]));
      }
    });
  }

  private async waitForWorkers(): Promise<WorkerEntry[]> {
    const { waitForWorkersSeconds, initialWorkers } = this.opts.config.dist;
    // The first ring waits for dist.initialWorkers; after a failure the run goes on with dist.minWorkers.
    const minWorkers = this.formation === 0 && initialWorkers > 0 ? Math.max(initialWorkers, this.opts.config.dist.minWorkers) : this.opts.config.dist.minWorkers;
    const deadline = waitForWorkersSeconds > 0 ? Date.now() + waitForWorkersSeconds * 1000 : Infinity;
    this.phase = 'waiting for workers';
    if (this.workers.size < minWorkers) this.opts.log.info(`waiting for ${minWorkers} worker(s) (${this.workers.size} connected)`);
    while (this.workers.size < minWorkers) {
      const left = deadline - Date.now();
      if (left <= 0) throw new RunError(`only ${this.workers.size} of the ${minWorkers} workers (dist.minWorkers) connected within ${waitForWorkersSeconds} s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.workersChanged = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    // Give workers that connect together a moment to register, so one ring takes them all.
    await new Promise((r) => setTimeout(r, 300));
    const all = [...this.workers.values()].sort((a, b) => a.id - b.id);
    const max = this.opts.config.dist.maxWorkers;
    return max > 0 ? all.slice(0, max) : all;
  }

  private broadcast<D extends (typeof M.toWorker)[number]>(members: WorkerEntry[], def: D, fields: (w: WorkerEntry) => Omit<Message<D>, 'v' | 't'>): void {
    for (const w of members) w.conn.send(def, fields(w) as never);
  }

  /** Runs the whole budget; returns the summary. */
  async run(): Promise<RunSummary> {
    const { log } = this.opts;
    try {
      for (;;) {
        const members = await this.waitForWorkers();
        try {
          await this.trainWith(members);
          break;
        } catch (e) {
          if (!(e instanceof FormationError)) throw e;
          this.failures.push(e.message);
          log.error(`ring formation ${this.formation} failed: ${e.message}`);
          for (const w of e.culprits) {
            log.warn(`dropping ${this.who(w)}`);
            w.conn.fail(CloseCode.ABORTED, 'dropped by the coordinator after a failure');
            w.conn.terminate();
            this.workers.delete(w.conn);
          }
          const survivors = this.members.filter((w) => this.workers.has(w.conn));
          this.broadcast(survivors, M.Reset, () => ({ formation: this.formation, reason: `re-forming the ring: ${e.message}`.slice(0, 1000) }));
          log.warn(`re-forming the ring from the checkpoint at step ${this.snapshot.state.step} (steps after it are redone; the budget counts them once)`);
        }
      }
      this.phase = 'done';
      this.broadcast([...this.workers.values()], M.Stop, () => ({ reason: 'run complete', ok: true }));
      return this.finish(true);
    } catch (e) {
      this.phase = `failed: ${(e as Error).message}`;
      this.broadcast([...this.workers.values()], M.Stop, () => ({ reason: `run failed: ${(e as Error).message}`.slice(0, 1000), ok: false }));
      throw e;
    } finally {
      this.opts.progress.stop();
    }
  }

  private finish(completed: boolean): RunSummary {
    const summary = this.ctl.summary(this.opts.run, { name: this.backendSeen.split(':')[0] ?? '', detail: this.backendSeen }, this.unigramEntropy, completed);
    fs.writeFileSync(this.opts.run.summaryFile, `${JSON.stringify({ ...summary, failures: this.failures }, null, 2)}\n`);
    return summary;
  }

  private async trainWith(members: WorkerEntry[]): Promise<void> {
    const { config, log } = this.opts;
    const timeout = config.dist.stepTimeoutSeconds * 1000;
    const N = members.length;
    this.formation += 1;
    this.members = members;
    const formation = this.formation;
    this.phase = `forming ring ${formation} with ${N} worker(s)`;
    members.forEach((w, rank) => (w.rank = rank));
    log.info(`formation ${formation}: ${members.map((w) => `rank ${w.rank} = "${w.name}"`).join(', ')}`);
    const configJson = JSON.stringify(config);
    this.broadcast(members, M.Assign, (w) => ({ formation, rank: w.rank!, worldSize: N, ringId: `${this.opts.run.id}/f${formation}`.slice(0, 128), config: configJson }));
    // Workers load data and start their backend here: allow for a first-time tokenizer build.
    const ready = await this.collect(members, 'ring set-up', (m) => (m.t === 'coord.ring-ready' && m.formation === formation ? m : undefined), Math.max(timeout, 180_000));
    const counts = new Set([...ready.values()].map((r) => r.trainSequences));
    if (counts.size !== 1) throw new RunError(`workers disagree on the training data (${[...counts].join(' vs ')} sequences): same config, different corpus files?`);
    this.trainSequences = [...counts][0];
    for (const w of members) w.backend = ready.get(w)!.backend;
    this.backendSeen = members[0].backend ?? '';
    this.broadcast(members, M.RingConnect, (w) => {
      const next = ready.get(members[(w.rank! + 1) % N])!;
      return { formation, host: next.host, port: next.port };
    });
    await this.collect(members, 'ring connection', (m) => (m.t === 'coord.ring-up' && m.formation === formation ? true : undefined), timeout);
    log.info(`formation ${formation}: ring of ${N} up (${members.map((w) => w.backend).filter((b, i, a) => a.indexOf(b) === i).join('; ')})`);

    // Every worker starts from the same bytes: the last checkpoint (or the initial weights).
    const snap = this.snapshot;
    for (const [kind, arr] of [['weights', snap.weights], ['m', snap.m], ['v', snap.v]] as const) {
      for (let off = 0; off < arr.length; off += M.STATE_PART_FLOATS) {
        const data = arr.subarray(off, Math.min(arr.length, off + M.STATE_PART_FLOATS));
        this.broadcast(members, M.LoadPart, () => ({ formation, kind, offset: off, data }));
      }
    }
    this.broadcast(members, M.LoadDone, () => ({ formation, adamT: snap.adamT, total: this.layout.total }));
    this.ctl.restore(snap.state, N);
    this.phase = 'training';
    const B = config.train.batchSize;

    if (this.ctl.state.step === 0 && !Number.isFinite(this.ctl.lastValLoss)) {
      const v = await this.evaluate(members[0], timeout);
      this.ctl.recordInitialEval(v);
      log.info(`step 0: validation loss ${v.toFixed(4)} (baselines: uniform ln(vocab) = ${Math.log(config.model.vocab).toFixed(4)}, unigram frequencies = ${this.unigramEntropy.toFixed(4)})`);
    }
    if (this.ctl.needsCalibration()) {
      const n = config.budget.calibrationSteps;
      const pos = this.ctl.state.dataPosition;
      this.broadcast(members, M.Calibrate, () => ({ formation, count: n, epoch: pos.epoch, offset: pos.offset }));
      const t0 = performance.now();
      await this.collect(members, 'calibration', (m) => (m.t === 'coord.calibrated' && m.formation === formation ? m.seconds : undefined), timeout * n);
      const elapsed = (performance.now() - t0) / 1000;
      this.ctl.calibrate(elapsed / n, elapsed, n * this.ctl.flopsPerStep);
      log.info(`seconds budget: calibrated ${(elapsed / n).toFixed(3)} s/step → schedule fitted to ${this.ctl.state.totalSteps} steps`);
    }

    for (let plan = this.ctl.next(); plan; plan = this.ctl.next()) {
      const step = plan.step;
      const t0 = performance.now();
      this.broadcast(members, M.Step, () => ({ formation, step, lr: plan!.lr, epoch: plan!.dataPosition.epoch, offset: plan!.dataPosition.offset }));
      const done = await this.collect(members, `step ${step + 1}`, (m) => (m.t === 'coord.step-done' && m.formation === formation && m.step === step ? m : undefined), timeout);
      const seconds = (performance.now() - t0) / 1000;
      this.lastStepSeconds = seconds;
      const results = members.map((w) => done.get(w)!);
      const loss = results.reduce((a, r) => a + r.loss, 0) / N;
      const row = this.ctl.completeStep(plan, { loss, seconds, gradNorm: results[0].gradNorm, nextPosition: advancePosition(plan.dataPosition, N * B, this.trainSequences) });
      const val = this.ctl.shouldEvaluate() ? await this.evaluate(members[0], timeout) : undefined;
      this.ctl.record(row, val);
      if (this.ctl.isLastStep || this.ctl.state.step % config.dist.hashEvery === 0) await this.checkHashes(members, timeout);
      if (this.ctl.shouldCheckpoint()) await this.checkpoint(members[0], timeout);
    }
  }

  private async evaluate(w: WorkerEntry, timeout: number): Promise<number> {
    const formation = this.formation;
    const step = this.ctl.state.step;
    w.conn.send(M.EvalRequest, { formation, step });
    const r = await this.collect([w], `evaluation at step ${step}`, (m) => (m.t === 'coord.eval-done' && m.formation === formation && m.step === step ? m : undefined), timeout);
    const e = r.get(w)!;
    this.unigramEntropy = e.unigramEntropy;
    return e.loss;
  }

  private async checkHashes(members: WorkerEntry[], timeout: number): Promise<void> {
    const formation = this.formation;
    const step = this.ctl.state.step;
    this.broadcast(members, M.HashRequest, () => ({ formation, step }));
    const hashes = await this.collect(members, `parameter hash at step ${step}`, (m) => (m.t === 'coord.param-hash' && m.formation === formation && m.step === step ? m.hash : undefined), timeout);
    const distinct = new Set(hashes.values());
    if (distinct.size > 1) {
      throw new RunError(`parameters diverged at step ${step}: ${members.map((w) => `rank ${w.rank} ${hashes.get(w)!.slice(0, 12)}`).join(', ')}`);
    }
  }

  /** Fetches weights and optimizer state from rank 0 and writes the checkpoint; it becomes the restart point. */
  private async checkpoint(w: WorkerEntry, timeout: number): Promise<void> {
    const formation = this.formation;
    const step = this.ctl.state.step;
    const total = this.layout.total;
    const snap: Snapshot = { weights: new Float32Array(total), m: new Float32Array(total), v: new Float32Array(total), adamT: 0, state: structuredClone(this.ctl.state) };
    w.conn.send(M.StateRequest, { formation, step });
    const parts = (msg: WorkerMsg): number | undefined => {
      if (!('formation' in msg) || msg.formation !== formation) return undefined;
      if (msg.t === 'coord.state-part' && msg.step === step) {
        if (msg.offset + msg.data.length > total) badPart = `${msg.kind} [${msg.offset}, +${msg.data.length})`;
        else snap[msg.kind].set(msg.data, msg.offset);
        return undefined;
      }
      return msg.t === 'coord.state-done' && msg.step === step ? msg.adamT : undefined;
    };
    let badPart = '';
    const r = await this.collect([w], `state transfer at step ${step}`, parts, timeout);
    if (badPart) throw new FormationError(`${this.who(w)} sent a state part outside the model: ${badPart}`, [w]);
    snap.adamT = r.get(w)!;
    const dir = saveCheckpoint(this.opts.run.dir, this.layout, { dims: modelDims(this.opts.config), weights: snap.weights, optimizer: { m: snap.m, v: snap.v, t: snap.adamT }, state: snap.state });
    this.snapshot = snap;
    this.opts.log.info(`checkpoint: ${dir}`);
  }

  status(): Record<string, unknown> {
    const s = this.ctl.state;
    return {
      runId: this.opts.run.id,
      runDir: this.opts.run.dir,
      phase: this.phase,
      formation: this.formation,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      workers: [...this.workers.values()].map((w) => ({ name: w.name, rank: this.members.includes(w) ? w.rank : null, remote: w.conn.remote, backend: w.backend ?? null })),
      step: s.step,
      totalSteps: s.totalSteps,
      budget: this.opts.config.budget,
      budgetFraction: this.ctl.budgetFraction(),
      flopsUsed: s.flopsUsed,
      secondsUsed: s.secondsUsed,
      tokensSeen: s.tokensSeen,
      trainLoss: this.ctl.lastTrainLoss,
      valLoss: this.ctl.lastValLoss,
      tokensPerSecond: (this.opts.config.train.batchSize * this.opts.config.model.seqLen * s.worldSize) / this.lastStepSeconds,
      lastCheckpointStep: this.snapshot.state.step,
      failures: this.failures,
    };
  }

  async close(): Promise<void> {
    await this.server?.close();
  }
}
