/**
 * Reads training batches from the packed sequences in a fixed global order: epoch e visits the
 * sequences in the permutation sequenceOrder(count, e, seed); a data position (epoch, offset)
 * names the next sequence to read. Each sequence's mask comes from an RNG seeded by
 * (seed, epoch, sequence index), so masks do not depend on how sequences are split across
 * workers or on where a run was resumed: N workers × batch b see exactly what 1 worker × N·b sees.
 */
import { Rng } from '../../core/rng.ts';
import { DataError } from '../../core/errors.ts';
import { maskBatch, numMaskedPerSeq } from './masking.ts';
import { sequenceOrder } from './dataset.ts';

/** A masked batch as plain typed arrays (what data loading produces and the wire can carry). */
export interface MaskedBatch {
  batch: number;
  seqLen: number;
  inputIds: Int32Array; // [B*T]
  maskedPositions: Int32Array; // [M], flat indices into B*T
  maskedLabels: Int32Array; // [M]
}

/** Where the next sequence of a global batch comes from: the epoch and the offset in its order. */
export interface DataPosition {
  epoch: number;
  offset: number;
}

export interface PackedSequences {
  data: Int32Array; // count × seqLen
  count: number;
  seqLen: number;
}

function mix(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ b;
  h = Math.imul(h ^ (h >>> 15), 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
}

export function sequenceMaskSeed(seed: number, epoch: number, index: number): number {
  return mix(mix(seed, epoch + 0x51ed27), index);
}

/** Masks rows whose (epoch, index) identify them; positions are flat indices into the batch. */
export function maskRows(rows: Int32Array, ids: Array<{ epoch: number; index: number }>, seqLen: number, vocab: number, seed: number): MaskedBatch {
  const batch = ids.length;
  const k = numMaskedPerSeq(seqLen);
  const inputIds = new Int32Array(batch * seqLen);
  const maskedPositions = new Int32Array(batch * k);
  const maskedLabels = new Int32Array(batch * k);
  for (let b = 0; b < batch; b++) {
    const row = rows.subarray(b * seqLen, (b + 1) * seqLen);
    const m = maskBatch(row, 1, seqLen, vocab, new Rng(sequenceMaskSeed(seed, ids[b].epoch, ids[b].index)));
    inputIds.set(m.inputIds, b * seqLen);
    for (let i = 0; i < k; i++) maskedPositions[b * k + i] = m.maskedPositions[i] + b * seqLen;
    maskedLabels.set(m.maskedLabels, b * k);
  }
  return { batch, seqLen, inputIds, maskedPositions, maskedLabels };
}

/** The position `n` sequences after `pos`, in a data set of `count` sequences (epochs wrap). */
export function advancePosition(pos: DataPosition, n: number, count: number): DataPosition {
  const linear = pos.epoch * count + pos.offset + n;
  return { epoch: Math.floor(linear / count), offset: linear % count };
}

export class BatchReader {
  private orderEpoch = -1;
  private order: Uint32Array = new Uint32Array(0);

  constructor(private readonly seqs: PackedSequences, private readonly seed: number, private readonly vocab: number) {
    if (seqs.count < 1) throw new DataError('no training sequences: the corpus is smaller than one sequence');
  }

  private orderFor(epoch: number): Uint32Array {
    if (epoch !== this.orderEpoch) {
      this.order = sequenceOrder(this.seqs.count, epoch, this.seed);
      this.orderEpoch = epoch;
    }
    return this.order;
  }

  /** The position `n` sequences after `pos`. */
  advance(pos: DataPosition, n: number): DataPosition {
    return advancePosition(pos, n, this.seqs.count);
  }

  /** `n` masked sequences starting `skip` sequences after `pos` (skip = this worker's share offset). */
  read(pos: DataPosition, skip: number, n: number): MaskedBatch {
    const { seqLen, data } = this.seqs;
    const rows = new Int32Array(n * seqLen);
    const ids: Array<{ epoch: number; index: number }> = [];
    for (let i = 0; i < n; i++) {
      const p = this.advance(pos, skip + i);
      const index = this.orderFor(p.epoch)[p.offset];
      rows.set(data.subarray(index * seqLen, (index + 1) * seqLen), i * seqLen);
      ids.push({ epoch: p.epoch, index });
    }
    return maskRows(rows, ids, seqLen, this.vocab, this.seed);
  }
}

/** Fixed validation batches: the first `max` sequences (0 = all), masks fixed by seed. */
export function validationBatches(seqs: PackedSequences, batchSize: number, max: number, seed: number, vocab: number): MaskedBatch[] {
  const count = max > 0 ? Math.min(max, seqs.count) : seqs.count;
  const out: MaskedBatch[] = [];
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const ids = Array.from({ length: n }, (_, i) => ({ epoch: -1, index: start + i }));
    out.push(maskRows(seqs.data.subarray(start * seqs.seqLen, (start + n) * seqs.seqLen), ids, seqs.seqLen, vocab, seed));
  }
  return out;
}
