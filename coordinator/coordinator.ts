/**
 * The coordinator: accepts authenticated workers, forms them into a ring, drives the budgeted
 * run step by step, and owns the budget, the metrics and the checkpoints. It never computes
 * gradients. When a worker dies or stalls, the failure is named, that worker is dropped, and the
 * ring is re-formed from the remaining (or newly joined) workers, resuming from the last
 * checkpoint: at most one checkpoint interval is lost, and the budget counts each step once.
 */
import fs from 'node:fs';
import type { TlsServerFiles } from '../wire/net/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import { WorkerFailure, WorkerRegistry, type ToWorker, type WorkerEntry, type WorkerMsg } from './registry.ts';
import { fetchState, formRing, loadState, type Collect } from './ring-formation.ts';
import * as M from '../protocol/messages.ts';
import { trainSeedOf, type Config } from '../core/config/schema.ts';
import { paramLayout, type ParamLayout } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { RunController, modelDims, type RunSummary } from '../ml/train/controller.ts';
import { advancePosition } from '../ml/data/batches.ts';
import { loadLatestCheckpoint, saveCheckpoint, type TrainingState } from '../ml/checkpoint/checkpoint.ts';
import { MetricsWriter } from '../core/run/metrics.ts';
import type { RunDir } from '../core/run/rundir.ts';
import type { Logger } from '../core/run/log.ts';
import type { Progress } from '../core/run/progress.ts';
import type { SecretInput } from '../wire/auth.ts';
import { TtcError } from '../core/errors.ts';

/** The run cannot continue (parameter divergence, no workers): stop everything. */
export class RunError extends TtcError {
  override name = 'RunError';
  constructor(message: string, options?: ErrorOptions) {
    super('TTC_ERR_RUN', message, options);
  }
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
  /**
   * A run server's registry, shared by its runs (host/port/tls are then unused): the workers stay
   * connected after the run (they get a reset, not a stop) and wait for the next one.
   */
  registry?: WorkerRegistry;
  /** ring formation numbers unique across the runs of one server (workers ignore stale ones) */
  nextFormation?: () => number;
  /** aborts the run between steps (`ttc cancel`); the last checkpoint stays on disk */
  signal?: AbortSignal;
}

