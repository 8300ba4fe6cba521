/**
 * BERT-style masking with a FIXED number of predictions per sequence (constant FLOPs per
 * step): numMasked = max(1, round(0.15 · (seqLen − 2))) positions per row, drawn uniformly
 * without replacement among the positions that are not [PAD]/[CLS]/[SEP]. Each chosen
 * position independently becomes [MASK] with probability 0.8, a random id in
 * [NUM_SPECIAL, vocabSize) with probability 0.1, or stays unchanged with probability 0.1.
 */
import type { Rng } from '../../core/rng.ts';
import { CLS_ID, MASK_ID, NUM_SPECIAL, PAD_ID, SEP_ID } from './tokenizer.ts';

export const MASK_RATE = 0.15;

export function numMaskedPerSeq(seqLen: number): number {
  return Math.max(1, Math.round(MASK_RATE * (seqLen - 2)));
}

export interface MaskedBatch {
  /** B×T ids after masking. */
  inputIds: Int32Array;
  /** B×numMasked flat positions b·T + t, ascending within each row. */
  maskedPositions: Int32Array;
  /** B×numMasked original ids at those positions. */
  maskedLabels: Int32Array;
}

export function maskBatch(seqs: Int32Array, batch: number, seqLen: number, vocabSize: number, rng: Rng): MaskedBatch {
  if (seqs.length !== batch * seqLen) throw new RangeError(`maskBatch: seqs has ${seqs.length} ids, expected ${batch}×${seqLen}`);
  if (!(vocabSize > NUM_SPECIAL)) throw new RangeError(`maskBatch: vocabSize ${vocabSize} must exceed ${NUM_SPECIAL}`);
  const k = numMaskedPerSeq(seqLen);
  const inputIds = seqs.slice();
  const maskedPositions = new Int32Array(batch * k);
  const maskedLabels = new Int32Array(batch * k);
  const eligible = new Int32Array(seqLen);
  const nRandom = vocabSize - NUM_SPECIAL;
  for (let b = 0; b < batch; b++) {
    const base = b * seqLen;
    let n = 0;
    for (let t = 0; t < seqLen; t++) {
      const id = seqs[base + t];
      if (id !== PAD_ID && id !== CLS_ID && id !== SEP_ID) eligible[n++] = t;
    }
    if (n < k) {
      throw new Error(`maskBatch: sequence ${b} has only ${n} maskable positions, needs ${k} (seqLen ${seqLen})`);
    }
    // Partial Fisher–Yates: the first k entries become a uniform sample without replacement.
    for (let i = 0; i < k; i++) {
      const j = i + rng.int(n - i);
      const tmp = eligible[i];
      eligible[i] = eligible[j];
      eligible[j] = tmp;
    }
    const chosen = eligible.subarray(0, k).sort();
    for (let i = 0; i < k; i++) {
      const pos = base + chosen[i];
      maskedPositions[b * k + i] = pos;
      maskedLabels[b * k + i] = seqs[pos];
      const r = rng.next();
      if (r < 0.8) inputIds[pos] = MASK_ID;
      else if (r < 0.9) inputIds[pos] = NUM_SPECIAL + rng.int(nRandom);
      // else: unchanged
    }
  }
  return { inputIds, maskedPositions, maskedLabels };
}
