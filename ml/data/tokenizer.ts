/**
 * Byte-pair-encoding subword tokenizer (trained here; see docs/data.md for why not a library).
 *
 * Normalization (`normalizeText`): Unicode NFKC, lowercase, NFKC again, every run of
 * whitespace (JS `\s`) → one space, trimmed.
 *
 * Pre-tokenization of the normalized text: maximal runs of letters/combining marks
 * (`[\p{L}\p{M}]+`), maximal runs of digits (`\p{N}+`), and every other non-space
 * code point on its own. Runs longer than MAX_WORD_CHARS code points are cut into
 * pieces of that length. A piece that follows a space — and the first piece of the
 * text — carries a word-start marker `▁` (U+2581) as its first symbol, as in
 * SentencePiece; the marker is a vocabulary symbol of its own and merges like a char.
 *
 * Vocabulary: ids 0–4 are `[PAD] [UNK] [CLS] [SEP] [MASK]`, id 5 the marker `▁`, then
 * the alphabet (every code point seen in training, printable ASCII always included;
 * U+2581 itself never), then one symbol per learned merge, in merge order. A code point
 * outside the alphabet encodes as [UNK] (one per code point); nothing throws.
 *
 * Round trip: for any text whose code points are all in the alphabet,
 * `decode(encode(t)) === normalizeText(t)`. `decode` maps the marker to a space, drops
 * the single leading space, renders [UNK] as `[UNK]` and the other specials as ` [NAME]`
 * (or skips them with `skipSpecial`). `encode` never adds [CLS]/[SEP]; literal text such
 * as "[MASK]" is ordinary text.
 */

import { runSync } from '../../core/pace.ts';

export const PAD_ID = 0;
export const UNK_ID = 1;
export const CLS_ID = 2;
export const SEP_ID = 3;
export const MASK_ID = 4;
export const NUM_SPECIAL = 5;
export const SPECIAL_TOKENS: readonly string[] = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
/** Word-start marker symbol and its id. */
export const WORD_START = '\u2581';
export const WORD_START_ID = NUM_SPECIAL;
export const MAX_WORD_CHARS = 64;

const FORMAT = 'ttc-bpe';
const FORMAT_VERSION = 1;
const PAIR_SHIFT = 2097152; // 2^21: ids stay below this

/** NFKC, lowercase, NFKC, whitespace runs → one space, trim. */
export function normalizeText(text: string): string {
  return text.normalize('NFKC').toLowerCase().normalize('NFKC').replace(/\s+/g, ' ').trim();
}

const PRETOKEN_RE = /[\p{L}\p{M}]+|\p{N}+|\S/gu;

/**
 * Calls `fn(piece, startsWord)` for every pre-token of already-normalized text.
 * startsWord is true for the first piece and for pieces that follow a space.
 */
