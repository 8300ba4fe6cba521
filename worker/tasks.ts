/**
 * The tasks a worker trains and evaluates, built from what the coordinator sends (a resolved run
 * config and a task spec) and cached per process: the MLM corpus of the last config and the
 * evaluation context (tokenizer, encoded classification set, validation batches) of the last
 * (config, classification seed, selection), since every ring of a sweep and every job of its
 * evaluation step asks for the same ones again.
 */
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/run/log.ts';
import { loadEvalContext, type EvalContext } from '../compression/eval/index.ts';
import { ClassifyTask } from '../ml/tasks/classify.ts';
import { MlmTask } from '../ml/tasks/mlm.ts';
import { TranslationTask, translationDataOf } from '../ml/tasks/translate.ts';
import type { TranslationData } from '../ml/data/translation.ts';
import type { TrainingTask } from '../ml/tasks/task.ts';
import { loadTrainingData, type TrainingData } from '../ml/train/data.ts';
import type { Selection, TaskSpec } from '../protocol/index.ts';

export class TaskFactory {
  private mlmData: { key: string; data: TrainingData } | undefined;
  private evalCtx: { key: string; ctx: EvalContext } | undefined;
  private pairs: { key: string; data: TranslationData } | undefined;

  constructor(private readonly log: Logger) {}

  async create(config: Config, spec: TaskSpec): Promise<TrainingTask> {
    if (spec.kind === 'mlm') return new MlmTask(config, await this.trainingData(config));
    if (spec.kind === 'translate') return new TranslationTask(config, await this.translationData(config));
    const ctx = await this.evalContext(config, spec.classificationSeed, spec.selection);
    return new ClassifyTask(ctx, { batchSize: spec.batchSize, orderSeed: spec.orderSeed });
  }

  async trainingData(config: Config): Promise<TrainingData> {
    // What the corpus, its batches and the validation set depend on (not the model's width or depth:
    // the members of a sweep share it).
    const key = JSON.stringify([config.seed, config.trainSeed, config.model.seqLen, config.model.vocab, config.data, config.cacheDir, config.train.batchSize]);
    if (this.mlmData?.key !== key) this.mlmData = { key, data: await loadTrainingData(config, this.log) };
    return this.mlmData.data;
  }

  /** The translation pairs, shared vocabulary and encoded sets of a translation config (shared by a sweep's members). */
  async translationData(config: Config): Promise<TranslationData> {
    const key = JSON.stringify([config.translation, config.model.vocab, config.model.seqLen, config.cacheDir]);
    if (this.pairs?.key !== key) this.pairs = { key, data: await translationDataOf(config, (m) => this.log.info(m)) };
    return this.pairs.data;
  }

  async evalContext(config: Config, classificationSeed: number, selection: Selection): Promise<EvalContext> {
    const key = JSON.stringify([config.model, config.seed, config.data, config.cacheDir, config.train.batchSize, classificationSeed, selection]);
    if (this.evalCtx?.key !== key) this.evalCtx = { key, ctx: await loadEvalContext({ config, classificationSeed, ...selection, log: (m) => this.log.warn(m) }) };
    return this.evalCtx.ctx;
  }
}

