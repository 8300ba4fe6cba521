/**
 * English→French sentence pairs from the Debian Description Translation Project (DDTP): the
 * `Translation-en` and `Translation-fr` indexes of a Debian suite (deb822 stanzas `Package`,
 * `Description-md5`, `Description-<lang>`), joined on `Description-md5` (the MD5 of the English
 * description a translation was made from), aligned short description to short description and
 * long description paragraph by paragraph, then item by item and sentence by sentence, filtered by
 * length and length ratio, deduplicated, and split train/dev/test by a hash of the English side.
 * Pure functions: the download and the cache are ml/data/ddtp-fetch.ts. Rules and measured counts:
 * docs/translation.md.
 */
import { createHash } from 'node:crypto';
import { DataError } from '../../core/errors.ts';
import type { Pair } from './pairs.ts';

/** One stanza of a Translation-<lang> index. */
export interface DdtpEntry {
  package: string;
  md5: string;
  /** the first line of the description (the synopsis) */
  short: string;
  /** the long description: paragraphs (separated by ` .` lines), each a list of lines without the leading space */
  paragraphs: string[][];
}

/**
 * Parses a Translation-<lang> file. Stanzas are separated by blank lines; a field continues on lines
 * starting with a space or tab; the long description's ` .` lines separate paragraphs. A stanza without
 * `Description-md5` or `Description-<lang>` is skipped; a malformed md5 or a line that is neither a
 * field nor a continuation is a DataError naming the file (`source`) and the line.
 */
