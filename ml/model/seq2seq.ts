/**
 * The translation model: a Transformer encoder–decoder. The encoder is the BERT encoder of
 * transformer.ts (bidirectional, post-LN, padding masked); the decoder (spec.ts, decoderEntries) is
 * the same block with causal self-attention and a cross-attention over the encoder output between
 * the self-attention and the FFN. One subword vocabulary serves both languages: the word embeddings
 * are shared by the encoder, the decoder input and the output projection (tied, plus a bias).
 *
 * Token conventions (ml/data/translation.ts): a source is its tokens then [SEP] (end of sentence);
 * the decoder reads [CLS] (begin) y1 … y(n−1) and is trained to predict y1 … yn [SEP]; [PAD] fills
 * batches. Training is teacher-forced cross-entropy over the real target positions only.
 *
 * The attention here is a composition of tfjs ops with an additive mask (causal and/or key padding;
 * query and key lengths may differ), not the fused TtcAttention kernel, which takes equal lengths
 * and a key mask only. Greedy and beam search are in ./search.ts.
 */
import { tf, type Tensor } from '../tf.ts';
import { crossEntropy, dense, denseGelu, layerNorm, rowLookup } from './ops.ts';
import { encode, type Params } from './transformer.ts';
import type { ModelDims } from './spec.ts';
import { MASKED_SCORE, softmaxCrossEntropyRows } from '../kernels/fused.ts';

export interface Seq2SeqDims extends ModelDims {
  /** decoder layers (model.layers is the encoder's depth) */
  decoderLayers: number;
}

/** A padded batch of pairs (host arrays); lengths are the longest of the batch. */
export interface Seq2SeqBatch {
  batch: number;
  srcLen: number;
  tgtLen: number;
  /** [B*srcLen] source ids (tokens, [SEP], [PAD]…) */
  srcIds: Int32Array;
  /** [B*srcLen] 1 = real token, 0 = padding */
  srcMask: Float32Array;
  /** [B*tgtLen] decoder input: [CLS] y1 … y(n−1), [PAD]… */
  tgtIn: Int32Array;
  /** flat indices into B*tgtLen of the real target positions */
  labelPositions: Int32Array;
  /** the token each of those positions must predict (y1 … yn [SEP]) */
  labels: Int32Array;
  /**
   * Data-parallel: the loss is sum(token losses) × lossWeight instead of their mean, with lossWeight =
   * worldSize / (target tokens of the whole global batch), so the ring's mean over ranks is exactly
   * the token mean of the global batch (ranks' batches hold different numbers of tokens). Absent: the mean.
   */
  lossWeight?: number;
}

/** Multi-head attention of q [B*Tq, D] over k, v [B*Tk, D] with an additive score bias broadcastable to [B, H, Tq, Tk]. */
export function maskedAttention(q: Tensor, k: Tensor, v: Tensor, batch: number, heads: number, bias?: Tensor): Tensor {
  const D = q.shape[1]!;
  const dh = D / heads;
  const Tq = q.shape[0]! / batch;
  const Tk = k.shape[0]! / batch;
  const split = (x: Tensor, T: number) => tf.transpose(tf.reshape(x, [batch, T, heads, dh]), [0, 2, 1, 3]);
  let scores = tf.mul(tf.matMul(split(q, Tq), split(k, Tk), false, true), 1 / Math.sqrt(dh));
  if (bias) scores = tf.add(scores, bias);
  const ctx = tf.matMul(tf.softmax(scores), split(v, Tk)); // [B, H, Tq, dh]
  return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * Tq, D]);
}

/** [1, 1, T, T]: 0 where key j ≤ query i, MASKED_SCORE above the diagonal. */
export function causalBias(T: number): Tensor {
  return tf.tidy(() => {
    const i = tf.reshape(tf.range(0, T, 1, 'int32'), [T, 1]);
    const j = tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]);
    return tf.reshape(tf.mul(tf.cast(tf.greater(j, i), 'float32'), MASKED_SCORE), [1, 1, T, T]);
  });
}

/** [B, 1, 1, Ts] from a [B*Ts] source mask (1 real, 0 padding). */
export function keyPaddingBias(srcMask: Tensor, batch: number): Tensor {
  const Ts = srcMask.shape[0]! / batch;
  return tf.reshape(tf.mul(tf.sub(1, srcMask), MASKED_SCORE), [batch, 1, 1, Ts]);
}

/** The cross-attention keys and values of every decoder layer, computed once per source batch (reused at every decoding step). */
export function crossKeysValues(p: Params, d: Seq2SeqDims, enc: Tensor): Array<[Tensor, Tensor]> {
  const out: Array<[Tensor, Tensor]> = [];
  for (let i = 0; i < d.decoderLayers; i++) {
    const pre = `decoder.layer.${i}.crossattention.self`;
    out.push([dense(enc, p[`${pre}.key.weight`], p[`${pre}.key.bias`]), dense(enc, p[`${pre}.value.weight`], p[`${pre}.value.bias`])]);
  }
  return out;
}

