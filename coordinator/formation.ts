/**
 * The distributed driver: forming rings of workers and driving them, the one place that owns ring
 * formation numbers, the failure-aware collection of the workers' answers, the
 * form → load → step → hash → fetch → reset sequence and the retry policy. A `RingFormation` is a
 * formed ring seen from the coordinator, and a StepExecutor (ml/loop/executor.ts): the pretraining
 * and fine-tuning loops run on it exactly as they run on a Replica in one process. `Driver.withRing`
 * forms a ring, runs a task driver's body on it, and when a worker fails (disconnects, stalls, is
 * named by its ring) drops it, resets the others and — the policy allowing — tries again on a new
 * ring. pretrain.ts and finetune.ts are the task drivers.
 */
import { codedError } from '../core/errors.ts';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/run/log.ts';
import type { DataPosition } from '../ml/data/batches.ts';
import type { StepExecutor, StepOutcome, TrainerState } from '../ml/loop/executor.ts';
import type { EvalResult, EvalSplit } from '../ml/tasks/task.ts';
import { BlobStreams, M, sendBlobs, type TaskSpec } from '../protocol/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import { WorkerFailure, type ToWorker, type WorkerEntry, type WorkerMsg, type WorkerRegistry } from './registry.ts';

/** The run cannot continue (too few workers, parameters diverged, a protocol bug, cancelled): stop it. */
export const RunError = codedError('RunError', 'TTC_ERR_RUN');
export type RunError = InstanceType<typeof RunError>;

/** One signal aborted by whichever of the given ones aborts first (undefined when none is given). */
export function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  return given.length > 1 ? AbortSignal.any(given) : given[0];
}

/** What a ring is formed for. */
export interface RingSpec {
  /** the resolved run config the workers train with */
  config: Config;
  task: TaskSpec;
  /** names the rings in logs and ring ids, e.g. the run id */
  label: string;
  /** answers to a step (or evaluation, transfer) must arrive within this */
  timeoutMs: number;
  /** joining a ring may build a tokenizer and data cache first: allowed this long */
  setupTimeoutMs: number;
}

export interface RingPolicy {
  /** attempts (rings formed) before the failures end the work with a RunError */
  maxAttempts: number;
  /** workers to wait for before forming the ring of this attempt */
  minWorkers: (attempt: number) => number;
  /** how long to wait for them (0 = forever) */
  waitSeconds: number;
  /** the ring's members among the connected workers (oldest first) */
  choose: (all: WorkerEntry[]) => WorkerEntry[];
  /** after a failure, before the next ring (the failure is logged and its culprits dropped already) */
  onFailure?: (e: WorkerFailure, ring: RingFormation | undefined) => void;
  /** ends the waiting and the work between steps (`ttc cancel`, shutdown) */
  signal?: AbortSignal;
}

export class Driver {
  private formations = 0;

  constructor(readonly registry: WorkerRegistry, readonly log: Logger) {}

  /** Ring formation numbers are unique in this process, whatever forms the ring (workers refuse a stale one). */
  nextFormation(): number {
    return ++this.formations;
  }

  /** The connected workers (oldest first) once at least `min` are; a RunError after `seconds` (0 = wait forever). */
  waitForWorkers(min: number, seconds: number, signal?: AbortSignal): Promise<WorkerEntry[]> {
    return this.registry.waitFor(min, seconds, signal);
  }