export function forEachPretoken(norm: string, fn: (piece: string, startsWord: boolean) => void): void {
  PRETOKEN_RE.lastIndex = 0;
  let prevEnd = 0;
  let m: RegExpExecArray | null;
  while ((m = PRETOKEN_RE.exec(norm)) !== null) {
    const w = m[0];
    const startsWord = m.index === 0 || m.index !== prevEnd;
    prevEnd = m.index + w.length;
    if (w.length <= MAX_WORD_CHARS) {
      fn(w, startsWord);
    } else {
      const cps = Array.from(w);
      if (cps.length <= MAX_WORD_CHARS) fn(w, startsWord);
      else for (let i = 0; i < cps.length; i += MAX_WORD_CHARS) fn(cps.slice(i, i + MAX_WORD_CHARS).join(''), startsWord && i === 0);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Max-heap of (count, pairKey): larger count first, smaller key on ties (deterministic).

class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.counts.length;
  }
  private above(i: number, j: number): boolean {
    const ci = this.counts[i];
    const cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }
  private swap(i: number, j: number): void {
    const c = this.counts[i];
    this.counts[i] = this.counts[j];
    this.counts[j] = c;
    const k = this.keys[i];
    this.keys[i] = this.keys[j];
    this.keys[j] = k;
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  topCount(): number {
    return this.counts[0];
  }
  topKey(): number {
    return this.keys[0];
  }
  pop(): void {
    const last = this.counts.length - 1;
    this.swap(0, last);
    this.counts.pop();
    this.keys.pop();
    const n = this.counts.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < n && this.above(l, best)) best = l;
      if (r < n && this.above(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
  }
}

// ---------------------------------------------------------------------------------------

export interface TokenizerJSON {
  type: typeof FORMAT;
  version: number;
  normalization: string;
  /** Token strings by id. */
  vocab: string[];
  /** Index of the first merged symbol in `vocab`. */
  firstMerge: number;
  /** Flat [left, right] id pairs, one per merged symbol (vocab[firstMerge + i]). */
  merges: number[];
}

export class Tokenizer {
  readonly vocabSize: number;
  private readonly vocab: string[];
  private readonly firstMerge: number;
  private readonly merges: number[];
  /** Alphabet code point (as string) → id. */
  private readonly charIds: Map<string, number>;
  /** pair key → merged id (its rank: lower merges first). */
  private readonly mergeOf: Map<number, number>;
  /** Decoded text piece per id. */
  private readonly pieces: string[];
  /** Encoded pieces, one cache for word-start pieces and one for the others. */
  private cacheStart = new Map<string, readonly number[]>();
  private cacheInner = new Map<string, readonly number[]>();

  private constructor(vocab: string[], firstMerge: number, merges: number[]) {
    this.vocab = vocab;
    this.firstMerge = firstMerge;
    this.merges = merges;
    this.vocabSize = vocab.length;
    this.charIds = new Map();
    for (let id = WORD_START_ID + 1; id < firstMerge; id++) this.charIds.set(vocab[id], id);
    this.mergeOf = new Map();
    for (let i = 0; i < merges.length / 2; i++) this.mergeOf.set(merges[2 * i] * PAIR_SHIFT + merges[2 * i + 1], firstMerge + i);
    this.pieces = vocab.map((tok, id) => {
      if (id === UNK_ID) return tok;
      if (id < NUM_SPECIAL) return ' ' + tok;
      return tok.startsWith(WORD_START) ? ' ' + tok.slice(WORD_START.length) : tok;
    });
  }

  /**
   * Learns a BPE vocabulary of at most `vocabSize` ids (fewer only if the text runs out of
   * pairs seen at least twice) from the texts. Deterministic: ties go to the pair of
   * lower ids.
   */
  static train(texts: string[], vocabSize: number): Tokenizer {
    return runSync(Tokenizer.trainSteps(texts, vocabSize));
  }

  /** `train` as paceable work (core/pace.ts): it yields after every text counted, every 1,024 words set up and every merge. */
  static *trainSteps(texts: string[], vocabSize: number): Generator<void, Tokenizer, void> {
    if (!Number.isInteger(vocabSize) || vocabSize < NUM_SPECIAL + 1 + 95 || vocabSize >= PAIR_SHIFT) {
      throw new RangeError(`vocabSize must be an integer in [${NUM_SPECIAL + 1 + 95}, ${PAIR_SHIFT}), got ${vocabSize}`);
    }
    // 1. Count pre-tokens, separately for word-start and word-inner pieces.
    const startCounts = new Map<string, number>();
    const innerCounts = new Map<string, number>();
    for (const t of texts) {
      forEachPretoken(normalizeText(t), (piece, start) => {
        const m = start ? startCounts : innerCounts;
        m.set(piece, (m.get(piece) ?? 0) + 1);
      });
      yield;
    }
    // 2. Alphabet: printable ASCII plus every code point seen (most frequent first if it must be cut).
    const charCounts = new Map<string, number>();
    for (const m of [startCounts, innerCounts]) {
      for (const [k, c] of m) for (const ch of k) charCounts.set(ch, (charCounts.get(ch) ?? 0) + c);
    }
    charCounts.delete(WORD_START);
    const ascii: string[] = [];
    for (let c = 0x21; c < 0x7f; c++) ascii.push(String.fromCharCode(c));
    const others = [...charCounts.entries()]
      .filter(([ch]) => !(ch.length === 1 && ch.charCodeAt(0) >= 0x21 && ch.charCodeAt(0) < 0x7f))
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, Math.max(0, vocabSize - NUM_SPECIAL - 1 - ascii.length))
      .map(([ch]) => ch);
    const alphabet = [...ascii, ...others].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    const vocab: string[] = [...SPECIAL_TOKENS, WORD_START, ...alphabet];
    const firstMerge = vocab.length;
    const charId = new Map<string, number>();
    alphabet.forEach((ch, i) => charId.set(ch, WORD_START_ID + 1 + i));

    // 3. Words as symbol arrays.
    const nWords = startCounts.size + innerCounts.size;
    const syms: Int32Array[] = new Array(nWords);
    const lens = new Int32Array(nWords);
    const freq = new Float64Array(nWords);
    {
      let w = 0;
      for (const [m, isStart] of [[startCounts, true], [innerCounts, false]] as const) {
        for (const [k, c] of m) {
          const chars = Array.from(k);
          const arr = new Int32Array(chars.length + (isStart ? 1 : 0));
          let n = 0;
          if (isStart) arr[n++] = WORD_START_ID;
          for (const ch of chars) arr[n++] = charId.get(ch) ?? UNK_ID;
          syms[w] = arr;
          lens[w] = n;
          freq[w] = c;
          w++;
          if ((w & 1023) === 0) yield;
        }
        m.clear();
      }
    }

    // 4. Pair counts and where-lists.
    const pairCount = new Map<number, number>();
    const where = new Map<number, number[]>();
    for (let w = 0; w < nWords; w++) {
      const s = syms[w];
      const f = freq[w];
      for (let i = 0; i + 1 < lens[w]; i++) {
        const a = s[i];
        const b = s[i + 1];
        if (a === UNK_ID || b === UNK_ID) continue;
        const key = a * PAIR_SHIFT + b;
        pairCount.set(key, (pairCount.get(key) ?? 0) + f);
        const list = where.get(key);
        if (list === undefined) where.set(key, [w]);
        else if (list[list.length - 1] !== w) list.push(w);
      }
      if ((w & 1023) === 0) yield;
    }
    const heap = new PairHeap();
    for (const [key, c] of pairCount) heap.push(c, key);

    // 5. Merge loop.
    const merges: number[] = [];
    const stamp = new Int32Array(nWords).fill(-1);
    const touched = new Set<number>();
    const addPair = (key: number, f: number): void => {
      pairCount.set(key, (pairCount.get(key) ?? 0) + f);
      touched.add(key);
    };
    while (vocab.length < vocabSize && heap.size > 0) {
      yield;
      const count = heap.topCount();
      const key = heap.topKey();
      heap.pop();
      if (pairCount.get(key) !== count) continue; // stale entry
      if (count < 2) break;
      const a = Math.floor(key / PAIR_SHIFT);
      const b = key - a * PAIR_SHIFT;
      const c = vocab.length;
      vocab.push(vocab[a] + vocab[b]);
      merges.push(a, b);
      touched.clear();
      const list = where.get(key)!;
      where.delete(key);
      for (const w of list) {
        if (stamp[w] === c) continue;
        stamp[w] = c;
        const s = syms[w];
        const n = lens[w];
        const f = freq[w];
        let found = false;
        for (let i = 0; i + 1 < n; i++) if (s[i] === a && s[i + 1] === b) { found = true; break; }
        if (!found) continue;
        // Remove all pairs of the word, merge, add them back.
        for (let i = 0; i + 1 < n; i++) {
          const x = s[i];
          const y = s[i + 1];
          if (x === UNK_ID || y === UNK_ID) continue;
          addPair(x * PAIR_SHIFT + y, -f);
        }
        let m = 0;
        for (let i = 0; i < n; i++) {
          if (i + 1 < n && s[i] === a && s[i + 1] === b) {
            s[m++] = c;
            i++;
          } else s[m++] = s[i];
        }
        lens[w] = m;
        for (let i = 0; i + 1 < m; i++) {
          const x = s[i];
          const y = s[i + 1];
          if (x === UNK_ID || y === UNK_ID) continue;
          const k2 = x * PAIR_SHIFT + y;
          addPair(k2, f);
          if (x === c || y === c) {
            const l2 = where.get(k2);
            if (l2 === undefined) where.set(k2, [w]);
            else if (l2[l2.length - 1] !== w) l2.push(w);
          }
        }
      }
      for (const k2 of touched) {
        const v = pairCount.get(k2)!;
        if (v <= 0) {
          pairCount.delete(k2);
          if (v === 0 && k2 !== key) where.delete(k2);
        } else heap.push(v, k2);
      }
      pairCount.delete(key);
    }
    return new Tokenizer(vocab, firstMerge, merges);
  }

  /** Token ids of one pre-token (cached). */
  private encodePiece(piece: string, startsWord: boolean): readonly number[] {
    const cache = startsWord ? this.cacheStart : this.cacheInner;
    const hit = cache.get(piece);
    if (hit !== undefined) return hit;
    const s: number[] = [];
    if (startsWord) s.push(WORD_START_ID);
    for (const ch of piece) s.push(this.charIds.get(ch) ?? UNK_ID);
    // Repeatedly merge (all occurrences of) the lowest-ranked mergeable pair.
    for (;;) {
      let best = -1;
      for (let i = 0; i + 1 < s.length; i++) {
        const id = this.mergeOf.get(s[i] * PAIR_SHIFT + s[i + 1]);
        if (id !== undefined && (best < 0 || id < best)) best = id;
      }
      if (best < 0) break;
      const a = this.merges[2 * (best - this.firstMerge)];
      const b = this.merges[2 * (best - this.firstMerge) + 1];
      let m = 0;
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          s[m++] = best;
          i++;
        } else s[m++] = s[i];
      }
      s.length = m;
    }
    if (cache.size >= 500_000) cache.clear();
    cache.set(piece, s);
    return s;
  }

  /** Token ids of the text (no [CLS]/[SEP] added). */
  encode(text: string): number[] {
    const out: number[] = [];
    const norm = normalizeText(text);
    const re = PRETOKEN_RE;
    re.lastIndex = 0;
    let prevEnd = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(norm)) !== null) {
      const w = m[0];
      const start = m.index === 0 || m.index !== prevEnd;
      prevEnd = m.index + w.length;
      if (w.length > MAX_WORD_CHARS) {
        // Rare: long runs are cut into pieces (shared logic with training).
        forEachPretoken(w, (piece, first) => {
          const ids = this.encodePiece(piece, start && first);
          for (let i = 0; i < ids.length; i++) out.push(ids[i]);
        });
        re.lastIndex = prevEnd;
        continue;
      }
      const ids = this.encodePiece(w, start);
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
    return out;
  }

  /** Text of the ids; see the module comment. Throws RangeError on an id outside the vocabulary. */
  decode(ids: ArrayLike<number>, opts: { skipSpecial?: boolean } = {}): string {
    let out = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`decode: id ${id} is outside [0, ${this.vocabSize})`);
      if (opts.skipSpecial && id < NUM_SPECIAL) continue;
      out += this.pieces[id];
    }
    return out.startsWith(' ') ? out.slice(1) : out;
  }

  /** Token string of an id (`▁` marks a word start). */
  idToToken(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`idToToken: id ${id} is outside [0, ${this.vocabSize})`);
    return this.vocab[id];
  }

  toJSON(): TokenizerJSON {
    return {
      type: FORMAT,
      version: FORMAT_VERSION,
      normalization: 'nfkc-lower-nfkc-ws',
      vocab: [...this.vocab],
      firstMerge: this.firstMerge,
      merges: [...this.merges],
    };
  }

  /** Rebuilds a tokenizer from `toJSON()` output; throws a descriptive Error on anything else. */
  static fromJSON(o: unknown): Tokenizer {
    const fail = (why: string): never => {
      throw new Error(`Tokenizer.fromJSON: invalid tokenizer JSON: ${why}`);
    };
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return fail('not an object');
    const j = o as Record<string, unknown>;
    if (j.type !== FORMAT) fail(`type must be "${FORMAT}", got ${JSON.stringify(j.type)}`);
    if (j.version !== FORMAT_VERSION) fail(`unsupported version ${JSON.stringify(j.version)} (expected ${FORMAT_VERSION})`);
    const vocab = j.vocab;
    if (!Array.isArray(vocab) || !vocab.every((t) => typeof t === 'string' && t.length > 0)) fail('vocab must be an array of non-empty strings');
    const v = vocab as string[];
    if (v.length >= PAIR_SHIFT) fail('vocab too large');
    for (let i = 0; i < NUM_SPECIAL; i++) if (v[i] !== SPECIAL_TOKENS[i]) fail(`id ${i} must be ${SPECIAL_TOKENS[i]}`);
    if (v[WORD_START_ID] !== WORD_START) fail(`id ${WORD_START_ID} must be the word-start marker`);
    const firstMerge = j.firstMerge;
    if (!Number.isInteger(firstMerge) || (firstMerge as number) <= WORD_START_ID || (firstMerge as number) > v.length) fail('bad firstMerge');
    const fm = firstMerge as number;
    for (let id = WORD_START_ID + 1; id < fm; id++) {
      const cps = Array.from(v[id]);
      if (cps.length !== 1 || v[id] === WORD_START) fail(`alphabet entry ${id} must be one code point other than the marker`);
    }
    const merges = j.merges;
    if (!Array.isArray(merges) || merges.length !== 2 * (v.length - fm)) fail('merges must hold one [left, right] pair per merged symbol');
    const m = merges as unknown[];
    for (let i = 0; i < m.length; i++) {
      const x = m[i];
      const own = fm + (i >> 1);
      if (!Number.isInteger(x) || (x as number) < NUM_SPECIAL || (x as number) >= own) fail(`merge ${i >> 1} refers to a bad id ${String(x)}`);
      if (i % 2 === 1 && v[x as number].startsWith(WORD_START)) fail(`merge ${i >> 1}: the right symbol may not start with the word-start marker`);
    }
    for (let i = 0; i < v.length - fm; i++) {
      if (v[fm + i] !== v[m[2 * i] as number] + v[m[2 * i + 1] as number]) fail(`merged symbol ${fm + i} is not the concatenation of its pair`);
    }
    if (new Set(v).size !== v.length) fail('vocab has duplicate entries');
    return new Tokenizer([...v], fm, [...(m as number[])]);
  }
}
