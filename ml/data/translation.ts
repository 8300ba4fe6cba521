/**
 * The translation experiment's data: English→French pairs from `ttc data` (a directory of
 * train.tsv, dev.tsv, test.tsv) or from one TSV file (split by `ttc data`'s rule, splitOf: the
 * SHA-256 of the English side), one shared BPE vocabulary trained on both sides of the training
 * pairs (ml/data/tokenizer.ts; cached under cacheDir, keyed by the training text and the size), and
 * the encoded pairs with the batches the model reads (ml/model/seq2seq.ts: source = tokens [SEP],
 * decoder input = [CLS] y…, labels = y… [SEP]; each side cut to seqLen tokens with its marker).
 *
 * One vocabulary for both languages (they share most of their alphabet, many subwords and
 * every number and name) ties the encoder's input, the decoder's input and the output projection to
 * one table; the tokenizer lowercases (normalizeText), so translations come out lowercased and
 * BLEU is computed case-insensitively (lowercase: true).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DataError } from '../../core/errors.ts';
import { writeFileAtomic } from '../../core/fs.ts';
import { runPaced } from '../../core/pace.ts';
import { Rng } from '../../core/rng.ts';
import { decodeTokenizerFile, encodeTokenizerFile } from './dataset.ts';
import { splitPairs, type SplitName } from './ddtp.ts';
import { readPairsTsv, type Pair } from './pairs.ts';
import { CLS_ID, PAD_ID, SEP_ID, Tokenizer } from './tokenizer.ts';
import type { Seq2SeqBatch } from '../model/seq2seq.ts';

export interface PairSplits {
  train: Pair[];
  dev: Pair[];
  test: Pair[];
  /** where they came from (for logs and results) */
  source: string;
}

/** Reads a `ttc data` directory (train.tsv, dev.tsv, test.tsv) or one TSV file split by splitOf. */
export function readPairSplits(where: string): PairSplits {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(where);
  } catch {
    throw new DataError(`translation.pairs: ${where} does not exist (make it with \`ttc data ddtp --out DIR\` or \`ttc data tsv\`)`);
  }
  if (stat.isDirectory()) {
    const read = (s: SplitName) => readPairsTsv(path.join(where, `${s}.tsv`));
    return { train: read('train'), dev: read('dev'), test: read('test'), source: where };
  }
  return { ...splitPairs(readPairsTsv(where)), source: where };
}

/** Encoded pairs: per pair its source ids (tokens, [SEP]) and target tokens (no markers). */
export interface EncodedPairs {
  count: number;
  src: Int32Array[];
  tgt: Int32Array[];
}

/** Source: tokens cut to seqLen − 1, then [SEP]; target: tokens cut to seqLen − 1 (the decoder reads [CLS] + them). */
export function encodePairs(tok: Tokenizer, pairs: readonly Pair[], seqLen: number): EncodedPairs {
  const src: Int32Array[] = [];
  const tgt: Int32Array[] = [];
  for (const p of pairs) {
    src.push(Int32Array.from([...tok.encode(p.en).slice(0, seqLen - 1), SEP_ID]));
    tgt.push(Int32Array.from(tok.encode(p.fr).slice(0, seqLen - 1)));
  }
  return { count: pairs.length, src, tgt };
}

/** Pairs `indices` as one batch, each side padded to its longest in the batch. */
export function pairBatch(set: EncodedPairs, indices: ArrayLike<number>): Seq2SeqBatch {
  const B = indices.length;
  let Ts = 1;
  let Tt = 1;
  for (let i = 0; i < B; i++) {
    Ts = Math.max(Ts, set.src[indices[i]!]!.length);
    Tt = Math.max(Tt, set.tgt[indices[i]!]!.length + 1);
  }
  const srcIds = new Int32Array(B * Ts).fill(PAD_ID);
  const srcMask = new Float32Array(B * Ts);
  const tgtIn = new Int32Array(B * Tt).fill(PAD_ID);
  const positions: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < B; i++) {
    const s = set.src[indices[i]!]!;
    const t = set.tgt[indices[i]!]!;
    srcIds.set(s, i * Ts);
    srcMask.fill(1, i * Ts, i * Ts + s.length);
    tgtIn[i * Tt] = CLS_ID;
    tgtIn.set(t, i * Tt + 1);
    for (let j = 0; j <= t.length; j++) {
      positions.push(i * Tt + j);
      labels.push(j < t.length ? t[j]! : SEP_ID);
    }
  }
  return { batch: B, srcLen: Ts, tgtLen: Tt, srcIds, srcMask, tgtIn, labelPositions: Int32Array.from(positions), labels: Int32Array.from(labels) };
}

