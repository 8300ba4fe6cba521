/**
 * Decoding the translation model (./seq2seq.ts): greedy and beam search over a batch of sources.
 * The encoder runs once per batch, and so do the cross-attention keys and values of every decoder
 * layer; each step then runs the decoder over the whole prefix (no self-attention cache: simple,
 * O(n²) in the output length, fine at these lengths) and reads the last position's log-probabilities
 * back to the host, where the choice is made (ties go to the lower token id, then the earlier beam).
 *
 * Beam search keeps up to `beam` live hypotheses per source: of the 2·beam best extensions (score =
 * sum of log-probabilities), one that ends ([SEP]) among the best `beam` is finished with the
 * normalized score score / length^alpha (length in generated tokens, [SEP] included), the others
 * stay live until `beam` are. A source is done when no hypothesis is live, at the length cap (the
 * live ones then count as finished), or once `beam` have finished and the best live one, normalized
 * as if it ended now, does not beat the beam-th best finished one (Hugging Face's early_stopping =
 * false rule: a heuristic when alpha > 0). The best normalized score wins. beam = 1 is exactly
 * greedy search: the first [SEP] that is the best extension ends it.
 */
import { tf, type Tensor } from '../tf.ts';
import type { Params } from './transformer.ts';
import { encode } from './transformer.ts';
import { crossKeysValues, decodeHidden, keyPaddingBias, outputLogits, type Seq2SeqDims } from './seq2seq.ts';

export interface SearchOptions {
  /** hypotheses kept per source (1 = greedy) */
  beam: number;
  /** length normalization exponent (0 = raw sum of log-probabilities) */
  alpha: number;
  /** the decoder's first input ([CLS]) and the end-of-sentence token ([SEP]) */
  bos: number;
  eos: number;
  /** most generated tokens per source ([SEP] included); default: seqLen */
  maxLen?: (srcTokens: number) => number;
}

interface Encoded {
  enc: Tensor;
  kv: Array<[Tensor, Tensor]>;
  mask: Tensor;
  srcLen: number;
}

/** Sources (ids with their [SEP]) padded into one batch, encoded. */
function encodeSources(p: Params, d: Seq2SeqDims, sources: ReadonlyArray<ArrayLike<number>>): Encoded {
  const B = sources.length;
  const Ts = Math.max(1, ...sources.map((s) => s.length));
  const ids = new Int32Array(B * Ts); // padding: id 0, masked out
  const mask = new Float32Array(B * Ts);
  sources.forEach((s, i) => {
    ids.set(s, i * Ts);
    mask.fill(1, i * Ts, i * Ts + s.length);
  });
  return tf.tidy(() => {
    const m = tf.tensor1d(mask, 'float32');
    const enc = encode(p, d, { ids: tf.tensor1d(ids, 'int32'), batch: B, padMask: m });
    return { enc, kv: crossKeysValues(p, d, enc), mask: m, srcLen: Ts };
  }) as Encoded;
}

function disposeEncoded(e: Encoded): void {
  tf.dispose([e.enc, e.mask, ...e.kv.flat()]);
}

/**
 * Log-probabilities [rows.length, V] of the next token after each prefix; row r decodes prefix r
 * against source rows[r] of the encoded batch. Prefixes have equal length.
 */
async function nextLogProbs(p: Params, d: Seq2SeqDims, e: Encoded, rows: number[], prefixes: number[][]): Promise<Float32Array> {
  const n = rows.length;
  const T = prefixes[0]!.length;
  const ids = new Int32Array(n * T);
  prefixes.forEach((pr, i) => ids.set(pr, i * T));
  const out = tf.tidy(() => {
    const idx = tf.tensor1d(Int32Array.from(rows), 'int32');
    const D = d.hidden;
    const pick = (t: Tensor) => tf.reshape(tf.gather(tf.reshape(t, [-1, e.srcLen, D]), idx), [n * e.srcLen, D]);
    const kv = e.kv.map(([k, v]) => [pick(k), pick(v)] as [Tensor, Tensor]);
    const mask = tf.reshape(tf.gather(tf.reshape(e.mask, [-1, e.srcLen]), idx), [n * e.srcLen]);
    const hidden = decodeHidden(p, d, { tgtIn: tf.tensor1d(ids, 'int32'), batch: n, kv, srcBias: keyPaddingBias(mask, n) });
    const last = tf.gather(hidden, tf.range(T - 1, n * T, T, 'int32'));
    return tf.logSoftmax(outputLogits(p, last));
  });
  try {
    return (await out.data()) as Float32Array;
  } finally {
    out.dispose();
  }
}

