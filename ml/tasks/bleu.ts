/**
 * Corpus BLEU computed exactly as sacreBLEU 2.x computes it with its defaults (`sacrebleu.corpus_bleu`
 * / `BLEU()`: tokenize '13a', n-gram orders 1..4, smooth_method 'exp', mixed case, no effective
 * order), ported line by line from sacrebleu/metrics/bleu.py and sacrebleu/tokenizers/
 * tokenizer_13a.py + tokenizer_re.py (github.com/mjpost/sacrebleu, read at commit f615c72):
 *
 * - every segment is `rstrip()`ped, then tokenized (13a: mteval-v13a.pl's rules, below);
 * - per segment: n-grams of the hypothesis are matched against the n-grams of all its references,
 *   each clipped to its largest count in any one reference; the reference length is the one closest
 *   to the hypothesis length (a tie takes the shorter);
 * - the counts are summed over the corpus, then
 *   BP = 1 when c ≥ r, exp(1 − r/c) when 0 < c < r, 0 when c = 0;
 *   p_n = 100·correct_n/total_n, and with 'exp' smoothing a p_n whose correct_n = 0 becomes
 *   100/(2^k·total_n) for the k-th such order (NIST's smoothing, mteval-v13a); a total_n = 0 ends the
 *   loop with p_n (and the higher ones) left at 0, whose log counts as −9,999,999,999;
 *   no match at all (every correct_n = 0) gives 0;
 *   BLEU = BP · exp(Σ log p_n / 4), on the 0..100 scale.
 * docs/translation.md has the definition and the worked examples of tests/unit/bleu.test.ts.
 */

export type BleuTokenizer = '13a' | 'none';
export type BleuSmoothing = 'exp' | 'none' | 'floor' | 'add-k';

export interface BleuOptions {
  /** '13a' (default) or 'none' (split on whitespace only) */
  tokenize?: BleuTokenizer;
  /** lowercase both sides before tokenizing (default false) */
  lowercase?: boolean;
  /** default 'exp' */
  smoothMethod?: BleuSmoothing;
  /** 'floor' (default 0.1) and 'add-k' (default 1) */
  smoothValue?: number;
  /** default 4 */
  maxNgramOrder?: number;
  /** average only over the orders up to the last with any hypothesis n-gram (sacreBLEU's effective_order; default false, true for sentenceBleu) */
  effectiveOrder?: boolean;
}

export interface BleuScore {
  /** 0..100 */
  score: number;
  /** matched (clipped) n-grams of each order */
  counts: number[];
  /** hypothesis n-grams of each order */
  totals: number[];
  /** p_n on the 0..100 scale (after smoothing) */
  precisions: number[];
  /** brevity penalty */
  bp: number;
  /** hypothesis tokens (c) */
  sysLen: number;
  /** effective reference tokens (r) */
  refLen: number;
}

// Python's str.split() / str.isspace() whitespace (JS's \s differs: it lacks \x1c-\x1f and \x85, and has \ufeff).
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const PY_SPACE_END = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/;

/** Python's `s.split()`: the non-empty runs between whitespace. */
function pySplit(s: string): string[] {
  return s.split(PY_SPACE).filter((t) => t !== '');
}

