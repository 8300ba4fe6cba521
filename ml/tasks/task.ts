/**
 * A training task: what one model replica trains on and how its progress is measured — its
 * parameter layout, the trainer that turns a batch into a loss, this rank's share of every global
 * batch, and the evaluation. One task object serves the single-process loop and a worker of a
 * ring alike (ml/loop), so a batch, a loss and an evaluation mean the same wherever they run;
 * the worker holds a task instead of branching on what it trains.
 */
import type { DataPosition } from '../data/batches.ts';
import type { ParamLayout } from '../model/spec.ts';
import type { Trainer } from '../train/trainer.ts';

export type TaskKind = 'mlm' | 'classify' | 'translate';

/**
 * Which held-out data an evaluation scores: 'dev' (MLM: the validation set; classification: the
 * dev split) or 'stop' (classification: the early-stopping split, training examples held out of
 * fine-tuning; ml/loop/finetune.ts).
 */
export type EvalSplit = 'dev' | 'stop';

/** What an evaluation measured: MLM pretraining reports a validation loss, classification an accuracy. */
export interface EvalResult {
  /** mean loss on the validation set (MLM) */
  loss?: number;
  /** dev accuracy (classification) */
  accuracy?: number;
  /** MLM: cross-entropy of the validation targets under the training unigram frequencies (a baseline) */
  unigramEntropy?: number;
  /** translation: corpus BLEU (0..100) of greedy decoding on the evaluation pairs */
  bleu?: number;
  /** translation: the same with beam search (translation.beam) */
  bleuBeam?: number;
  /** examples scored (classification) */
  examples?: number;
}

export interface TrainingTask<B = unknown, T extends Trainer<B> = Trainer<B>> {
  readonly kind: TaskKind;
  readonly layout: ParamLayout;
  /** examples (MLM: packed sequences) in one epoch of the training data */
  readonly trainCount: number;
  /** examples in one global batch of `worldSize` ranks (MLM: batchSize per rank; classification: a fixed global batch) */
  globalBatch(worldSize: number): number;
  /** a trainer of this task starting from `initial` (layout.total floats) */
  createTrainer(initial: Float32Array): T;
  /** rank `rank`'s share of the global batch that starts at `pos` */
  batch(pos: DataPosition, rank: number, worldSize: number): B;
  /** `step`: the optimizer steps taken (when the caller knows it); `split`: what to score (default 'dev') */
  evaluate(trainer: T, step?: number, split?: EvalSplit): Promise<EvalResult>;
}
