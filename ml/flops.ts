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