  /**
   * Forms a ring per `policy`, runs `body` on it and returns its result; the ring's members are
   * reset afterwards (they wait for the next assignment). On a WorkerFailure the culprits are
   * dropped, the failure logged, and the next attempt forms a new ring from the workers left.
   */
  async withRing<T>(spec: RingSpec, policy: RingPolicy, body: (ring: RingFormation) => Promise<T>): Promise<T> {
    const errors: string[] = [];
    for (let attempt = 1; ; attempt++) {
      if (policy.signal?.aborted) throw new RunError(`cancelled${policy.signal.reason ? `: ${String(policy.signal.reason)}` : ''}`);
      const members = policy.choose(await this.waitForWorkers(policy.minWorkers(attempt), policy.waitSeconds, policy.signal));
      const formation = this.nextFormation();
      let ring: RingFormation | undefined;
      let resetReason = `${spec.label}: done`;
      try {
        ring = await RingFormation.form(this, formation, members, spec);
        return await body(ring);
      } catch (e) {
        resetReason = `${spec.label}: ${(e as Error).message}`;
        if (!(e instanceof WorkerFailure)) throw e;
        errors.push(e.message);
        this.log.error(`ring formation ${formation} failed: ${e.message}`);
        for (const w of e.culprits) {
          this.log.warn(`dropping ${this.registry.who(w)}`);
          this.registry.drop(w, 'dropped by the coordinator after a failure');
        }
        policy.onFailure?.(e, ring);
        if (attempt >= policy.maxAttempts) throw new RunError(`${spec.label} failed ${attempt} times: ${errors.join('; ')}`);
      } finally {
        const left = members.filter((w) => this.registry.workers.has(w.conn));
        this.registry.broadcast(left, M.Reset, () => ({ formation, reason: resetReason.slice(0, 1000) }));
        for (const w of members) w.rank = undefined;
      }
    }
  }
}

/** Where one rank's step went (ms), as its `coord.step-done` reported it: the dashboard's per-worker timeline. */
export interface RankSplit {
  rank: number;
  name: string;
  /** forward + backward, without the read-back */
  computeMs: number;
  /** reading the gradients back (0 when the worker does not measure it: then inside computeMs) */
  readBackMs: number;
  /** waiting for the gradient all-reduce after the read-back (its exposed part) */
  allReduceMs: number;
  /** clip + optimizer update + handing the weights to the backend */
  updateMs: number;
}

/** A formed ring of workers, driven from the coordinator: the StepExecutor of distributed training. */
export class RingFormation implements StepExecutor {
  /** what the members reported when they joined */
  trainCount = 0;
  /** called with every step's per-rank split (rank order) once all ranks answered */
  onStepSplit: ((step: number, ranks: RankSplit[]) => void) | undefined;
  backend = '';
  /** parameters of the state loaded (what a state transfer must hold) */
  private total = 0;

  private constructor(
    private readonly driver: Driver,
    readonly id: number,
    readonly members: WorkerEntry[],
    private readonly spec: RingSpec,
  ) {}

  get worldSize(): number {
    return this.members.length;
  }

  get globalBatch(): number {
    const { task, config } = this.spec;
    return task.kind === 'classify' ? task.batchSize : this.worldSize * config.train.batchSize;
  }

  private get registry(): WorkerRegistry {
    return this.driver.registry;
  }

  /** Assigns ranks, waits for every listener, wires each rank to its successor. */
  static async form(driver: Driver, id: number, members: WorkerEntry[], spec: RingSpec): Promise<RingFormation> {
    const { task, config } = spec;
    const ring = new RingFormation(driver, id, members, spec);
    const N = members.length;
    const log = driver.log;
    members.forEach((w, rank) => (w.rank = rank));
    log.info(`formation ${id}: ${members.map((w) => `rank ${w.rank} = "${w.name}"`).join(', ')}`);
    const configJson = JSON.stringify(config);
    ring.broadcast(M.Assign, (w) => ({ formation: id, rank: w.rank!, worldSize: N, ringId: `${spec.label}/f${id}`.slice(-128), config: configJson, task }));
    const ready = await ring.collect(members, 'ring set-up', (m) => (m.t === 'coord.ring-ready' ? m : undefined), spec.setupTimeoutMs);
    const counts = new Set([...ready.values()].map((r) => r.trainCount));
    if (counts.size !== 1) throw new RunError(`workers disagree on the training data (${[...counts].join(' vs ')} examples): same config, different corpus files?`);
    ring.trainCount = [...counts][0]!;
    for (const w of members) w.backend = ready.get(w)!.backend;
    ring.backend = members[0]!.backend ?? '';
    ring.broadcast(M.RingConnect, (w) => {
      const next = ready.get(members[(w.rank! + 1) % N]!)!;
      return { formation: id, host: next.host, port: next.port };
    });
    await ring.collect(members, 'ring connection', (m) => (m.t === 'coord.ring-up' ? true : undefined), spec.timeoutMs);
    log.info(`formation ${id}: ring of ${N} up (${members.map((w) => w.backend).filter((b, i, a) => a.indexOf(b) === i).join('; ')})`);
    return ring;
  }

