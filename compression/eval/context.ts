/**
 * What evaluating compression cells of one pretrained model needs, loaded once: the pretraining
 * tokenizer, the downstream classification set encoded at the model's sequence length, the fixed
 * MLM validation batches (the same ones pretraining reported its validation loss on), the layouts
 * and the trainer options. Everything is derived from the run config and the classification seed,
 * so any process (a worker of the distributed evaluation) builds the identical context.
 */
import type { Config } from '../../core/config/schema.ts';
import { datasetFor } from '../../ml/train/data.ts';
import { validationBatches, type MaskedBatch, type PackedSequences } from '../../ml/data/batches.ts';
import { buildClassificationSet, type Example } from '../../ml/data/classification.ts';
import type { Tokenizer } from '../../ml/data/tokenizer.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../../ml/model/spec.ts';
import { encodeExamples, evalBatches, type ClassBatch, type EncodedExamples } from '../../ml/train/classifier.ts';
import type { TrainerOptions } from '../../ml/train/trainer.ts';

export interface LoadEvalContextOptions {
  /** The resolved run config of the pretrained model (model dims, data, optimizer, seed, cacheDir). */
  config: Config;
  /** Seed of the classification split (buildClassificationSet). Pretraining keeps exactly this seed's glosses out of its corpus only when it equals config.seed. */
  classificationSeed: number;
  /** Use only the first N train / dev / test examples (0 or absent = all). */
  maxTrain?: number;
  maxDev?: number;
  maxTest?: number;
  /**
   * Hold the last N examples of the training split out of fine-tuning as the early-stopping split
   * (0 or absent = none). They are taken before maxTrain keeps the first examples, so a capped
   * training set stays the same examples as long as N ≤ the examples maxTrain leaves out.
   */
  stopExamples?: number;
  /** Examples per evaluation batch (default 64). */
  evalBatchSize?: number;
  /** Receives dataset-cache diagnostics (default console.warn). */
  log?: (msg: string) => void;
}

export interface EvalContext {
  config: Config;
  dims: ModelDims;
  classificationSeed: number;
  /**
   * True when classificationSeed = config.seed: pretraining (ml/train/data.ts) kept exactly
   * these glosses out of its corpus. Otherwise dev/test glosses may have been pretrained on.
   */
  heldOutOfPretraining: boolean;
  /** Class names; label i = labels[i]. */
  labels: string[];
  numClasses: number;
  tokenizer: Tokenizer;
  mlmLayout: ParamLayout;
  clsLayout: ParamLayout;
  train: EncodedExamples;
  dev: EncodedExamples;
  test: EncodedExamples;
  /** the early-stopping split: training examples held out of fine-tuning (count 0 = none) */
  stop: EncodedExamples;
  devBatches: ClassBatch[];
  testBatches: ClassBatch[];
  stopBatches: ClassBatch[];
  /** Fixed masked MLM validation batches (as in pretraining: config.train.batchSize, config.data.maxValidationSequences, seed ^ 0x5eed). */
  valBatches: MaskedBatch[];
  trainerOptions: TrainerOptions;
  /** Std of the classifier head's initialisation (config.model.initStd). */
  initStd: number;
}

const cap = (xs: Example[], max: number | undefined): Example[] => {
  if (max !== undefined && (!Number.isInteger(max) || max < 0)) throw new RangeError(`max examples must be a non-negative integer, got ${max}`);
  return max ? xs.slice(0, max) : xs;
};

export async function loadEvalContext(opts: LoadEvalContextOptions): Promise<EvalContext> {
  const { config, classificationSeed } = opts;
  if (!Number.isInteger(classificationSeed)) throw new RangeError(`classificationSeed must be an integer, got ${classificationSeed}`);
  const { layers, hidden, heads, ffn, seqLen, vocab } = config.model;
  const dims: ModelDims = { layers, hidden, heads, ffn, seqLen, vocab };
  // Exactly the call pretraining made (ml/train/data.ts), so the tokenizer and validation
  // sequences are the pretraining ones (and come from the same cache entry).
  const data = await datasetFor(config, opts.log);
  const heldOutOfPretraining = classificationSeed === config.seed;
  if (!heldOutOfPretraining) {
    (opts.log ?? ((m: string) => console.warn(m)))(
      `evaluation: classificationSeed ${classificationSeed} ≠ pretraining seed ${config.seed}: pretraining kept the glosses of seed ${config.seed} out of its corpus, so some of these dev/test glosses may have been pretrained on`,
    );
  }
  const task = buildClassificationSet(classificationSeed);
  const nStop = opts.stopExamples ?? 0;
  if (!Number.isInteger(nStop) || nStop < 0 || nStop >= task.train.length) throw new RangeError(`stopExamples must be an integer in [0, ${task.train.length}) (the training split), got ${nStop}`);
  const kept = task.train.slice(0, task.train.length - nStop);
  const train = encodeExamples(data.tokenizer, cap(kept, opts.maxTrain), seqLen);
  const stop = encodeExamples(data.tokenizer, task.train.slice(task.train.length - nStop), seqLen);
  const dev = encodeExamples(data.tokenizer, cap(task.dev, opts.maxDev), seqLen);
  const test = encodeExamples(data.tokenizer, cap(task.test, opts.maxTest), seqLen);
  if (train.count === 0 || dev.count === 0 || test.count === 0) throw new RangeError('empty classification split');
  const evalBatchSize = opts.evalBatchSize ?? 64;
  if (!Number.isInteger(evalBatchSize) || evalBatchSize < 1) throw new RangeError(`evalBatchSize must be a positive integer, got ${evalBatchSize}`);
  const valid: PackedSequences = { data: data.validation, count: data.validationCount, seqLen };
  const numClasses = task.labels.length;
  return {
    config,
    dims,
    classificationSeed,
    heldOutOfPretraining,
    labels: task.labels,
    numClasses,
    tokenizer: data.tokenizer,
    mlmLayout: paramLayout(dims),
    clsLayout: paramLayout(dims, { kind: 'classifier', numClasses }),
    train,
    dev,
    test,
    stop,
    devBatches: evalBatches(dev, evalBatchSize),
    testBatches: evalBatches(test, evalBatchSize),
    stopBatches: evalBatches(stop, evalBatchSize),
    valBatches: validationBatches(valid, config.train.batchSize, config.data.maxValidationSequences, config.seed ^ 0x5eed, vocab),
    trainerOptions: { dims, optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm },
    initStd: config.model.initStd,
  };
}
