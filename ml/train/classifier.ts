/**
 * Fine-tuning on the downstream classification task (WordNet gloss → lexicographer class, the
 * paper's MNLI role): examples encoded as [CLS] tokens [SEP] + padding, a classifier head on the
 * first token, cross-entropy loss, accuracy.
 */
import { tf } from '../tf.ts';
import { Rng } from '../../core/rng.ts';
import { classifierLogits, type Params } from '../model/transformer.ts';
import { crossEntropy } from '../model/ops.ts';
import { paramLayout, type ParamLayout } from '../model/spec.ts';
import { initialWeights } from '../model/weights.ts';
import { CLS_ID, PAD_ID, SEP_ID, type Tokenizer } from '../data/tokenizer.ts';
import type { Example } from '../data/classification.ts';
import { Trainer, type TrainerOptions } from './trainer.ts';

export interface ClassBatch {
  batch: number;
  seqLen: number;
  inputIds: Int32Array; // [B*T], padded with [PAD]
  padMask: Float32Array; // [B*T], 1 = token, 0 = padding
  labels: Int32Array; // [B]
}

export interface EncodedExamples {
  count: number;
  seqLen: number;
  inputIds: Int32Array;
  padMask: Float32Array;
  labels: Int32Array;
}

/** [CLS] gloss tokens (truncated) [SEP], padded to seqLen. */
export function encodeExamples(tokenizer: Tokenizer, examples: Example[], seqLen: number): EncodedExamples {
  const n = examples.length;
  const inputIds = new Int32Array(n * seqLen).fill(PAD_ID);
  const padMask = new Float32Array(n * seqLen);
  const labels = new Int32Array(n);
  examples.forEach((ex, i) => {
    const ids = [CLS_ID, ...tokenizer.encode(ex.text).slice(0, seqLen - 2), SEP_ID];
    inputIds.set(ids, i * seqLen);
    padMask.fill(1, i * seqLen, i * seqLen + ids.length);
    labels[i] = ex.label;
  });
  return { count: n, seqLen, inputIds, padMask, labels };
}

/**
 * Rows `indices` of an encoded set as one batch, cut to the longest example in it: glosses are
 * far shorter than seqLen, and padded positions are masked out of attention, so dropping the
 * all-padding columns changes no result and saves most of the compute.
 */
export function takeBatch(set: EncodedExamples, indices: ArrayLike<number>): ClassBatch {
  const S = set.seqLen;
  const B = indices.length;
  let T = 1;
  for (let i = 0; i < B; i++) {
    const row = set.padMask.subarray(indices[i] * S, (indices[i] + 1) * S);
    let len = S;
    while (len > 1 && row[len - 1] === 0) len--;
    T = Math.max(T, len);
  }
  const inputIds = new Int32Array(B * T);
  const padMask = new Float32Array(B * T);
  const labels = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    const r = indices[i];
    inputIds.set(set.inputIds.subarray(r * S, r * S + T), i * T);
    padMask.set(set.padMask.subarray(r * S, r * S + T), i * T);
    labels[i] = set.labels[r];
  }
  return { batch: B, seqLen: T, inputIds, padMask, labels };
}

/** Consecutive evaluation batches over a whole set. */
export function evalBatches(set: EncodedExamples, batchSize: number): ClassBatch[] {
  const out: ClassBatch[] = [];
  for (let s = 0; s < set.count; s += batchSize) out.push(takeBatch(set, Array.from({ length: Math.min(batchSize, set.count - s) }, (_, i) => s + i)));
  return out;
}

/**
 * Classifier weights from a pretrained MLM model: every encoder parameter copied by name, the
 * classification head drawn from the seed (the MLM head is dropped).
 */
export function classifierWeightsFrom(mlmLayout: ParamLayout, mlmWeights: Float32Array, clsLayout: ParamLayout, seed: number, initStd: number): Float32Array {
  const out = initialWeights(clsLayout, seed, initStd);
  for (const s of clsLayout.specs) {
    const src = mlmLayout.byName.get(s.name);
    if (src) out.set(mlmWeights.subarray(src.offset, src.offset + src.size), s.offset);
  }
  return out;
}

export class ClassifierTrainer extends Trainer<ClassBatch> {
  constructor(opts: TrainerOptions, readonly numClasses: number, initial: Float32Array) {
    super(paramLayout(opts.dims, { kind: 'classifier', numClasses }), opts, initial);
  }

  private logits(p: Params, b: ClassBatch): tf.Tensor {
    return classifierLogits(p, this.opts.dims, { ids: tf.tensor1d(b.inputIds, 'int32'), batch: b.batch, padMask: tf.tensor1d(b.padMask, 'float32') });
  }

  protected loss(p: Params, b: ClassBatch): tf.Scalar {
    return crossEntropy(this.logits(p, b), tf.tensor1d(b.labels, 'int32'), this.numClasses) as tf.Scalar;
  }

  protected targets(b: ClassBatch): number {
    return b.batch;
  }

  /** Predicted class per example, in order. */
  async predict(batches: Iterable<ClassBatch>): Promise<Int32Array> {
    await this.settle();
    const out: number[] = [];
    for (const b of batches) {
      const pred = tf.tidy(() => tf.argMax(this.logits(this.tensors.tensors, b), 1));
      out.push(...(await pred.data()));
      pred.dispose();
    }
    return Int32Array.from(out);
  }

  /** Accuracy and mean cross-entropy over the batches (one forward pass each). */
  async score(batches: ClassBatch[]): Promise<{ accuracy: number; loss: number; examples: number }> {
    await this.settle();
    let right = 0;
    let total = 0;
    let examples = 0;
    for (const b of batches) {
      const [pred, loss] = tf.tidy(() => {
        const logits = this.logits(this.tensors.tensors, b);
        return [tf.argMax(logits, 1), crossEntropy(logits, tf.tensor1d(b.labels, 'int32'), this.numClasses)];
      });
      const p = await pred.data();
      total += (await loss.data())[0] * b.batch;
      pred.dispose();
      loss.dispose();
      for (let j = 0; j < b.batch; j++) if (p[j] === b.labels[j]) right++;
      examples += b.batch;
    }
    return { accuracy: right / examples, loss: total / examples, examples };
  }

  async accuracy(batches: ClassBatch[]): Promise<number> {
    const pred = await this.predict(batches);
    let right = 0;
    let i = 0;
    for (const b of batches) for (let j = 0; j < b.batch; j++, i++) if (pred[i] === b.labels[j]) right++;
    return right / pred.length;
  }
}

/** A shuffled order of the training examples per epoch, from the seed. */
export function epochOrder(count: number, epoch: number, seed: number): Int32Array {
  const order = Int32Array.from({ length: count }, (_, i) => i);
  new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).shuffle(order);
  return order;
}
