/**
 * The worker process (`ttc worker --coordinator ws://host:port`): registers with the coordinator,
 * joins the ring it is assigned to, and runs what the coordinator asks — training steps
 * (compute gradients → ring all-reduce → apply), evaluation, parameter hashes, state transfers.
 * It never decides the schedule. When the coordinator goes away it drops its ring and reconnects
 * (with retries) so a restarted coordinator finds it again.
 */
import crypto from 'node:crypto';
import os from 'node:os';
import { connect, tlsClientFromEnv, type Connection } from '../wire/net/index.ts';
import { CloseCode, type Message } from '../wire/protocol/index.ts';
import * as M from '../protocol/messages.ts';
import { resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { initBackend, type BackendInfo } from '../ml/backend.ts';
import { paramLayout, type ParamLayout } from '../ml/model/spec.ts';
import { MlmTrainer, type GradientReducer } from '../ml/train/trainer.ts';
import { loadTrainingData, type TrainingData } from '../ml/train/data.ts';
import { modelDims } from '../ml/train/controller.ts';
import { Ring, RingError, type RingTls } from '../collective/ring.ts';
import type { Logger } from '../core/run/log.ts';
import type { SecretInput } from '../wire/auth.ts';
import { BlobAssembler, sendBlobs } from '../protocol/blobs.ts';
import { JobRunner, type EvalSelection } from './jobs.ts';
import { ClassifierTrainer, epochOrder, takeBatch } from '../ml/train/classifier.ts';
import type { EvalContext } from '../compression/eval/index.ts';

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

type InMsg = Message<(typeof M.toWorker)[number]>;

/** Ring links use TLS when the worker has a certificate (TTC_TLS_CERT/KEY; TTC_TLS_CA verifies peers, TTC_TLS_INSECURE=1 skips that). */
function ringTlsFromEnv(env: NodeJS.ProcessEnv = process.env): RingTls | undefined {
  if (!env.TTC_TLS_CERT || !env.TTC_TLS_KEY) return undefined;
  return { cert: env.TTC_TLS_CERT, key: env.TTC_TLS_KEY, ...(env.TTC_TLS_CA ? { ca: env.TTC_TLS_CA } : {}), rejectUnauthorized: env.TTC_TLS_INSECURE !== '1' };
}

const hashWeights = (w: Float32Array) => crypto.createHash('sha256').update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)).digest('hex');

/** Everything tied to one ring formation; replaced on every `assign`. */
interface Formation {
  id: number;
  rank: number;
  worldSize: number;
  config: Config;
  layout: ParamLayout;
  ring: Ring;
  load: { weights: Float32Array; m: Float32Array; v: Float32Array; mask?: Float32Array };
  /** what this ring trains: MLM pretraining on `data`, or fine-tuning on `task` */
  data?: TrainingData;
  task?: { ctx: EvalContext; spec: ClassifyTaskSpec; order?: { epoch: number; order: Int32Array } };
  trainer?: MlmTrainer | ClassifierTrainer;
}

/** A fine-tuning ring's task: the classification set and the global batch order. */
export interface ClassifyTaskSpec {
  classificationSeed: number;
  eval: EvalSelection;
  /** global batch (all workers); each worker takes batchSize / worldSize */
  batchSize: number;
  orderSeed: number;
}

export class Worker {
  private conn: Connection<(typeof M.toWorker)[number]> | undefined;
  private formation: Formation | undefined;
  private backend: BackendInfo | undefined;
  private backendAsked: string | undefined;
  private dataCache: { key: string; data: TrainingData } | undefined;
  private queue: Promise<void> = Promise.resolve();
  private stopped: { ok: boolean; reason: string } | undefined;
  private readonly jobs = new JobRunner();
  private jobInputs = new Map<string, BlobAssembler>();
  readonly name: string;