export interface DecoderInput {
  /** [B*Tt] int32 decoder input ids */
  tgtIn: Tensor;
  batch: number;
  /** per decoder layer: cross-attention keys and values [B*Ts, D] */
  kv: Array<[Tensor, Tensor]>;
  /** [B, 1, 1, Ts] additive source padding bias */
  srcBias: Tensor;
}

/** Decoder output [B*Tt, D]. */
export function decodeHidden(p: Params, d: Seq2SeqDims, input: DecoderInput): Tensor {
  const { tgtIn, batch, kv, srcBias } = input;
  const T = tgtIn.shape[0]! / batch;
  if (!Number.isInteger(T) || T > d.seqLen) throw new Error(`decode: ${tgtIn.shape[0]} ids do not form ${batch} sequences of at most ${d.seqLen}`);
  const positions = tf.tile(tf.range(0, T, 1, 'int32'), [batch]);
  let x = tf.add(rowLookup(p['embeddings.word_embeddings.weight'], tgtIn), rowLookup(p['decoder.embeddings.position_embeddings.weight'], positions));
  x = layerNorm(x, p['decoder.embeddings.LayerNorm.weight'], p['decoder.embeddings.LayerNorm.bias']);
  const causal = causalBias(T);
  for (let i = 0; i < d.decoderLayers; i++) {
    const pre = `decoder.layer.${i}`;
    const sa = `${pre}.attention`;
    const selfCtx = maskedAttention(
      dense(x, p[`${sa}.self.query.weight`], p[`${sa}.self.query.bias`]),
      dense(x, p[`${sa}.self.key.weight`], p[`${sa}.self.key.bias`]),
      dense(x, p[`${sa}.self.value.weight`], p[`${sa}.self.value.bias`]),
      batch,
      d.heads,
      causal,
    );
    x = layerNorm(tf.add(x, dense(selfCtx, p[`${sa}.output.dense.weight`], p[`${sa}.output.dense.bias`])), p[`${sa}.output.LayerNorm.weight`], p[`${sa}.output.LayerNorm.bias`]);
    const ca = `${pre}.crossattention`;
    const [k, v] = kv[i]!;
    const crossCtx = maskedAttention(dense(x, p[`${ca}.self.query.weight`], p[`${ca}.self.query.bias`]), k, v, batch, d.heads, srcBias);
    x = layerNorm(tf.add(x, dense(crossCtx, p[`${ca}.output.dense.weight`], p[`${ca}.output.dense.bias`])), p[`${ca}.output.LayerNorm.weight`], p[`${ca}.output.LayerNorm.bias`]);
    const inner = denseGelu(x, p[`${pre}.intermediate.dense.weight`], p[`${pre}.intermediate.dense.bias`]);
    x = layerNorm(tf.add(x, dense(inner, p[`${pre}.output.dense.weight`], p[`${pre}.output.dense.bias`])), p[`${pre}.output.LayerNorm.weight`], p[`${pre}.output.LayerNorm.bias`]);
  }
  return x;
}

/** Output logits [N, V] of decoder hidden rows [N, D] (tied word embeddings + bias). */
export function outputLogits(p: Params, hidden: Tensor): Tensor {
  return tf.add(tf.matMul(hidden, p['embeddings.word_embeddings.weight'], false, true), p['decoder.lm_head.bias']);
}

/** Tensors of a host batch. */
export interface Seq2SeqTensors {
  srcIds: Tensor;
  srcMask: Tensor;
  tgtIn: Tensor;
  labelPositions: Tensor;
  labels: Tensor;
  batch: number;
  lossWeight?: number;
}

export function batchTensors(b: Seq2SeqBatch): Seq2SeqTensors {
  return {
    srcIds: tf.tensor1d(b.srcIds, 'int32'),
    srcMask: tf.tensor1d(b.srcMask, 'float32'),
    tgtIn: tf.tensor1d(b.tgtIn, 'int32'),
    labelPositions: tf.tensor1d(b.labelPositions, 'int32'),
    labels: tf.tensor1d(b.labels, 'int32'),
    batch: b.batch,
    lossWeight: b.lossWeight,
  };
}

/** Teacher-forced logits of the real target positions [M, V]. */
export function seq2seqLogits(p: Params, d: Seq2SeqDims, b: Seq2SeqTensors): Tensor {
  const enc = encode(p, d, { ids: b.srcIds, batch: b.batch, padMask: b.srcMask });
  const hidden = decodeHidden(p, d, { tgtIn: b.tgtIn, batch: b.batch, kv: crossKeysValues(p, d, enc), srcBias: keyPaddingBias(b.srcMask, b.batch) });
  return outputLogits(p, rowLookup(hidden, b.labelPositions));
}

/** Mean cross-entropy over the real target positions (or their sum × b.lossWeight, see Seq2SeqBatch). */
export function seq2seqLoss(p: Params, d: Seq2SeqDims, b: Seq2SeqTensors): Tensor {
  const logits = seq2seqLogits(p, d, b);
  if (b.lossWeight === undefined) return crossEntropy(logits, b.labels, d.vocab);
  return tf.mul(tf.sum(softmaxCrossEntropyRows(logits, b.labels, d.vocab)), b.lossWeight);
}