export function parseTranslationFile(text: string, lang: string, source = `Translation-${lang}`): DdtpEntry[] {
  const out: DdtpEntry[] = [];
  const descField = `description-${lang.toLowerCase()}`;
  const lines = text.split('\n');
  let fields = new Map<string, string[]>();
  let current: string[] | undefined;
  let start = 1;
  const flush = (lineNo: number) => {
    if (fields.size > 0) {
      const md5 = fields.get('description-md5')?.[0]?.trim();
      const desc = fields.get(descField);
      if (md5 !== undefined && desc !== undefined) {
        if (!/^[0-9a-f]{32}$/.test(md5)) throw new DataError(`${source}:${start}: Description-md5 is not 32 hex digits: "${md5.slice(0, 60)}"`);
        out.push(entryOf(fields.get('package')?.[0]?.trim() ?? '', md5, desc));
      }
    }
    fields = new Map();
    current = undefined;
    start = lineNo + 1;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (/^[ \t]*$/.test(line)) {
      flush(i + 1);
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      if (!current) throw new DataError(`${source}:${i + 1}: a continuation line outside a field`);
      current.push(line);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new DataError(`${source}:${i + 1}: expected "Field: value", got "${line.slice(0, 60)}"`);
    current = [line.slice(colon + 1).trim()];
    fields.set(line.slice(0, colon).toLowerCase(), current);
  }
  flush(lines.length);
  return out;
}

function entryOf(pkg: string, md5: string, desc: string[]): DdtpEntry {
  const paragraphs: string[][] = [];
  let para: string[] = [];
  for (const raw of desc.slice(1)) {
    const line = raw.slice(1); // the one leading space of a continuation line
    // ` .` separates paragraphs; a continuation holding only other white space (a few translations
    // have ` \u00a0` where the English has ` .`) is read as one too.
    if (line.trim() === '.' || line.trim() === '') {
      if (para.length) paragraphs.push(para);
      para = [];
    } else para.push(line);
  }
  if (para.length) paragraphs.push(para);
  return { package: pkg, md5, short: desc[0]!, paragraphs };
}

/** Whitespace runs → one space, trimmed. */
export function squash(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** A list item's bullet at the start of a line: `*`, `-`, `+`, `o`, `–`, `—`, `•`, `·` followed by a space. */
const BULLET = /^\s*(?:[*+\-–—•·]|o(?= ))\s+/;

/**
 * A paragraph's units: its list items (a line starting with a bullet begins one; the lines after it
 * continue it), and the text before the first item as one unit. Bullets are dropped.
 */
export function paragraphUnits(lines: readonly string[]): string[] {
  const units: string[][] = [];
  let cur: string[] | undefined;
  for (const line of lines) {
    if (BULLET.test(line)) {
      cur = [line.replace(BULLET, '')];
      units.push(cur);
    } else if (cur) cur.push(line);
    else {
      cur = [line];
      units.push(cur);
    }
  }
  return units.map((u) => squash(u.join(' '))).filter((u) => u !== '');
}

// Words whose final period ends no sentence (English and French): "e.g. Foo", "p. ex. Le", "M. Dupont".
const ABBREVIATIONS = new Set(['e.g', 'i.e', 'cf', 'vs', 'mr', 'mrs', 'ms', 'dr', 'st', 'no', 'nr', 'approx', 'incl', 'ex', 'p', 'm', 'mme', 'mlle', 'env', 'resp', 'fig', 'vol', 'ver', 'v', 'jr', 'sr']);

/**
 * Sentences of a unit: a cut after `.`, `!` or `?` (with any closing quotes or brackets) followed by
 * whitespace and an upper-case letter, a digit or an opening quote/bracket — unless the word before
 * the period is an abbreviation (ABBREVIATIONS) or a single letter ("J. Smith", "A.D. 500").
 */
export function splitSentences(text: string): string[] {
  const s = squash(text);
  const out: string[] = [];
  let from = 0;
  const re = /([.!?…]+)(["'”»)\]]*)\s+(?=["'“«(\[]?\s?[\p{Lu}\p{N}])/gu;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const end = m.index + m[1]!.length + m[2]!.length;
    if (m[1] === '.') {
      const word = /(\S+)$/.exec(s.slice(from, m.index))?.[1] ?? '';
      const bare = word.replace(/^["'“«(\[]+/, '').toLowerCase();
      if (ABBREVIATIONS.has(bare) || /^\p{L}$/u.test(bare) || /^(?:\p{L}\.)+\p{L}$/u.test(bare)) continue;
    }
    out.push(s.slice(from, end).trim());
    from = m.index + m[0].length;
  }
  const rest = s.slice(from).trim();
  if (rest) out.push(rest);
  return out;
}

/** The rules that turn the joined descriptions into pairs (docs/translation.md). */
export interface AlignRules {
  /** fewest whitespace-separated tokens on each side */
  minTokens: number;
  /** most whitespace-separated tokens on each side */
  maxTokens: number;
  /** most (longer side's tokens) / (shorter side's tokens) */
  maxRatio: number;
}

export const DEFAULT_ALIGN_RULES: AlignRules = { minTokens: 1, maxTokens: 100, maxRatio: 2 };

/** How many pairs each stage produced or dropped (the counts docs/translation.md reports). */
export interface AlignStats {
  /** stanzas read in each file */
  enEntries: number;
  frEntries: number;
  /** French stanzas whose Description-md5 has an English stanza (distinct md5s) */
  joined: number;
  /** the joined descriptions' long descriptions with as many paragraphs on both sides */
  paragraphsAligned: number;
  /** … and with different paragraph counts (only their short descriptions are used) */
  paragraphsMismatched: number;
  /** candidate pairs: short descriptions, sentence pairs, whole units/paragraphs whose split differed */
  candidates: number;
  /** of which from sentence alignment / kept whole */
  sentencePairs: number;
  wholePairs: number;
  droppedLength: number;
  droppedRatio: number;
  droppedUntranslated: number;
  droppedDuplicate: number;
  /** pairs kept */
  pairs: number;
}

/** Whitespace tokens (the length filter's unit). */
export function tokenCount(s: string): number {
  return s === '' ? 0 : s.split(' ').length;
}

/** Aligned segments of one paragraph pair: unit by unit when both have as many, then sentence by sentence when both units have as many, else the unit (or the paragraph) whole. */
function alignParagraph(en: readonly string[], fr: readonly string[], emit: (en: string, fr: string, kind: 'sentence' | 'whole') => void): void {
  const eu = paragraphUnits(en);
  const fu = paragraphUnits(fr);
  if (eu.length !== fu.length) {
    emit(squash(eu.join(' ')), squash(fu.join(' ')), 'whole');
    return;
  }
  for (let i = 0; i < eu.length; i++) {
    const es = splitSentences(eu[i]!);
    const fs = splitSentences(fu[i]!);
    if (es.length === fs.length) for (let j = 0; j < es.length; j++) emit(es[j]!, fs[j]!, 'sentence');
    else emit(eu[i]!, fu[i]!, 'whole');
  }
}

/**
 * Joins the English and French entries on Description-md5 and aligns them (module comment; the rules
 * in docs/translation.md). Pairs come out in the French file's order, first occurrence kept.
 */
export function alignDdtp(enEntries: readonly DdtpEntry[], frEntries: readonly DdtpEntry[], rules: AlignRules = DEFAULT_ALIGN_RULES): { pairs: Pair[]; stats: AlignStats } {
  const byMd5 = new Map<string, DdtpEntry>();
  for (const e of enEntries) if (!byMd5.has(e.md5)) byMd5.set(e.md5, e);
  const stats: AlignStats = {
    enEntries: enEntries.length, frEntries: frEntries.length, joined: 0, paragraphsAligned: 0, paragraphsMismatched: 0,
    candidates: 0, sentencePairs: 0, wholePairs: 0, droppedLength: 0, droppedRatio: 0, droppedUntranslated: 0, droppedDuplicate: 0, pairs: 0,
  };
  const pairs: Pair[] = [];
  const seen = new Set<string>();
  const seenMd5 = new Set<string>();
  const emit = (enRaw: string, frRaw: string, kind: 'sentence' | 'whole') => {
    const en = squash(enRaw);
    const fr = squash(frRaw);
    stats.candidates++;
    if (kind === 'sentence') stats.sentencePairs++;
    else stats.wholePairs++;
    const ne = tokenCount(en);
    const nf = tokenCount(fr);
    if (ne < rules.minTokens || nf < rules.minTokens || ne > rules.maxTokens || nf > rules.maxTokens) {
      stats.droppedLength++;
      return;
    }
    if (Math.max(ne, nf) > rules.maxRatio * Math.min(ne, nf)) {
      stats.droppedRatio++;
      return;
    }
    if (en === fr) {
      stats.droppedUntranslated++;
      return;
    }
    const key = `${en}\t${fr}`;
    if (seen.has(key)) {
      stats.droppedDuplicate++;
      return;
    }
    seen.add(key);
    pairs.push({ en, fr });
  };
  for (const f of frEntries) {
    const e = byMd5.get(f.md5);
    if (!e || seenMd5.has(f.md5)) continue;
    seenMd5.add(f.md5);
    stats.joined++;
    emit(e.short, f.short, 'sentence');
    if (e.paragraphs.length !== f.paragraphs.length) {
      stats.paragraphsMismatched++;
      continue;
    }
    stats.paragraphsAligned++;
    for (let i = 0; i < e.paragraphs.length; i++) alignParagraph(e.paragraphs[i]!, f.paragraphs[i]!, emit);
  }
  stats.pairs = pairs.length;
  return { pairs, stats };
}

export type SplitName = 'train' | 'dev' | 'test';
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'dev', 'test'];

/** Fractions of the pairs in dev and test (the rest is train). */
export interface SplitFractions {
  dev: number;
  test: number;
}
export const DEFAULT_SPLIT: SplitFractions = { dev: 0.02, test: 0.02 };

/**
 * The split a pair belongs to, from the SHA-256 of its English side alone (so every pair with the same
 * source sentence lands in the same split, and a pair's split never depends on the other pairs):
 * u = first 32 bits / 2³²; u < test → test, u < test + dev → dev, else train.
 */
export function splitOf(en: string, f: SplitFractions = DEFAULT_SPLIT): SplitName {
  const u = createHash('sha256').update(`ttc-ddtp-split\0${en}`).digest().readUInt32BE(0) / 2 ** 32;
  if (u < f.test) return 'test';
  if (u < f.test + f.dev) return 'dev';
  return 'train';
}

/** The pairs of each split, each in input order. */
export function splitPairs(pairs: readonly Pair[], f: SplitFractions = DEFAULT_SPLIT): Record<SplitName, Pair[]> {
  if (!(f.dev >= 0 && f.test >= 0 && f.dev + f.test < 1)) throw new RangeError(`split fractions: expected dev, test >= 0 with dev + test < 1, got ${f.dev}, ${f.test}`);
  const out: Record<SplitName, Pair[]> = { train: [], dev: [], test: [] };
  for (const p of pairs) out[splitOf(p.en, f)].push(p);
  return out;
}