  constructor(private readonly opts: WorkerOptions) {
    this.name = opts.name ?? `${os.hostname()}-${process.pid}`;
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
        this.queue = this.queue.then(() => this.handle(msg as InMsg)).catch((e) => this.fatal(e as Error));
      });
      conn.send(M.Register, { name: this.name, pid: process.pid, advertiseHost: this.opts.advertiseHost, ringPort: this.opts.ringPort });
      await closed;
      await this.queue;
      await this.leaveFormation();
    }
    return this.stopped.ok ? 0 : 1;
  }

  private fatal(e: Error): void {
    // An internal error (bad assignment, bug) ends this worker: retrying would fail the same way.
    this.log.error(`worker ${this.name}: ${e.stack ?? e.message}`);
    this.stopped = { ok: false, reason: e.message };
    this.conn?.fail(CloseCode.INTERNAL, `worker error: ${e.message}`.slice(0, 120));
  }

  private async leaveFormation(): Promise<void> {
    const f = this.formation;
    this.formation = undefined;
    if (!f) return;
    f.trainer?.dispose();
    await f.ring.close().catch(() => {});
  }

  private current(formation: number): Formation | undefined {
    return this.formation && this.formation.id === formation ? this.formation : undefined;
  }

  private async handle(msg: InMsg): Promise<void> {
    const conn = this.conn!;
    switch (msg.t) {
      case 'coord.assign':
        return this.assign(msg);
      case 'coord.ring-connect': {
        const f = this.current(msg.formation);
        if (!f) return;
        try {
          await f.ring.connect({ host: msg.host, port: msg.port });
          conn.send(M.RingUp, { formation: f.id });
        } catch (e) {
          conn.send(M.StepFailed, { formation: f.id, step: 0, reason: `ring connect failed: ${(e as Error).message}`, failedRank: (e as RingError).failedRank });
        }
        return;
      }
      case 'coord.load-part': {
        const f = this.current(msg.formation);
        if (!f) return;
        if (msg.kind === 'mask') f.load.mask ??= new Float32Array(f.layout.total);
        const target = msg.kind === 'mask' ? f.load.mask! : f.load[msg.kind];
        if (msg.offset + msg.data.length > target.length) throw new Error(`load-part ${msg.kind} [${msg.offset}, +${msg.data.length}) is outside the model (${target.length})`);
        target.set(msg.data, msg.offset);
        return;
      }
      case 'coord.load-done': {
        const f = this.current(msg.formation);
        if (!f) return;
        if (msg.total !== f.layout.total) throw new Error(`coordinator sent a model of ${msg.total} parameters, this config has ${f.layout.total}`);
        f.trainer?.dispose();
        const { config } = f;
        f.trainer = f.task
          ? new ClassifierTrainer(f.task.ctx.trainerOptions, f.task.ctx.numClasses, f.load.weights)
          : new MlmTrainer({ dims: modelDims(config), optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm }, f.load.weights);
        f.trainer.optimizer.setState({ m: Float32Array.from(f.load.m), v: Float32Array.from(f.load.v), t: msg.adamT });
        if (f.load.mask) f.trainer.setMask(Uint8Array.from(f.load.mask));
        return;
      }
      case 'coord.step':
        return this.step(msg);
      case 'coord.calibrate': {
        const f = this.current(msg.formation);
        if (!f?.data || !(f.trainer instanceof MlmTrainer)) return;
        const B = f.config.train.batchSize;
        const batch = f.data.reader.read({ epoch: msg.epoch, offset: msg.offset }, f.rank * B, B);
        const t0 = performance.now();
        try {
          for (let i = 0; i < msg.count; i++) {
            await f.trainer.computeGradients(batch);
            await f.ring.allReduce(f.trainer.grads, 'mean');
          }
        } catch (e) {
          if (!(e instanceof RingError)) throw e;
          conn.send(M.StepFailed, { formation: f.id, step: 0, reason: e.message.slice(0, 2000), failedRank: e.failedRank });
          return;
        }
        conn.send(M.Calibrated, { formation: f.id, seconds: (performance.now() - t0) / 1000 });
        return;
      }
      case 'coord.eval': {
        const f = this.current(msg.formation);
        if (!f?.trainer) return;
        if (f.trainer instanceof ClassifierTrainer && f.task) {
          const devBatches = f.task.ctx.devBatches;
          conn.send(M.EvalDone, { formation: f.id, step: msg.step, loss: await f.trainer.evaluate(devBatches), accuracy: await f.trainer.accuracy(devBatches) });
        } else if (f.trainer instanceof MlmTrainer && f.data) {
          conn.send(M.EvalDone, { formation: f.id, step: msg.step, loss: await f.trainer.evaluate(f.data.valBatches), unigramEntropy: f.data.unigramEntropy });
        }
        return;
      }
      case 'coord.hash': {
        const f = this.current(msg.formation);
        if (!f?.trainer) return;
        conn.send(M.ParamHash, { formation: f.id, step: msg.step, hash: hashWeights(f.trainer.weights) });
        return;
      }
      case 'coord.state':
        return this.sendState(msg);
      case 'coord.reset':
        this.log.warn(`leaving ring formation ${msg.formation}: ${msg.reason}`);
        if (this.formation && this.formation.id <= msg.formation) await this.leaveFormation();
        return;
      case 'coord.job-blob': {
        let a = this.jobInputs.get(msg.jobId);
        if (!a) this.jobInputs.set(msg.jobId, (a = new BlobAssembler()));
        a.add(msg.name, msg.offset, msg.total, msg.data);
        return;
      }
      case 'coord.job':
        return this.runJob(msg);
      case 'coord.stop':
        this.stopped = { ok: msg.ok, reason: msg.reason };
        this.log.info(`coordinator: stop (${msg.reason})`);
        await this.leaveFormation();
        conn.close(CloseCode.NORMAL, 'stopped');
        return;
    }
  }

  private async assign(msg: Message<typeof M.Assign>): Promise<void> {
    await this.leaveFormation();
    const config = resolveConfig(JSON.parse(msg.config));
    const backend = await this.ensureBackend(config);
    let data: TrainingData | undefined;
    let task: Formation['task'];
    let layout: ParamLayout;
    let trainSequences: number;
    if (msg.task === 'classify') {
      const spec = JSON.parse(msg.taskSpec ?? '{}') as ClassifyTaskSpec;
      if (!(spec.batchSize % msg.worldSize === 0)) throw new Error(`fine-tuning batch ${spec.batchSize} does not split over ${msg.worldSize} workers`);
      const ctx = await this.jobs.context(config, spec.classificationSeed, spec.eval ?? {}, (c) => this.ensureBackend(c));
      task = { ctx, spec };
      layout = ctx.clsLayout;
      trainSequences = ctx.train.count;
    } else {
      const key = JSON.stringify([config.seed, config.trainSeed, config.model, config.data, config.cacheDir, config.train.batchSize]);
      if (this.dataCache?.key !== key) this.dataCache = { key, data: await loadTrainingData(config, this.log) };
      data = this.dataCache.data;
      layout = paramLayout(modelDims(config));
      trainSequences = data.train.count;
    }
    const ring = await Ring.open({
      rank: msg.rank,
      worldSize: msg.worldSize,
      listen: { host: this.opts.listenHost, port: this.opts.ringPort },
      secret: this.opts.secret,
      timeoutMs: config.dist.ringTimeoutSeconds * 1000,
      segmentBytes: config.dist.segmentBytes,
      ringId: msg.ringId,
      tls: ringTlsFromEnv(),
      log: (l) => this.log.info(l),
    });
    this.formation = {
      id: msg.formation,
      rank: msg.rank,
      worldSize: msg.worldSize,
      config,
      layout,
      ring,
      data,
      task,
      load: { weights: new Float32Array(layout.total), m: new Float32Array(layout.total), v: new Float32Array(layout.total) },
    };
    this.log.info(`formation ${msg.formation}: rank ${msg.rank} of ${msg.worldSize}, ring listener on ${this.opts.advertiseHost}:${ring.port}`);
    this.conn!.send(M.RingReady, {
      formation: msg.formation,
      host: this.opts.advertiseHost,
      port: ring.port,
      backend: `${backend.name}: ${backend.detail}`.slice(0, 300),
      trainSequences,
    });
  }

  /** The compute backend, started once per process from the first config this worker receives. */
  private async ensureBackend(config: Config): Promise<BackendInfo> {
    if (!this.backend) {
      this.backend = await initBackend(config.backend, { threads: config.threads, fastKernels: config.fastKernels });
      this.backendAsked = config.backend;
      for (const l of this.backend.log) this.log.info(`backend: ${l}`);
    } else if (config.backend !== this.backendAsked && config.backend !== 'auto' && config.backend !== this.backend.name) {
      // tfjs holds one backend per process: a later run of a run server cannot switch it.
      this.log.warn(`this run asks for backend "${config.backend}", but this worker process already runs "${this.backend.name}" (chosen for an earlier run): it stays; restart the worker to change it`);
    }
    return this.backend;
  }

  private async step(msg: Message<typeof M.Step>): Promise<void> {
    const f = this.current(msg.formation);
    if (!f?.trainer) return;
    const reducer: GradientReducer = { worldSize: f.worldSize, reduce: async (g) => void (await f.ring.allReduce(g, 'mean')) };
    try {
      let r;
      if (f.trainer instanceof ClassifierTrainer && f.task) {
        // Fine-tuning: the global batch is positions [offset, offset + batchSize) of the epoch's order; this rank takes its slice.
        const t = f.task;
        if (t.order?.epoch !== msg.epoch) t.order = { epoch: msg.epoch, order: epochOrder(t.ctx.train.count, msg.epoch, t.spec.orderSeed) };
        const b = t.spec.batchSize / f.worldSize;
        const start = msg.offset + f.rank * b;
        r = await f.trainer.step(takeBatch(t.ctx.train, t.order.order.subarray(start, start + b)), msg.lr, reducer);
      } else if (f.trainer instanceof MlmTrainer && f.data) {
        // Pretraining: this worker's shard of the global batch, sequences [rank·B, (rank+1)·B) after the step's position.
        const B = f.config.train.batchSize;
        r = await f.trainer.step(f.data.reader.read({ epoch: msg.epoch, offset: msg.offset }, f.rank * B, B), msg.lr, reducer);
      } else {
        return;
      }
      this.conn!.send(M.StepDone, { formation: f.id, step: msg.step, loss: r.loss, gradNorm: r.gradNorm, computeMs: r.computeMs, reduceMs: r.reduceMs, applyMs: r.applyMs });
    } catch (e) {
      if (!(e instanceof RingError)) throw e;
      this.log.warn(`step ${msg.step} failed: ${e.message}`);
      this.conn!.send(M.StepFailed, { formation: f.id, step: msg.step, reason: e.message.slice(0, 2000), failedRank: e.failedRank });
    }
  }

  private async runJob(msg: Message<typeof M.Job>): Promise<void> {
    const conn = this.conn!;
    const inputs = this.jobInputs.get(msg.jobId)?.blobs ?? {};
    this.jobInputs.delete(msg.jobId);
    const t0 = Date.now();
    let out;
    try {
      out = await this.jobs.run(msg.kind, msg.spec, inputs, (c) => this.ensureBackend(c));
    } catch (e) {
      // A job that fails is reported, not fatal: the coordinator decides whether to retry it elsewhere.
      this.log.warn(`job ${msg.jobId} (${msg.kind}) failed: ${(e as Error).message}`);
      conn.send(M.JobFailed, { jobId: msg.jobId, reason: (e as Error).message.slice(0, 2000) });
      return;
    }
    await sendBlobs(out.blobs, (name, offset, total, data) => new Promise((resolve, reject) => conn.send(M.JobBlob, { jobId: msg.jobId, name, offset, total, data }, (err) => (err ? reject(err) : resolve()))));
    conn.send(M.JobDone, { jobId: msg.jobId, result: JSON.stringify(out.result) });
    this.log.info(`job ${msg.jobId} (${msg.kind}) done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  private async sendState(msg: Message<typeof M.StateRequest>): Promise<void> {
    const f = this.current(msg.formation);
    if (!f?.trainer) return;
    const { m, v, t } = f.trainer.optimizer.getState();
    const parts: Array<['weights' | 'm' | 'v', Float32Array]> = [['weights', f.trainer.weights], ['m', m], ['v', v]];
    for (const [kind, arr] of parts) {
      for (let off = 0; off < arr.length; off += M.STATE_PART_FLOATS) {
        const data = arr.subarray(off, Math.min(arr.length, off + M.STATE_PART_FLOATS));
        // Wait for each part to reach the socket: bounded memory for large models.
        await new Promise<void>((resolve, reject) => this.conn!.send(M.StatePart, { formation: f.id, step: msg.step, kind, offset: off, data }, (err) => (err ? reject(err) : resolve())));
      }
    }
    this.conn!.send(M.StateDone, { formation: f.id, step: msg.step, adamT: t });
  }
}
