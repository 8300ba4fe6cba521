/**
 * Global magnitude pruning over the flat weights, and the cubic sparsity schedule of iterative
 * pruning (Zhu & Gupta 2017, "To prune, or not to prune").
 *
 * One threshold for all participating tensors together (not per layer): the round(s · n)
 * participating weights of smallest |w| are pruned, ties broken by flat index (the lower index is
 * pruned first), so the count is exact and the mask is deterministic.
 *
 * Selection is a two-pass radix select on the float32 bit patterns of |w| (for non-negative floats
 * the integer order of the bits is the numeric order): a 65,536-bucket histogram of the high 16 bits,
 * then one of the low 16 bits inside the bucket that holds the cut, then one pass to write the
 * mask. Three linear passes, no sort, no per-element allocation.
 */
import type { ParamKind, ParamLayout, ParamSpec } from '../ml/model/spec.ts';
import { codedError } from '../core/errors.ts';

export const PruneError = codedError('PruneError', 'TTC_ERR_COMPRESSION');
export type PruneError = InstanceType<typeof PruneError>;

export interface PruneOptions {
  /** kinds that take part (default ['dense']); embeddings are added by `embeddings: true` */
  kinds?: readonly ParamKind[];
  /** let the embedding tables take part as well */
  embeddings?: boolean;
  /**
   * A previous mask (1 = keep) for iterative pruning: entries it prunes count as magnitude 0, so
   * they stay pruned as long as the new target is at least as sparse.
   */
  previousMask?: Uint8Array;
}

export function participatingKinds(opts: Pick<PruneOptions, 'kinds' | 'embeddings'> = {}): ParamKind[] {
  const kinds = new Set<ParamKind>(opts.kinds ?? ['dense']);
  if (opts.embeddings) kinds.add('embedding');
  return [...kinds];
}

function participating(layout: ParamLayout, kinds: readonly ParamKind[]): ParamSpec[] {
  return layout.specs.filter((s) => kinds.includes(s.kind));
}

/** Number of weights that take part. */
export function participatingCount(layout: ParamLayout, opts: Pick<PruneOptions, 'kinds' | 'embeddings'> = {}): number {
  return participating(layout, participatingKinds(opts)).reduce((a, s) => a + s.size, 0);
}

function checkSparsity(s: number, name = 'sparsity'): void {
  if (typeof s !== 'number' || !(s >= 0 && s <= 1)) throw new PruneError(`${name} must be a number in [0, 1], got ${s}`);
}

/** How many participating weights a target sparsity prunes: round(s · n). */
export function prunedCount(sparsity: number, n: number): number {
  checkSparsity(sparsity);
  return Math.round(sparsity * n);
}

/**
 * The global magnitude-pruning mask over the whole flat buffer (1 = keep). Non-participating
 * entries are always 1; exactly round(sparsity · n) participating entries are 0.
 */
