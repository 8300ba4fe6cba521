/**
 * The unigram baseline: cross-entropy (nats) of predicting each masked token from the training
 * set's token frequencies alone (add-one smoothing). A model that has learned nothing about
 * context scores about this; ln(vocab) is the weaker uniform baseline.
 */
export function unigramCrossEntropy(trainTokens: Int32Array, vocab: number, targets: Iterable<Int32Array>): number {
  const counts = new Float64Array(vocab).fill(1);
  for (let i = 0; i < trainTokens.length; i++) counts[trainTokens[i]] += 1;
  const total = counts.reduce((a, b) => a + b, 0);
  let nll = 0;
  let n = 0;
  for (const labels of targets) {
    for (let i = 0; i < labels.length; i++) {
      nll -= Math.log(counts[labels[i]] / total);
      n += 1;
    }
  }
  return n > 0 ? nll / n : NaN;
}
