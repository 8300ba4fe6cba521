/**
 * Training the translation model (ml/model/seq2seq.ts): a Trainer whose loss is the teacher-forced
 * cross-entropy of a batch of pairs, and whose weights translate with greedy or beam search
 * (ml/model/search.ts). Everything else (AdamW, clipping, the data-parallel step) is the Trainer's.
 */
import { tf } from '../tf.ts';
import type { Params } from '../model/transformer.ts';
import { paramLayout } from '../model/spec.ts';
import { batchTensors, seq2seqLoss, type Seq2SeqBatch, type Seq2SeqDims } from '../model/seq2seq.ts';
import { translate, type SearchOptions } from '../model/search.ts';
import { Trainer, type TrainerOptions } from './trainer.ts';
import { CLS_ID, SEP_ID } from '../data/tokenizer.ts';

export class TranslationTrainer extends Trainer<Seq2SeqBatch> {
  readonly dims: Seq2SeqDims;

  constructor(opts: TrainerOptions & { dims: Seq2SeqDims }, initial: Float32Array) {
    super(paramLayout(opts.dims, { kind: 'seq2seq', decoderLayers: opts.dims.decoderLayers }), opts, initial);
    this.dims = opts.dims;
  }

  protected loss(p: Params, b: Seq2SeqBatch): tf.Scalar {
    return seq2seqLoss(p, this.dims, batchTensors(b)) as tf.Scalar;
  }

  protected targets(b: Seq2SeqBatch): number {
    return b.labels.length;
  }

  /** Target token ids of each source (ids ending with [SEP]), `batchSize` sources at a time. */
  async translate(sources: ReadonlyArray<ArrayLike<number>>, o: Omit<SearchOptions, 'bos' | 'eos'>, batchSize = 32): Promise<number[][]> {
    await this.settle();
    const out: number[][] = [];
    const search = { ...o, bos: CLS_ID, eos: SEP_ID };
    for (let s = 0; s < sources.length; s += batchSize) out.push(...(await translate(this.tensors.tensors, this.dims, sources.slice(s, s + batchSize), search)));
    return out;
  }
}
