/**
 * Where training steps run, behind one interface: a `StepExecutor` runs optimizer steps on the
 * global batch at a data position, evaluates, hands out its state and checks that its replicas
 * agree. The training loops (pretrain.ts, finetune.ts) are written once against it; a `Replica`
 * (this file) executes in this process, and the coordinator's ring formation
 * (coordinator/formation.ts) executes on a ring of workers — each worker being itself a Replica
 * whose trainer joins the ring as its process group (ml/train/data-parallel.ts).
 */
import crypto from 'node:crypto';
import type { DataPosition } from '../data/batches.ts';
import type { OptimizerState } from '../checkpoint/checkpoint.ts';
import type { StepResult, Trainer } from '../train/trainer.ts';
import type { DataParallelOptions } from '../train/data-parallel.ts';
import type { ProcessGroup } from '../../collective/index.ts';
import type { EvalResult, EvalSplit, TrainingTask } from '../tasks/task.ts';

/** Weights and optimizer state of a model replica (flat, in the task's layout). */
export interface TrainerState extends OptimizerState {
  weights: Float32Array;
}

export interface StepOutcome {
  loss: number;
  gradNorm: number;
  /** where the step's time went (a replica's StepResult has these fields; a ring reports the mean over its ranks) */
  computeMs?: number;
  applyMs?: number;
  commMs?: number;
  hiddenMs?: number;
}

export interface StepExecutor {
  /** replicas that share each global batch */
  readonly worldSize: number;
  /** examples in one epoch of the training data (where data positions wrap) */
  readonly trainCount: number;
  /** examples in one global batch */
  readonly globalBatch: number;
  /** one optimizer step (compute gradients → reduce → apply) on the global batch that starts at `pos` */
  step(step: number, lr: number, pos: DataPosition): Promise<StepOutcome>;
  /** `count` gradient computations (and reductions) on the batch at `pos`, not applied: a seconds budget's step-time probe */
  calibrate(count: number, pos: DataPosition): Promise<void>;
  /** scores the current weights on a held-out split (default 'dev') */
  evaluate(step: number, split?: EvalSplit): Promise<EvalResult>;
  /** throws when the replicas no longer hold identical parameters (a no-op for one replica) */
  verify(step: number): Promise<void>;
  /** the weights and optimizer state after `step` (a Replica's are views: copy what you keep past its next step) */
  state(step: number): Promise<TrainerState>;
  /** puts earlier weights back (early stopping's best) for evaluation; no step follows */
  restore(weights: Float32Array): Promise<void>;
}

/** SHA-256 of a weight buffer's bytes (replicas compare these). */
const hashWeights = (w: Float32Array): string => crypto.createHash('sha256').update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)).digest('hex');

/**
 * One model replica of a task: its trainer, its rank's share of every global batch and, in a
 * worker, the process group its gradients and weights cross (ml/train/data-parallel.ts).
 */
export class Replica<B, T extends Trainer<B> = Trainer<B>> implements StepExecutor {
  readonly trainer: T;

  constructor(
    readonly task: TrainingTask<B, T>,
    /** the whole model's weights and optimizer state (each rank takes its shard of the moments) */
    start: TrainerState,
    /** the replicas' process group (a ring of workers; none = one process) and how they share the work (the run's dist options) */
    parallel?: { group?: ProcessGroup; options: DataParallelOptions },
    /** pruning mask (task layout, 1 = keep) held through training */
    mask?: Uint8Array,
  ) {
    this.trainer = task.createTrainer(start.weights);
    if (parallel) this.trainer.joinGroup(parallel.group, parallel.options);
    this.trainer.setOptimizerState(start);
    if (mask) this.trainer.setMask(mask);
  }

  get rank(): number {
    return this.trainer.dp.rank;
  }

  get worldSize(): number {
    return this.trainer.dp.worldSize;
  }

  get trainCount(): number {
    return this.task.trainCount;
  }

  get globalBatch(): number {
    return this.task.globalBatch(this.worldSize);
  }

  async step(_step: number, lr: number, pos: DataPosition): Promise<StepResult> {
    return this.trainer.step(this.task.batch(pos, this.rank, this.worldSize), lr);
  }

  async calibrate(count: number, pos: DataPosition): Promise<void> {
    const batch = this.task.batch(pos, this.rank, this.worldSize);
    for (let i = 0; i < count; i++) {
      await this.trainer.computeGradients(batch);
      await this.trainer.reduce();
    }
  }

  evaluate(step?: number, split: EvalSplit = 'dev'): Promise<EvalResult> {
    return this.task.evaluate(this.trainer, step, split);
  }

  async verify(): Promise<void> {}

  /** The whole model's state; with a sharded optimizer a collective (every rank must call it). */
  state(): Promise<TrainerState> {
    return this.trainer.fullState();
  }

  async restore(weights: Float32Array): Promise<void> {
    this.trainer.setWeights(weights);
  }

  /** SHA-256 of the weights once the last update has reached them. */
  async hash(): Promise<string> {
    return hashWeights(await this.trainer.hostWeights());
  }

  dispose(): void {
    this.trainer.dispose();
  }
}

/** A fresh optimizer state for `weights` (zero moments, step 0). */
export function freshState(weights: Float32Array): TrainerState {
  return { weights, m: new Float32Array(weights.length), v: new Float32Array(weights.length), t: 0 };
}