  private broadcast<D extends ToWorker>(def: D, fields: (w: WorkerEntry) => Omit<Message<D>, 'v' | 't'>): void {
    this.registry.broadcast(this.members, def, fields);
  }

  /**
   * One answer of this formation from each of `from`; fails fast with a WorkerFailure naming the
   * worker when one disconnects, stalls or its ring reports a culprit, and with a RunError when a
   * worker refuses a message (a protocol bug: retrying would not help).
   */
  private collect<T>(from: WorkerEntry[], what: string, pick: (msg: WorkerMsg) => T | undefined, timeoutMs = this.spec.timeoutMs): Promise<Map<WorkerEntry, T>> {
    const id = this.id;
    const ofThis = (msg: WorkerMsg) => ('formation' in msg ? msg.formation === id : msg.t === 'coord.blob' && msg.stream.startsWith(`state/${id}/`));
    return this.registry.collect(from, what, (msg) => (ofThis(msg) ? pick(msg) : undefined), timeoutMs, (w, msg) => {
      if (msg.t === 'worker.refused' && (msg.formation === undefined || msg.formation === id)) {
        return new RunError(`${this.registry.who(w)} refused ${msg.refused} during ${what}: ${msg.reason} (${msg.code})`);
      }
      if (msg.t !== 'coord.step-failed' || msg.formation !== id) return undefined;
      const blamed = msg.failedRank !== undefined ? this.members.find((m) => m.rank === msg.failedRank) : undefined;
      return new WorkerFailure(`${this.registry.who(w)} reports during ${what}: ${msg.reason}`, blamed ? [blamed] : []);
    });
  }

  private get root(): WorkerEntry {
    return this.members[0]!;
  }

  /** Sends rank 0 a request and returns its answer (the first frame `pick` takes). */
  private async ask<D extends ToWorker, T>(def: D, fields: Omit<Message<D>, 'v' | 't'>, what: string, pick: (msg: WorkerMsg) => T | undefined): Promise<T> {
    this.root.conn.send(def, fields as never);
    return (await this.collect([this.root], what, pick)).get(this.root)!;
  }

  /** Puts weights back (early stopping's best): a load of them, the mask kept; the optimizer state is not sent (no step follows). */
  async restore(weights: Float32Array): Promise<void> {
    await this.load({ weights, m: new Float32Array(0), v: new Float32Array(0), t: 0 }, this.mask);
  }

  private mask: Uint8Array | undefined;

  /** Every member starts from `state`: sent to rank 0 once, broadcast from there over the ring (also again, once loaded: a restore). */
  async load(state: TrainerState, mask?: Uint8Array): Promise<void> {
    this.mask = mask;
    const total = (this.total = state.weights.length);
    const moments = state.t > 0;
    const blobs = { weights: state.weights, ...(moments ? { m: state.m, v: state.v } : {}), ...(mask ? { mask: Float32Array.from(mask) } : {}) };
    try {
      await sendBlobs(this.root.conn, `load/${this.id}`, blobs);
    } catch {
      throw new WorkerFailure(`${this.registry.who(this.root)} went away while the state was sent to it`, [this.root]);
    }
    this.broadcast(M.Load, () => ({ formation: this.id, adamT: state.t, total, moments, mask: mask !== undefined }));
    await this.collect(this.members, 'loading the state', (m) => (m.t === 'coord.loaded' ? true : undefined));
  }

