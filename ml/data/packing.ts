/**
 * Packs tokenized documents into fixed-length MLM sequences without padding.
 *
 * The documents are concatenated into one stream, each followed by [SEP]
 * (`d1 [SEP] d2 [SEP] d3 [SEP] ...`; empty documents are skipped). The stream is cut into
 * chunks of seqLen − 2 tokens and each chunk becomes `[CLS] chunk [SEP]`, so every
 * sequence is exactly seqLen tokens, starts with [CLS] and ends with [SEP]; [SEP]s inside
 * a sequence mark document boundaries. The ragged tail (< seqLen − 2 tokens) is dropped.
 * A document boundary that falls exactly at a chunk end gives `... [SEP] [SEP]` at the end;
 * a chunk never starts with the boundary [SEP] (it is dropped there instead), so a
 * sequence never begins `[CLS] [SEP]`.
 */
import { CLS_ID, SEP_ID } from './tokenizer.ts';

export interface Packed {
  /** count × seqLen token ids, row-major. */
  data: Int32Array;
  count: number;
  seqLen: number;
}

export function packSequences(docs: Iterable<ArrayLike<number>>, seqLen: number): Packed {
  if (!Number.isInteger(seqLen) || seqLen < 3) throw new RangeError(`seqLen must be an integer >= 3, got ${seqLen}`);
  const body = seqLen - 2;
  const list: ArrayLike<number>[] = [];
  let total = 0;
  for (const d of docs) {
    if (d.length === 0) continue;
    list.push(d);
    total += d.length + 1;
  }
  const maxCount = Math.floor(total / body);
  const data = new Int32Array(maxCount * seqLen);
  let row = 0;
  let fill = 0; // tokens in the current chunk
  const put = (tok: number): boolean => {
    if (fill === 0) {
      if (tok === SEP_ID) return true; // boundary [SEP] at a chunk start is dropped
      if (row >= maxCount) return false;
      data[row * seqLen] = CLS_ID;
    }
    data[row * seqLen + 1 + fill] = tok;
    fill++;
    if (fill === body) {
      data[row * seqLen + seqLen - 1] = SEP_ID;
      row++;
      fill = 0;
    }
    return true;
  };
  outer: for (const d of list) {
    for (let i = 0; i < d.length; i++) if (!put(d[i])) break outer;
    if (!put(SEP_ID)) break;
  }
  return { data: row === maxCount ? data : data.slice(0, row * seqLen), count: row, seqLen };
}