// tokenizer_re.py (TokenizerRegexp), applied in order with Python re.sub semantics (non-overlapping, left to right: JS's /g replace).
const RE_13A: Array<[RegExp, string]> = [
  // language-dependent part (assuming Western languages): { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
  [/([{-~\[-` -&(-+:-@\/])/g, ' $1 '],
  // tokenize period and comma unless preceded by a digit
  [/([^0-9])([.,])/g, '$1 $2 '],
  // tokenize period and comma unless followed by a digit
  [/([.,])([^0-9])/g, ' $1 $2'],
  // tokenize dash when preceded by a digit
  [/([0-9])(-)/g, '$1 $2 '],
];

/**
 * sacreBLEU's Tokenizer13a: drop `<skipped>`, join `-\n` hyphenations, newlines → spaces, unescape
 * &quot; &amp; &lt; &gt; (in that order), then the regexes above on ` line `, and single spaces.
 */
export function tokenize13a(line: string): string {
  let s = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (s.includes('&')) s = s.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  s = ` ${s} `;
  for (const [re, repl] of RE_13A) s = s.replace(re, repl);
  return pySplit(s).join(' ');
}

const SMOOTH_DEFAULTS: Record<BleuSmoothing, number | undefined> = { none: undefined, floor: 0.1, 'add-k': 1, exp: undefined };

function preprocess(sent: string, o: Required<Pick<BleuOptions, 'tokenize' | 'lowercase'>>): string {
  let s = o.lowercase ? sent.toLowerCase() : sent;
  s = s.replace(PY_SPACE_END, ''); // rstrip()
  return o.tokenize === '13a' ? tokenize13a(s) : s;
}

/** n-grams of orders 1..maxOrder of a tokenized line (keys: tokens joined by '\u0001'), and its token count. */
function ngramCounts(line: string, maxOrder: number): { counts: Map<string, number>; len: number } {
  const tokens = pySplit(line);
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = `${n}\u0000${tokens.slice(i, i + n).join('\u0001')}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return { counts, len: tokens.length };
}

/** The reference length closest to the hypothesis length; a tie takes the shorter (sacreBLEU's _get_closest_ref_len). */
export function closestRefLen(hypLen: number, refLens: number[]): number {
  let closestDiff = -1;
  let closestLen = -1;
  for (const r of refLens) {
    const diff = Math.abs(hypLen - r);
    if (closestDiff === -1 || diff < closestDiff) {
      closestDiff = diff;
      closestLen = r;
    } else if (diff === closestDiff && r < closestLen) closestLen = r;
  }
  return closestLen;
}

/** sacreBLEU's my_log: log, floored at −9,999,999,999 for 0. */
function myLog(x: number): number {
  return x > 0 ? Math.log(x) : -9999999999;
}

/** BLEU from its sufficient statistics (sacreBLEU's BLEU.compute_bleu; `counts`/`totals` are not modified). */
export function computeBleu(
  counts: readonly number[],
  totals: readonly number[],
  sysLen: number,
  refLen: number,
  opts: Pick<BleuOptions, 'smoothMethod' | 'smoothValue' | 'effectiveOrder' | 'maxNgramOrder'> = {},
): BleuScore {
  const method = opts.smoothMethod ?? 'exp';
  const maxOrder = opts.maxNgramOrder ?? 4;
  const value = opts.smoothValue ?? SMOOTH_DEFAULTS[method];
  const correct = counts.slice(0, maxOrder);
  const total = totals.slice(0, maxOrder);
  let bp = 1;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0;
  const precisions = new Array<number>(maxOrder).fill(0);
  const result = (score: number): BleuScore => ({ score, counts: correct, totals: total, precisions, bp, sysLen, refLen });
  if (!correct.some((c) => c !== 0)) return result(0);
  let smoothMteval = 1;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (method === 'add-k' && n > 1) {
      correct[n - 1]! += value!;
      total[n - 1]! += value!;
    }
    if (total[n - 1] === 0) break;
    if (opts.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (method === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!);
      } else if (method === 'floor') precisions[n - 1] = (100 * value!) / total[n - 1]!;
    } else precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
  }
  let sum = 0;
  for (const p of precisions.slice(0, effOrder)) sum += myLog(p);
  return result(bp * Math.exp(sum / effOrder));
}

function resolved(opts: BleuOptions) {
  const maxNgramOrder = opts.maxNgramOrder ?? 4;
  if (!Number.isInteger(maxNgramOrder) || maxNgramOrder < 1) throw new RangeError(`maxNgramOrder: expected a positive integer, got ${maxNgramOrder}`);
  const tokenize = opts.tokenize ?? '13a';
  if (tokenize !== '13a' && tokenize !== 'none') throw new RangeError(`tokenize: expected '13a' or 'none', got ${String(tokenize)}`);
  const smoothMethod = opts.smoothMethod ?? 'exp';
  if (!Object.hasOwn(SMOOTH_DEFAULTS, smoothMethod)) throw new RangeError(`smoothMethod: expected exp, none, floor or add-k, got ${String(smoothMethod)}`);
  return { ...opts, maxNgramOrder, tokenize, smoothMethod, lowercase: opts.lowercase ?? false };
}

/** One segment's statistics: [hypLen, refLen, correct_1..N, total_1..N] (sacreBLEU's _compute_segment_statistics). */
function segmentStats(hyp: string, refs: string[], o: ReturnType<typeof resolved>): number[] {
  const N = o.maxNgramOrder;
  const refNgrams = new Map<string, number>();
  const refLens: number[] = [];
  for (const ref of refs) {
    const { counts, len } = ngramCounts(preprocess(ref, o), N);
    refLens.push(len);
    for (const [k, c] of counts) if (c > (refNgrams.get(k) ?? 0)) refNgrams.set(k, c);
  }
  const { counts, len } = ngramCounts(preprocess(hyp, o), N);
  const correct = new Array<number>(N).fill(0);
  const total = new Array<number>(N).fill(0);
  for (const [k, c] of counts) {
    const n = Number(k.slice(0, k.indexOf('\u0000'))) - 1;
    total[n]! += c;
    const r = refNgrams.get(k);
    if (r !== undefined) correct[n]! += Math.min(c, r);
  }
  return [len, closestRefLen(len, refLens), ...correct, ...total];
}

/**
 * Corpus BLEU of `hypotheses` against reference streams, in sacreBLEU's shape: `references[k][i]` is the
 * k-th reference of segment i (one stream for a single reference: `[refs]`). A reference that is
 * `undefined`/`null` is left out of that segment (a variable number of references).
 */
export function corpusBleu(hypotheses: readonly string[], references: ReadonlyArray<ReadonlyArray<string | null | undefined>>, opts: BleuOptions = {}): BleuScore {
  const o = resolved(opts);
  if (references.length === 0) throw new RangeError('corpusBleu: no reference stream');
  for (const [k, stream] of references.entries()) {
    if (stream.length !== hypotheses.length) throw new RangeError(`corpusBleu: reference stream ${k} has ${stream.length} segments, the hypotheses ${hypotheses.length}`);
  }
  const N = o.maxNgramOrder;
  const sum = new Array<number>(2 + 2 * N).fill(0);
  hypotheses.forEach((hyp, i) => {
    const refs = references.map((s) => s[i]).filter((r): r is string => r !== undefined && r !== null);
    const st = segmentStats(hyp, refs, o);
    for (let j = 0; j < sum.length; j++) sum[j]! += st[j]!;
  });
  return computeBleu(sum.slice(2, 2 + N), sum.slice(2 + N), sum[0]!, sum[1]!, o);
}

/** Sentence BLEU as `sacrebleu.sentence_bleu` computes it: one segment, effective order on by default. */
export function sentenceBleu(hypothesis: string, references: readonly string[], opts: BleuOptions = {}): BleuScore {
  return corpusBleu([hypothesis], references.map((r) => [r]), { effectiveOrder: true, ...opts });
}
