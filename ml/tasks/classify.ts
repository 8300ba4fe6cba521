/**
 * Fine-tuning on the downstream classification task as a task: a fixed global batch drawn in a
 * per-epoch shuffled order of the training examples (epochOrder, from the order seed); with N ranks
 * each takes an equal consecutive slice of it, so a ring computes exactly the single-process
 * batch; evaluation is the dev accuracy, or the early-stopping split's accuracy and loss. The data comes from the evaluation context
 * (compression/eval/context.ts), which every process builds identically from the config.
 */
import { TtcError } from '../../core/errors.ts';
import type { DataPosition } from '../data/batches.ts';
import type { ParamLayout } from '../model/spec.ts';
import { ClassifierTrainer, epochOrder, takeBatch, type ClassBatch, type EncodedExamples } from '../train/classifier.ts';
import type { TrainerOptions } from '../train/trainer.ts';
import type { EvalResult, EvalSplit, TrainingTask } from './task.ts';

/** What the task reads of the classification data (an EvalContext has all of it). */
export interface ClassificationData {
  train: EncodedExamples;
  devBatches: ClassBatch[];
  /** the early-stopping split (training examples held out of fine-tuning; empty = none) */
  stopBatches: ClassBatch[];
  numClasses: number;
  clsLayout: ParamLayout;
  trainerOptions: TrainerOptions;
}

export interface ClassifySchedule {
  /** examples per optimizer step, over all ranks together */
  batchSize: number;
  /** seeds the per-epoch order of the training examples */
  orderSeed: number;
}

export class ClassifyTask implements TrainingTask<ClassBatch, ClassifierTrainer> {
  readonly kind = 'classify' as const;
  readonly layout: ParamLayout;
  private order: { epoch: number; order: Int32Array } | undefined;

  constructor(private readonly data: ClassificationData, private readonly schedule: ClassifySchedule) {
    this.layout = data.clsLayout;
    if (!Number.isInteger(schedule.batchSize) || schedule.batchSize < 1 || schedule.batchSize > data.train.count) {
      throw new TtcError('TTC_ERR_CONFIG', `fine-tuning batch ${schedule.batchSize} must be an integer in [1, ${data.train.count}] (the training examples)`);
    }
  }

  get trainCount(): number {
    return this.data.train.count;
  }

  globalBatch(): number {
    return this.schedule.batchSize;
  }

  createTrainer(initial: Float32Array): ClassifierTrainer {
    return new ClassifierTrainer(this.data.trainerOptions, this.data.numClasses, initial);
  }

  batch(pos: DataPosition, rank: number, worldSize: number): ClassBatch {
    const { batchSize, orderSeed } = this.schedule;
    if (batchSize % worldSize !== 0) throw new TtcError('TTC_ERR_CONFIG', `fine-tuning batch ${batchSize} does not split over ${worldSize} workers`);
    if (this.order?.epoch !== pos.epoch) this.order = { epoch: pos.epoch, order: epochOrder(this.data.train.count, pos.epoch, orderSeed) };
    const b = batchSize / worldSize;
    const start = pos.offset + rank * b;
    return takeBatch(this.data.train, this.order.order.subarray(start, start + b));
  }

  /** 'dev': the dev accuracy; 'stop': accuracy and mean loss on the early-stopping split. */
  async evaluate(trainer: ClassifierTrainer, _step?: number, split: EvalSplit = 'dev'): Promise<EvalResult> {
    if (split === 'dev') {
      const examples = this.data.devBatches.reduce((a, b) => a + b.batch, 0);
      return { accuracy: await trainer.accuracy(this.data.devBatches), examples };
    }
    if (this.data.stopBatches.length === 0) throw new TtcError('TTC_ERR_CONFIG', 'early stopping needs an early-stopping split (evaluation.finetune.stopExamples > 0)');
    const { accuracy, loss, examples } = await trainer.score(this.data.stopBatches);
    return { accuracy, loss, examples };
  }
}
