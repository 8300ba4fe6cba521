/**
 * Translation (the paper's second experiment) as a task: the encoder–decoder of
 * ml/model/seq2seq.ts trained on English→French pairs (ml/data/translation.ts). Like MLM
 * pretraining, each rank reads config.train.batchSize pairs of the global batch (rank r takes
 * positions [r·B, (r+1)·B) after the step's data position, in a per-epoch shuffled order of the
 * training pairs), so N ranks × B see what one rank × N·B sees. An evaluation reports the
 * teacher-forced loss on the evaluation pairs and their corpus BLEU (sacreBLEU's defaults,
 * lowercased: the tokenizer lowercases) under greedy and beam search.
 */
import type { Config } from '../../core/config/schema.ts';
import { trainSeedOf } from '../../core/config/schema.ts';
import { deriveSeed } from '../../core/rng.ts';
import type { DataPosition } from '../data/batches.ts';
import { loadTranslationData, pairBatch, pairBatches, pairOrder, type TranslationData } from '../data/translation.ts';
import type { Seq2SeqBatch } from '../model/seq2seq.ts';
import type { ParamLayout } from '../model/spec.ts';
import { runLayout, seq2seqDims } from '../train/controller.ts';
import { TranslationTrainer } from '../train/translation.ts';
import { corpusBleu } from './bleu.ts';
import type { EvalResult, TrainingTask } from './task.ts';

export class TranslationTask implements TrainingTask<Seq2SeqBatch, TranslationTrainer> {
  readonly kind = 'translate' as const;
  readonly layout: ParamLayout;
  private readonly orders = new Map<number, Int32Array>();
  private readonly orderSeed: number;

  constructor(private readonly config: Config, readonly data: TranslationData) {
    this.layout = runLayout(config);
    this.orderSeed = deriveSeed(trainSeedOf(config), 17);
  }

  get trainCount(): number {
    return this.data.train.count;
  }

  globalBatch(worldSize: number): number {
    return worldSize * this.config.train.batchSize;
  }

  createTrainer(initial: Float32Array): TranslationTrainer {
    const { config } = this;
    return new TranslationTrainer({ dims: seq2seqDims(config), optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm }, initial);
  }

  private order(epoch: number): Int32Array {
    let o = this.orders.get(epoch);
    if (!o) {
      if (this.orders.size > 2) this.orders.clear();
      o = pairOrder(this.trainCount, epoch, this.orderSeed);
      this.orders.set(epoch, o);
    }
    return o;
  }

  /**
   * Rank `rank`'s B pairs of the global batch at `pos`, its loss weighted so that the mean over the
   * ranks is the token mean of the whole global batch (Seq2SeqBatch.lossWeight): every rank counts
   * the global batch's target tokens itself, from the same data.
   */
  batch(pos: DataPosition, rank: number, worldSize: number): Seq2SeqBatch {
    const B = this.config.train.batchSize;
    const n = this.trainCount;
    const at = (i: number) => {
      const linear = pos.epoch * n + pos.offset + i;
      return this.order(Math.floor(linear / n))[linear % n]!;
    };
    const idx: number[] = [];
    for (let i = 0; i < B; i++) idx.push(at(rank * B + i));
    let tokens = 0;
    for (let i = 0; i < worldSize * B; i++) tokens += this.data.train.tgt[at(i)]!.length + 1; // + [SEP]
    return { ...pairBatch(this.data.train, idx), lossWeight: worldSize / tokens };
  }

  /** Translations of the evaluation pairs (decoded text) with beam width `beam` (1 = greedy). */
  async translations(trainer: TranslationTrainer, beam: number): Promise<string[]> {
    const { tokenizer, evalSet } = this.data;
    const ids = await trainer.translate(evalSet.src, { beam, alpha: this.config.translation.lengthAlpha, maxLen: (n) => 2 * n + 10 });
    return ids.map((t) => tokenizer.decode(t, { skipSpecial: true }));
  }

  /**
   * The loss on the evaluation pairs, and their BLEU (greedy; beam search when translation.beam > 1)
   * except before the first step (step 0): an untrained model rarely ends a sentence, so decoding
   * it runs every source to the length cap, minutes at DDTP scale, to measure a BLEU of ~0.
   */
  async evaluate(trainer: TranslationTrainer, step?: number): Promise<EvalResult> {
    const refs = [this.data.evalPairs.map((p) => p.fr)];
    const loss = await trainer.evaluate(pairBatches(this.data.evalSet, Math.max(1, this.config.train.batchSize)));
    if (step === 0) return { loss };
    const bleu = corpusBleu(await this.translations(trainer, 1), refs, { lowercase: true }).score;
    const beam = this.config.translation.beam;
    const bleuBeam = beam > 1 ? corpusBleu(await this.translations(trainer, beam), refs, { lowercase: true }).score : bleu;
    return { loss, bleu, bleuBeam };
  }
}

/** The translation data a config names (translation.*, model.vocab, model.seqLen, cacheDir). */
export function translationDataOf(config: Config, log?: (m: string) => void): Promise<TranslationData> {
  const t = config.translation;
  return loadTranslationData({ pairs: t.pairs, vocab: config.model.vocab, seqLen: config.model.seqLen, cacheDir: config.cacheDir, evalSplit: t.evalSplit, evalPairs: t.evalPairs, log });
}
