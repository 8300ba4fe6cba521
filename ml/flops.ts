/**
 * Analytic FLOPs, the one source of truth for budgets. Counts matrix-multiply FLOPs
 * (2·m·n·k per product; element-wise work is ignored, the usual convention), attention
 * products included, the MLM head only on the masked positions (that is what
 * ml/model/transformer.ts computes). Training = 3 × forward: back-propagation through
 * each product runs two products of the same size (tests/flops.test.ts checks this
 * against the FLOPs the kernels actually execute).
 */
import type { ModelDims } from './model/spec.ts';

export interface FlopsBreakdown {
  attentionProjections: number;
  attentionScores: number;
  feedForward: number;
  head: number;
  forward: number;
  training: number;
}

function encoderForward(d: ModelDims, batch: number, seqLen: number) {
  const n = batch * seqLen;
  const projections = d.layers * (4 * 2 * n * d.hidden * d.hidden);
  const scores = d.layers * (2 * 2 * n * seqLen * d.hidden); // QKᵀ and P·V
  const feedForward = d.layers * (2 * 2 * n * d.hidden * d.ffn);
  return { projections, scores, feedForward };
}

function withTotals(enc: ReturnType<typeof encoderForward>, head: number): FlopsBreakdown {
  const forward = enc.projections + enc.scores + enc.feedForward + head;
  return { attentionProjections: enc.projections, attentionScores: enc.scores, feedForward: enc.feedForward, head, forward, training: 3 * forward };
}

/** One MLM training step of `batch` sequences of `d.seqLen` tokens with `maskedPerSeq` predictions each. */
export function mlmStepFlops(d: ModelDims, batch: number, maskedPerSeq: number): FlopsBreakdown {
  const m = batch * maskedPerSeq;
  const head = 2 * m * d.hidden * d.hidden + 2 * m * d.hidden * d.vocab;
  return withTotals(encoderForward(d, batch, d.seqLen), head);
}

/** One classification step (fine-tuning) of `batch` sequences of `seqLen` tokens. */
export function classifierStepFlops(d: ModelDims, batch: number, seqLen: number, numClasses: number): FlopsBreakdown {
  const head = 2 * batch * d.hidden * d.hidden + 2 * batch * d.hidden * numClasses;
  return withTotals(encoderForward(d, batch, seqLen), head);
}

/**
 * One training step of the translation model (ml/model/seq2seq.ts) on `batch` pairs whose source
 * and target sides are `srcLen` and `tgtLen` tokens: the encoder as above; per decoder layer the
 * causal self-attention (projections and full T×T scores: the code computes the whole matrix and
 * masks it), the cross-attention (query and output projections on the target, key and value
 * projections on the source, Tt×Ts scores) and the FFN; the tied output projection on every
 * target position. Budgets count each pair at seqLen tokens per side (ml/train/controller.ts): an
 * upper bound, since batches are cut to their longest pair.
 */
export function seq2seqStepFlops(d: ModelDims & { decoderLayers: number }, batch: number, srcLen: number, tgtLen: number): FlopsBreakdown {
  const enc = encoderForward(d, batch, srcLen);
  const nt = batch * tgtLen;
  const ns = batch * srcLen;
  const L = d.decoderLayers;
  const projections = enc.projections + L * (4 * 2 * nt * d.hidden * d.hidden + 2 * 2 * nt * d.hidden * d.hidden + 2 * 2 * ns * d.hidden * d.hidden);
  const scores = enc.scores + L * (2 * 2 * nt * tgtLen * d.hidden + 2 * 2 * nt * srcLen * d.hidden);
  const feedForward = enc.feedForward + L * (2 * 2 * nt * d.hidden * d.ffn);
  const head = 2 * nt * d.hidden * d.vocab;
  return withTotals({ projections, scores, feedForward }, head);
}