export function globalMagnitudeMask(weights: Float32Array, layout: ParamLayout, sparsity: number, opts: PruneOptions = {}): Uint8Array {
  if (weights.length !== layout.total) throw new PruneError(`${weights.length} weights for a layout of ${layout.total}`);
  const specs = participating(layout, participatingKinds(opts));
  const n = specs.reduce((a, s) => a + s.size, 0);
  const k = prunedCount(sparsity, n);
  const prev = opts.previousMask;
  if (prev && prev.length !== layout.total) throw new PruneError(`previous mask has ${prev.length} entries for a layout of ${layout.total}`);
  const mask = new Uint8Array(layout.total).fill(1);
  if (k === 0) return mask;
  // float32 bits of |w| as uint32 (a view on the same memory)
  const bitsView = new Uint32Array(weights.buffer, weights.byteOffset, weights.length);
  const key = (i: number): number => (prev && prev[i] === 0 ? 0 : bitsView[i] & 0x7fffffff);

  // pass 1: histogram of the high 16 bits
  const hist = new Uint32Array(65536);
  for (const s of specs) {
    for (let i = s.offset, end = s.offset + s.size; i < end; i++) {
      const kk = key(i);
      if (kk > 0x7f800000) throw new PruneError(`weight ${i} is NaN`);
      hist[kk >>> 16]++;
    }
  }
  // the bucket that holds the k-th smallest (1-based)
  let below = 0;
  let hiBucket = 0;
  while (below + hist[hiBucket] < k) below += hist[hiBucket++];
  // pass 2: histogram of the low 16 bits inside that bucket
  hist.fill(0);
  for (const s of specs) {
    for (let i = s.offset, end = s.offset + s.size; i < end; i++) {
      const kk = key(i);
      if (kk >>> 16 === hiBucket) hist[kk & 0xffff]++;
    }
  }
  let loBucket = 0;
  while (below + hist[loBucket] < k) below += hist[loBucket++];
  const threshold = ((hiBucket << 16) | loBucket) >>> 0;
  // entries with key < threshold: all pruned (`below` of them); key == threshold: the first k − below by index
  let ties = k - below;
  for (const s of specs) {
    for (let i = s.offset, end = s.offset + s.size; i < end; i++) {
      const kk = key(i);
      if (kk < threshold) mask[i] = 0;
      else if (kk === threshold && ties > 0) {
        mask[i] = 0;
        ties--;
      }
    }
  }
  return mask;
}

/** weights[i] = 0 where mask[i] = 0, in place; returns `weights`. */
export function applyMask(weights: Float32Array, mask: Uint8Array): Float32Array {
  if (weights.length !== mask.length) throw new PruneError(`mask has ${mask.length} entries for ${weights.length} weights`);
  for (let i = 0; i < weights.length; i++) if (mask[i] === 0) weights[i] = 0;
  return weights;
}

/** Fraction of zeros among the weights of the given kinds (default: dense weights). */
export function sparsityOf(weights: Float32Array, layout: ParamLayout, kinds: readonly ParamKind[] = ['dense']): number {
  if (weights.length !== layout.total) throw new PruneError(`${weights.length} weights for a layout of ${layout.total}`);
  let zeros = 0;
  let n = 0;
  for (const s of participating(layout, kinds)) {
    n += s.size;
    for (let i = s.offset, end = s.offset + s.size; i < end; i++) if (weights[i] === 0) zeros++;
  }
  return n === 0 ? 0 : zeros / n;
}

/**
 * Zhu & Gupta's cubic schedule: s_t = s_f + (s_i − s_f)·(1 − t/T)³ for t in [0, T] (t is clamped),
 * so s_0 = s_i, s_T = s_f, increasing, fast at first and flat at the end. totalSteps = 0 gives s_f.
 */
export function cubicSparsity(step: number, totalSteps: number, finalSparsity: number, initialSparsity = 0): number {
  checkSparsity(finalSparsity, 'finalSparsity');
  checkSparsity(initialSparsity, 'initialSparsity');
  if (!Number.isFinite(step)) throw new PruneError(`step must be finite, got ${step}`);
  if (!Number.isFinite(totalSteps) || totalSteps < 0) throw new PruneError(`totalSteps must be ≥ 0, got ${totalSteps}`);
  if (totalSteps === 0 || step >= totalSteps) return finalSparsity;
  if (step <= 0) return initialSparsity;
  const r = 1 - step / totalSteps;
  return finalSparsity + (initialSparsity - finalSparsity) * r * r * r;
}

/**
 * Targets for `rounds` rounds of iterative pruning (prune, fine-tune, prune more, …): the cubic
 * schedule at rounds 1..R from 0, so the last target is exactly finalSparsity.
 */
export function iterativeSchedule(finalSparsity: number, rounds: number, initialSparsity = 0): number[] {
  if (!Number.isInteger(rounds) || rounds < 1) throw new PruneError(`rounds must be a positive integer, got ${rounds}`);
  const out: number[] = [];
  for (let r = 1; r <= rounds; r++) out.push(cubicSparsity(r, rounds, finalSparsity, initialSparsity));
  return out;
}