/** Indices of the `k` largest values of row[0..V) (ties: lower index first), best first. */
function topK(row: Float32Array, from: number, V: number, k: number): number[] {
  const best: number[] = [];
  for (let j = 0; j < V; j++) {
    const x = row[from + j]!;
    if (best.length === k && x <= row[from + best[k - 1]!]!) continue;
    let at = best.length;
    while (at > 0 && x > row[from + best[at - 1]!]!) at--;
    best.splice(at, 0, j);
    if (best.length > k) best.pop();
  }
  return best;
}

interface Hyp {
  tokens: number[];
  score: number;
}

/**
 * Translations of `sources` (token ids, each ending with [SEP]) as target token ids (without [CLS]
 * or [SEP]). Both searches read the same log-probabilities: beam 1 returns exactly greedy's tokens.
 */
export async function translate(p: Params, d: Seq2SeqDims, sources: ReadonlyArray<ArrayLike<number>>, o: SearchOptions): Promise<number[][]> {
  if (sources.length === 0) return [];
  const k = o.beam;
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`beam must be a positive integer, got ${k}`);
  const e = encodeSources(p, d, sources);
  const V = d.vocab;
  const cap = sources.map((s) => Math.max(1, Math.min(d.seqLen, o.maxLen ? o.maxLen(s.length) : d.seqLen)));
  const alive: Hyp[][] = sources.map(() => [{ tokens: [], score: 0 }]);
  const finished: Array<Array<Hyp & { norm: number }>> = sources.map(() => []);
  const done = sources.map(() => false);
  const norm = (h: Hyp, len: number) => (o.alpha === 0 ? h.score : h.score / Math.pow(len, o.alpha));
  try {
    for (let t = 0; ; t++) {
      const rows: number[] = [];
      const prefixes: number[][] = [];
      for (let s = 0; s < sources.length; s++) {
        if (done[s]) continue;
        for (const h of alive[s]!) {
          rows.push(s);
          prefixes.push([o.bos, ...h.tokens]);
        }
      }
      if (rows.length === 0) break;
      const lp = await nextLogProbs(p, d, e, rows, prefixes);
      let r = 0;
      for (let s = 0; s < sources.length; s++) {
        if (done[s]) continue;
        const cands: Array<{ beam: number; token: number; score: number }> = [];
        alive[s]!.forEach((h, b) => {
          for (const j of topK(lp, (r + b) * V, V, Math.min(V, 2 * k))) cands.push({ beam: b, token: j, score: h.score + lp[(r + b) * V + j]! });
        });
        r += alive[s]!.length;
        // stable: equal scores keep (beam, token) order
        cands.sort((a, b) => b.score - a.score);
        const next: Hyp[] = [];
        const len = t + 1;
        for (let i = 0; i < cands.length && next.length < k; i++) {
          const c = cands[i]!;
          const tokens = [...alive[s]![c.beam]!.tokens, c.token];
          if (c.token === o.eos) {
            // only an end among the k best candidates finishes a hypothesis (as fairseq does)
            if (i < k) {
              const h = { tokens: tokens.slice(0, -1), score: c.score };
              finished[s]!.push({ ...h, norm: norm(h, len) });
            }
          } else {
            next.push({ tokens, score: c.score });
          }
        }
        alive[s] = next;
        const f = finished[s]!;
        if (next.length === 0) done[s] = true;
        else if (len >= cap[s]!) {
          for (const h of next) f.push({ ...h, norm: norm(h, len) });
          done[s] = true;
        } else if (f.length >= k) {
          // k finished: done once the best live hypothesis, scored as if it ended now, cannot beat the k-th best finished one
          const kth = f.map((h) => h.norm).sort((a, b) => b - a)[k - 1]!;
          if (norm(next[0]!, len) <= kth) done[s] = true;
        }
      }
    }
  } finally {
    disposeEncoded(e);
  }
  return finished.map((f) => {
    let best = f[0]!;
    for (const h of f) if (h.norm > best.norm) best = h;
    return best.tokens;
  });
}

/** Greedy search: beam 1. */
export function greedy(p: Params, d: Seq2SeqDims, sources: ReadonlyArray<ArrayLike<number>>, o: Pick<SearchOptions, 'bos' | 'eos' | 'maxLen'>): Promise<number[][]> {
  return translate(p, d, sources, { ...o, beam: 1, alpha: 0 });
}