  async step(step: number, lr: number, pos: DataPosition): Promise<StepOutcome> {
    this.broadcast(M.Step, () => ({ formation: this.id, step, lr, epoch: pos.epoch, offset: pos.offset }));
    const done = await this.collect(this.members, `step ${step + 1}`, (m) => (m.t === 'coord.step-done' && m.step === step ? m : undefined));
    const results = this.members.map((w) => done.get(w)!);
    this.onStepSplit?.(step + 1, this.members.map((w, i) => {
      const r = results[i]!;
      const readBackMs = Math.min(r.readBackMs ?? 0, r.computeMs);
      return { rank: w.rank ?? i, name: w.name, computeMs: r.computeMs - readBackMs, readBackMs, allReduceMs: r.reduceMs, updateMs: r.applyMs };
    }));
    // Every rank's loss is the mean over its equal share of the global batch: their mean is the batch's.
    const mean = (f: (r: (typeof results)[number]) => number) => results.reduce((a, r) => a + f(r), 0) / results.length;
    return {
      loss: mean((r) => r.loss), gradNorm: results[0]!.gradNorm ?? NaN, // null: a skipped mixed-precision step
      computeMs: mean((r) => r.computeMs), applyMs: mean((r) => r.applyMs), commMs: mean((r) => r.commMs), hiddenMs: mean((r) => r.hiddenMs),
    };
  }

  async calibrate(count: number, pos: DataPosition): Promise<void> {
    this.broadcast(M.Calibrate, () => ({ formation: this.id, count, epoch: pos.epoch, offset: pos.offset }));
    await this.collect(this.members, 'calibration', (m) => (m.t === 'coord.calibrated' ? m.seconds : undefined), this.spec.timeoutMs * count);
  }

  async evaluate(step: number, split?: EvalSplit): Promise<EvalResult> {
    const r = await this.ask(M.EvalRequest, { formation: this.id, step, ...(split ? { split } : {}) }, `evaluation at step ${step}`, (m) => (m.t === 'coord.eval-done' && m.step === step ? m : undefined));
    return { loss: r.loss, accuracy: r.accuracy, unigramEntropy: r.unigramEntropy, bleu: r.bleu, bleuBeam: r.bleuBeam, examples: r.examples };
  }

  /** Every member reports a hash of its parameters; they must all be equal. */
  async verify(step: number): Promise<void> {
    this.broadcast(M.HashRequest, () => ({ formation: this.id, step }));
    const hashes = await this.collect(this.members, `parameter hash at step ${step}`, (m) => (m.t === 'coord.param-hash' && m.step === step ? m.hash : undefined));
    if (new Set(hashes.values()).size > 1) {
      throw new RunError(`parameters diverged at step ${step}: ${this.members.map((w) => `rank ${w.rank} ${hashes.get(w)!.slice(0, 12)}`).join(', ')}`);
    }
  }

  /** The weights and optimizer state after `step`: every rank takes part (a sharded optimizer's moments are gathered), rank 0 sends them. */
  async state(step: number): Promise<TrainerState> {
    const stream = `state/${this.id}/${step}`;
    const parts = new BlobStreams(this.total);
    let bad = '';
    this.broadcast(M.StateRequest, () => ({ formation: this.id, step }));
    const done = await this.collect(this.members, `state transfer at step ${step}`, (m) => {
      if (m.t === 'coord.blob' && m.stream === stream) {
        try {
          parts.add(m);
        } catch (e) {
          bad ||= (e as Error).message;
        }
        return undefined;
      }
      return m.t === 'coord.state-done' && m.step === step ? m.adamT : undefined;
    });
    const t = done.get(this.root)!;
    const { weights, m, v } = parts.take(stream);
    const n = weights?.length ?? -1;
    if (bad || !weights || m?.length !== n || v?.length !== n) throw new WorkerFailure(`${this.registry.who(this.root)} sent an inconsistent state: ${bad || 'weights, m and v missing or of different lengths'}`, [this.root]);
    return { weights, m, v, t };
  }
}
