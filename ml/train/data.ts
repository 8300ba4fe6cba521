/** Loads what a trainer reads: packed train/validation sequences, the batch reader, fixed validation batches. */
import { trainSeedOf, type Config } from '../../core/config/schema.ts';
import { prepareDataset } from '../data/dataset.ts';
import { BatchReader, validationBatches, type MaskedBatch, type PackedSequences } from '../data/batches.ts';
import { unigramCrossEntropy } from '../data/unigram.ts';
import type { Logger } from '../../core/run/log.ts';

export interface TrainingData {
  train: PackedSequences;
  valid: PackedSequences;
  reader: BatchReader;
  valBatches: MaskedBatch[];
  unigramEntropy: number;
}

/** The tokenizer and packed sequences of a run config (one call, so every user hits the same cache entry); `info` hears the steps of building a new entry. */
export function datasetFor(config: Config, log?: (msg: string) => void, info?: (msg: string) => void): ReturnType<typeof prepareDataset> {
  return prepareDataset({
    seed: config.seed,
    seqLen: config.model.seqLen,
    vocabSize: config.model.vocab,
    validationFraction: config.data.validationFraction,
    extraTextFiles: config.data.extraTextFiles,
    cacheDir: config.cacheDir,
    ...(log ? { log } : {}),
    ...(info ? { info } : {}),
  });
}

export async function loadTrainingData(config: Config, log: Logger): Promise<TrainingData> {
  const t0 = Date.now();
  const { seqLen, vocab } = config.model;
  const data = await datasetFor(config, undefined, (m) => log.info(m));
  const train: PackedSequences = { data: data.train, count: data.trainCount, seqLen };
  const valid: PackedSequences = { data: data.validation, count: data.validationCount, seqLen };
  log.info(`data: ${train.count} training and ${valid.count} validation sequences of ${seqLen} tokens, vocab ${data.tokenizer.vocabSize} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  const valBatches = validationBatches(valid, config.train.batchSize, config.data.maxValidationSequences, config.seed ^ 0x5eed, vocab);
  return {
    train,
    valid,
    reader: new BatchReader(train, trainSeedOf(config), vocab),
    valBatches,
    unigramEntropy: unigramCrossEntropy(train.data, vocab, valBatches.map((b) => b.maskedLabels)),
  };
}