export class Coordinator {
  private readonly reg: WorkerRegistry;
  private formation = 0;
  private members: WorkerEntry[] = [];
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
    this.reg = opts.registry ?? new WorkerRegistry({ secret: opts.secret, host: opts.host, port: opts.port, tls: opts.tls, name: run.id, log, status: () => this.status(), phase: () => this.phase });
    this.layout = paramLayout(modelDims(config));
    const ckpt = loadLatestCheckpoint(run.dir, this.layout, (m) => log.warn(m));
    if (ckpt) {
      this.snapshot = { weights: ckpt.weights, m: ckpt.optimizer.m, v: ckpt.optimizer.v, adamT: ckpt.optimizer.t, state: ckpt.state };
      log.info(`resuming run ${run.id} from its checkpoint at step ${ckpt.state.step}/${ckpt.state.totalSteps}`);
    }
    this.ctl = new RunController(config, ckpt?.state.worldSize ?? config.dist.minWorkers, new MetricsWriter(run.metricsFile), opts.progress, ckpt?.state);
    this.snapshot ??= {
      weights: initialWeights(this.layout, trainSeedOf(config), config.model.initStd),
      m: new Float32Array(this.layout.total),
      v: new Float32Array(this.layout.total),
      adamT: 0,
      state: structuredClone(this.ctl.state),
    };
  }

  get url(): string {
    return this.reg.url;
  }

  async listen(): Promise<string> {
    const url = this.opts.registry ? this.reg.url : await this.reg.listen();
    this.phase = 'waiting for workers';
    return url;
  }

  private who(w: WorkerEntry): string {
    return this.reg.who(w);
  }

  /** collect() that also fails on a worker's report of a broken ring in this formation. */
  private collect<T>(members: WorkerEntry[], what: string, pick: (msg: WorkerMsg) => T | undefined, timeoutMs: number): Promise<Map<WorkerEntry, T>> {
    const formation = this.formation;
    return this.reg.collect(members, what, pick, timeoutMs, (w, msg) => {
      if (msg.t !== 'coord.step-failed' || msg.formation !== formation) return undefined;
      const blamed = msg.failedRank !== undefined ? members.find((m) => m.rank === msg.failedRank) : undefined;
      return new WorkerFailure(`${this.who(w)} reports during ${what}: ${msg.reason}`, blamed ? [blamed] : []);
    });
  }

  private async waitForWorkers(): Promise<WorkerEntry[]> {
    const { waitForWorkersSeconds, initialWorkers, minWorkers, maxWorkers } = this.opts.config.dist;
    // The first ring waits for dist.initialWorkers; after a failure the run goes on with dist.minWorkers.
    const min = this.formation === 0 && initialWorkers > 0 ? Math.max(initialWorkers, minWorkers) : minWorkers;
    this.phase = 'waiting for workers';
    let all: WorkerEntry[];
    try {
      all = await this.reg.waitFor(min, waitForWorkersSeconds, this.opts.signal);
    } catch (e) {
      throw new RunError(`${(e as Error).message} (dist.minWorkers / dist.initialWorkers)`);
    }
    return maxWorkers > 0 ? all.slice(0, maxWorkers) : all;
  }

  private broadcast<D extends ToWorker>(members: WorkerEntry[], def: D, fields: (w: WorkerEntry) => Omit<Message<D>, 'v' | 't'>): void {
    this.reg.broadcast(members, def, fields);
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
          if (!(e instanceof WorkerFailure)) throw e;
          this.failures.push(e.message);
          log.error(`ring formation ${this.formation} failed: ${e.message}`);
          for (const w of e.culprits) {
            log.warn(`dropping ${this.who(w)}`);
            this.reg.drop(w, 'dropped by the coordinator after a failure');
          }
          const survivors = this.members.filter((w) => this.reg.workers.has(w.conn));
          this.broadcast(survivors, M.Reset, () => ({ formation: this.formation, reason: `re-forming the ring: ${e.message}`.slice(0, 1000) }));
          log.warn(`re-forming the ring from the checkpoint at step ${this.snapshot.state.step} (steps after it are redone; the budget counts them once)`);
        }
      }
      this.phase = 'done';
      this.endWorkers('run complete', true);
      return this.finish(true);
    } catch (e) {
      this.phase = `failed: ${(e as Error).message}`;
      this.endWorkers(`run failed: ${(e as Error).message}`, false);
      throw e;
    } finally {
      this.opts.progress.stop();
    }
  }

  /** A single-run coordinator stops its workers; a run server's workers leave the ring and wait for the next run. */
  private endWorkers(reason: string, ok: boolean): void {
    const all = [...this.reg.workers.values()];
    if (this.opts.registry) {
      this.broadcast(all, M.Reset, () => ({ formation: this.formation, reason: reason.slice(0, 1000) }));
      for (const w of all) w.rank = undefined;
      return;
    }
    if (ok) this.reg.quiet = true;
    this.broadcast(all, M.Stop, () => ({ reason: reason.slice(0, 1000), ok }));
  }

  private checkCancelled(): void {
    const signal = this.opts.signal;
    if (signal?.aborted) throw new RunError(`cancelled${signal.reason ? `: ${String(signal.reason)}` : ''} (the last checkpoint is at step ${this.snapshot.state.step})`);
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
    this.checkCancelled();
    this.formation = this.opts.nextFormation ? this.opts.nextFormation() : this.formation + 1;
    this.members = members;
    const formation = this.formation;
    this.phase = `forming ring ${formation} with ${N} worker(s)`;
    const collect: Collect = (m, what, pick, t) => this.collect(m, what, pick, t);
    // Workers load data and start their backend here: allow for a first-time tokenizer build.
    const ready = await formRing(this.reg, collect, members, { formation, ringId: `${this.opts.run.id}/f${formation}`, config: JSON.stringify(config), setupTimeoutMs: Math.max(timeout, 180_000), timeoutMs: timeout }, log);
    const counts = new Set([...ready.values()].map((r) => r.trainSequences));
    if (counts.size !== 1) throw new RunError(`workers disagree on the training data (${[...counts].join(' vs ')} sequences): same config, different corpus files?`);
    this.trainSequences = [...counts][0];
    this.backendSeen = members[0].backend ?? '';
    // Every worker starts from the same bytes: the last checkpoint (or the initial weights).
    const snap = this.snapshot;
    loadState(this.reg, members, formation, snap);
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
      this.checkCancelled();
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
    this.unigramEntropy = e.unigramEntropy ?? NaN;
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
    const state = structuredClone(this.ctl.state);
    const got = await fetchState((m, what, pick, t) => this.collect(m, what, pick, t), w, formation, step, this.layout.total, timeout);
    if ('badPart' in got) throw new WorkerFailure(`${this.who(w)} sent a state part outside the model: ${got.badPart}`, [w]);
    const snap: Snapshot = { ...got, state };
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
      workers: [...this.reg.workers.values()].map((w) => ({ name: w.name, rank: this.members.includes(w) ? w.rank : null, remote: w.conn.remote, backend: w.backend ?? null })),
      step: s.step,
      totalSteps: s.totalSteps,
      budget: this.opts.config.budget,
      budgetFraction: this.ctl.budgetFraction(),
      etaSeconds: this.ctl.etaSeconds() ?? null,
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
    if (!this.opts.registry) await this.reg.close();
  }
}
