/**
 * Masked-language-model pretraining as a task: packed, masked sequences of the run's corpus; each
 * rank reads config.train.batchSize sequences of the global batch (rank r takes sequences
 * [r·B, (r+1)·B) after the step's data position), so N ranks × B see what one rank × N·B sees;
 * evaluation is the loss on the fixed validation batches (and the unigram baseline).
 */
import type { Config } from '../../core/config/schema.ts';
import type { DataPosition, MaskedBatch } from '../data/batches.ts';
import { paramLayout, type ParamLayout } from '../model/spec.ts';
import { modelDims } from '../train/controller.ts';
import type { TrainingData } from '../train/data.ts';
import { MlmTrainer } from '../train/trainer.ts';
import type { EvalResult, TrainingTask } from './task.ts';

export class MlmTask implements TrainingTask<MaskedBatch, MlmTrainer> {
  readonly kind = 'mlm' as const;
  readonly layout: ParamLayout;

  constructor(private readonly config: Config, readonly data: TrainingData) {
    this.layout = paramLayout(modelDims(config));
  }

  get trainCount(): number {
    return this.data.train.count;
  }

  globalBatch(worldSize: number): number {
    return worldSize * this.config.train.batchSize;
  }

  createTrainer(initial: Float32Array): MlmTrainer {
    const { config } = this;
    return new MlmTrainer({ dims: modelDims(config), optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm }, initial);
  }

  batch(pos: DataPosition, rank: number): MaskedBatch {
    const B = this.config.train.batchSize;
    return this.data.reader.read(pos, rank * B, B);
  }

  async evaluate(trainer: MlmTrainer): Promise<EvalResult> {
    return { loss: await trainer.evaluate(this.data.valBatches), unigramEntropy: this.data.unigramEntropy };
  }
}
