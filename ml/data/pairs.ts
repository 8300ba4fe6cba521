/**
 * Parallel text as TSV: one pair per line, `source<TAB>target` (for the translation experiment:
 * English, then French), UTF-8, '\n' line ends (a '\r' before one is dropped), no header, no
 * quoting. A tab or a line break cannot occur inside a side, so the writer refuses such a pair; the
 * reader refuses a line without exactly one tab or with an empty side, naming the file and the line.
 * Blank lines are skipped; a UTF-8 BOM at the start is dropped; bytes that are not UTF-8 are refused.
 */
import { readFileSync } from 'node:fs';
import { DataError } from '../../core/errors.ts';

export interface Pair {
  en: string;
  fr: string;
}

/** Parses TSV text; `source` names the file in errors. */
export function parsePairsTsv(text: string, source = 'pairs.tsv'): Pair[] {
  const out: Pair[] = [];
  const lines = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (line.trim() === '') continue;
    const tab = line.indexOf('\t');
    const where = `${source}:${i + 1}`;
    if (tab < 0) throw new DataError(`${where}: expected "source<TAB>target", found no tab`);
    if (line.indexOf('\t', tab + 1) >= 0) throw new DataError(`${where}: expected "source<TAB>target", found ${line.split('\t').length - 1} tabs`);
    const en = line.slice(0, tab).trim();
    const fr = line.slice(tab + 1).trim();
    if (en === '' || fr === '') throw new DataError(`${where}: the ${en === '' ? 'source (first)' : 'target (second)'} side is empty`);
    out.push({ en, fr });
  }
  return out;
}

/** Reads a TSV file of pairs (DataError when unreadable, not UTF-8 or malformed). */
export function readPairsTsv(file: string): Pair[] {
  return readPairsFile(file).pairs;
}

/** readPairsTsv, with the bytes the pairs were parsed from (to checksum exactly what was read). */
export function readPairsFile(file: string): { pairs: Pair[]; bytes: Buffer } {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new DataError(`cannot read the pairs file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new DataError(`${file}: not valid UTF-8`);
  }
  return { pairs: parsePairsTsv(text, file), bytes: buf };
}

/** The TSV text of `pairs` (a final newline after each line). */
export function formatPairsTsv(pairs: readonly Pair[]): string {
  let out = '';
  for (const [i, p] of pairs.entries()) {
    for (const [side, s] of [['en', p.en], ['fr', p.fr]] as const) {
      if (/[\t\r\n]/.test(s)) throw new DataError(`pair ${i + 1}: its ${side} side holds a tab or a line break, which TSV cannot carry`);
      if (s.trim() === '') throw new DataError(`pair ${i + 1}: its ${side} side is empty`);
    }
    out += `${p.en}\t${p.fr}\n`;
  }
  return out;
}