/** Consecutive batches over a whole set. */
export function pairBatches(set: EncodedPairs, batchSize: number, count = set.count): Seq2SeqBatch[] {
  const out: Seq2SeqBatch[] = [];
  for (let s = 0; s < count; s += batchSize) out.push(pairBatch(set, Array.from({ length: Math.min(batchSize, count - s) }, (_, i) => s + i)));
  return out;
}

/** A shuffled order of the training pairs per epoch, from the seed. */
export function pairOrder(count: number, epoch: number, seed: number): Int32Array {
  const order = Int32Array.from({ length: count }, (_, i) => i);
  new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).shuffle(order);
  return order;
}

const TOKENIZER_FORMAT = 'ttc-translation-tokenizer-1';

/**
 * The shared en+fr BPE vocabulary of the training pairs, trained once and cached at
 * <cacheDir>/translation-<key>/tokenizer.json (key: SHA-256 of the training text and the size).
 */
export async function translationTokenizer(train: readonly Pair[], vocab: number, cacheDir: string, log?: (m: string) => void): Promise<Tokenizer> {
  const h = crypto.createHash('sha256').update(`${TOKENIZER_FORMAT}\0${vocab}\0`);
  for (const p of train) h.update(`${p.en}\t${p.fr}\n`);
  const dir = path.join(cacheDir, `translation-${h.digest('hex').slice(0, 16)}`);
  const file = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(file)) {
    try {
      return decodeTokenizerFile(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      log?.(`${file}: ${(e as Error).message}; training the tokenizer again`);
    }
  }
  const t0 = performance.now();
  const texts: string[] = [];
  for (const p of train) texts.push(p.en, p.fr);
  const tok = await runPaced(Tokenizer.trainSteps(texts, vocab));
  log?.(`translation tokenizer: ${tok.vocabSize} subwords shared by both languages, trained on ${train.length} pairs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    writeFileAtomic(file, encodeTokenizerFile(tok));
  } catch (e) {
    throw new DataError(`cannot write the translation tokenizer cache ${file} (cacheDir): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return tok;
}

export interface TranslationData {
  tokenizer: Tokenizer;
  train: EncodedPairs;
  /** the evaluation split (translation.evalSplit): its pairs (references) and their encoding */
  evalPairs: Pair[];
  evalSet: EncodedPairs;
  source: string;
}

export interface TranslationDataOptions {
  pairs: string;
  vocab: number;
  seqLen: number;
  cacheDir: string;
  evalSplit: 'dev' | 'test';
  /** the first N pairs of the evaluation split (0 = all) */
  evalPairs: number;
  log?: (m: string) => void;
}

export async function loadTranslationData(o: TranslationDataOptions): Promise<TranslationData> {
  const splits = readPairSplits(o.pairs);
  if (splits.train.length === 0) throw new DataError(`translation.pairs: ${o.pairs} has no training pairs`);
  const evalAll = splits[o.evalSplit];
  if (evalAll.length === 0) throw new DataError(`translation.pairs: ${o.pairs} has no ${o.evalSplit} pairs to evaluate on`);
  const evalPairs = o.evalPairs > 0 ? evalAll.slice(0, o.evalPairs) : evalAll;
  const tokenizer = await translationTokenizer(splits.train, o.vocab, o.cacheDir, o.log);
  return { tokenizer, train: encodePairs(tokenizer, splits.train, o.seqLen), evalPairs, evalSet: encodePairs(tokenizer, evalPairs, o.seqLen), source: splits.source };
}
