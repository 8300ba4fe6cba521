/**
 * BERT/RoBERTa-layout encoder (post-LN, exact GELU, learned absolute positions) with an MLM
 * head (dense + GELU + LayerNorm + tied decoder with bias) and a classification head.
 * Functions of a parameter map, so the same code serves training, evaluation and export.
 */
import { tf, type Tensor } from '../tf.ts';
import { attention, crossEntropy, dense, denseGelu, layerNorm, rowLookup } from './ops.ts';
import type { ModelDims } from './spec.ts';

export type Params = Record<string, Tensor>;

export interface EncoderInput {
  /** Token ids, flat [B*T], int32. */
  ids: Tensor;
  batch: number;
  /** Optional [B*T] float mask: 1 = real token, 0 = padding (fine-tuning batches). */
  padMask?: Tensor;
}

function selfAttention(x: Tensor, p: Params, prefix: string, d: ModelDims, batch: number, keyMask?: Tensor): Tensor {
  const q = dense(x, p[`${prefix}.query.weight`], p[`${prefix}.query.bias`]);
  const k = dense(x, p[`${prefix}.key.weight`], p[`${prefix}.key.bias`]);
  const v = dense(x, p[`${prefix}.value.weight`], p[`${prefix}.value.bias`]);
  return attention(q, k, v, batch, d.heads, keyMask);
}

/** Encoder output [B*T, d]. */
export function encode(p: Params, d: ModelDims, input: EncoderInput): Tensor {
  const { ids, batch } = input;
  const T = ids.shape[0] / batch;
  if (!Number.isInteger(T) || T > d.seqLen) throw new Error(`encode: ${ids.shape[0]} ids do not form ${batch} sequences of at most ${d.seqLen}`);
  const positions = tf.tile(tf.range(0, T, 1, 'int32'), [batch]);
  let x = tf.add(rowLookup(p['embeddings.word_embeddings.weight'], ids), rowLookup(p['embeddings.position_embeddings.weight'], positions));
  x = layerNorm(x, p['embeddings.LayerNorm.weight'], p['embeddings.LayerNorm.bias']);
  // Padding: the attention's key mask [B, T] (1 = real token).
  const keyMask = input.padMask ? tf.reshape(input.padMask, [batch, T]) : undefined;
  for (let i = 0; i < d.layers; i++) {
    const pre = `encoder.layer.${i}`;
    const att = dense(selfAttention(x, p, `${pre}.attention.self`, d, batch, keyMask), p[`${pre}.attention.output.dense.weight`], p[`${pre}.attention.output.dense.bias`]);
    x = layerNorm(tf.add(x, att), p[`${pre}.attention.output.LayerNorm.weight`], p[`${pre}.attention.output.LayerNorm.bias`]);
    const inner = denseGelu(x, p[`${pre}.intermediate.dense.weight`], p[`${pre}.intermediate.dense.bias`]);
    const out = dense(inner, p[`${pre}.output.dense.weight`], p[`${pre}.output.dense.bias`]);
    x = layerNorm(tf.add(x, out), p[`${pre}.output.LayerNorm.weight`], p[`${pre}.output.LayerNorm.bias`]);
  }
  return x;
}

export interface MlmBatch {
  ids: Tensor; // [B*T] int32, masked input
  batch: number;
  maskedPositions: Tensor; // [M] int32, flat indices into B*T
  maskedLabels: Tensor; // [M] int32
}

/** MLM logits for the masked positions only: [M, V]. */
export function mlmLogits(p: Params, d: ModelDims, b: MlmBatch): Tensor {
  const hidden = encode(p, d, { ids: b.ids, batch: b.batch });
  const picked = rowLookup(hidden, b.maskedPositions); // [M, d]
  const t = layerNorm(
    denseGelu(picked, p['cls.predictions.transform.dense.weight'], p['cls.predictions.transform.dense.bias']),
    p['cls.predictions.transform.LayerNorm.weight'],
    p['cls.predictions.transform.LayerNorm.bias'],
  );
  return tf.add(tf.matMul(t, p['embeddings.word_embeddings.weight'], false, true), p['cls.predictions.bias']);
}

export function mlmLoss(p: Params, d: ModelDims, b: MlmBatch): Tensor {
  return crossEntropy(mlmLogits(p, d, b), b.maskedLabels, d.vocab);
}

/** Classification logits [B, C] from the first token of each sequence. */
export function classifierLogits(p: Params, d: ModelDims, input: EncoderInput): Tensor {
  const hidden = encode(p, d, input);
  const T = input.ids.shape[0] / input.batch;
  const firstIdx = tf.range(0, input.batch * T, T, 'int32');
  const first = rowLookup(hidden, firstIdx);
  const pooled = tf.tanh(dense(first, p['classifier.dense.weight'], p['classifier.dense.bias']));
  return dense(pooled, p['classifier.out_proj.weight'], p['classifier.out_proj.bias']);
}
