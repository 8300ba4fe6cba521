/**
 * The data-parallel part of a training step: how gradients and weights cross the replicas of a
 * process group, and who updates what.
 * - Buckets (DDP's bucketed all-reduce): the flat gradient buffer is cut at parameter boundaries
 *   into buckets of about `bucketBytes`, in the order the backward pass produces them (last
 *   parameters first). The trainer reads gradients back bucket by bucket and hands each one here
 *   as soon as it is complete (`bucketReady`); its collective starts at once and runs while the
 *   next buckets are read back. Collectives run one at a time, in bucket order, on every rank.
 * - ZeRO stage 1 (`shardOptimizer`, the default for N > 1): each bucket is reduce-scattered, so
 *   rank r holds the reduced gradient of chunk r of every bucket (collective/'s chunkLayout); it
 *   clips and runs AdamW on those chunks only, with moments for them only, and the updated weights
 *   are all-gathered bucket by bucket. Unsharded, each bucket is all-reduced and every rank
 *   updates everything. The weight all-gather is started at the end of a step and awaited only
 *   when the weights are needed (`settle`: the next step's compute, an evaluation, a hash, a
 *   state transfer), so it overlaps with whatever happens in between (the coordinator's round
 *   trip, the next batch's preparation).
 * - The clip's global norm is the same number sharded or not: it is defined on "units" = chunk c
 *   of bucket b, each unit's sum of squares computed alone (AdamW.sumSquares), then summed in
 *   (bucket, chunk) order in float64. Unsharded, every rank computes every unit; sharded, each rank
 *   computes its own and the float64 partials are all-gathered (a byte copy). Since a reduce-scatter
 *   leaves in chunk r exactly the bits an all-reduce leaves there, the sharded step is
 *   bit-identical to the unsharded one at every world size (tests/data-parallel.test.ts).
 * - bf16 gradients (`gradWire: 'bf16'`, off by default): each rank rounds its bucket to bf16 before
 *   the reduction and keeps the rounding error, which it adds to the same bucket of its next
 *   gradient (error feedback: over many steps what was sent sums to what was computed); the
 *   ring's partial sums travel as bf16 too (collective/'s wire option).
 * - Where time went: every collective's busy interval is recorded, and the part of it that ran
 *   before the step had to wait for it is reported as hidden.
 */
import { chunkLayout, toBf16InPlace, type ProcessGroup, type WireFormat } from '../../collective/index.ts';
import type { ParamLayout } from '../model/spec.ts';
import { clipScale, type AdamW, type Range } from './adamw.ts';

export interface DataParallelOptions {
  /** ZeRO stage 1: each rank updates (and keeps the optimizer state of) 1/N of the parameters */
  shardOptimizer: boolean;
  /** target size of a gradient bucket, bytes (a parameter bigger than this is a bucket of its own) */
  bucketBytes: number;
  /**
   * how gradients travel in the reduce-scatter: f32, or bf16 (half the bytes) with error feedback —
   * what rounding this rank's gradient to bf16 dropped is added to its next gradient
   */
  gradWire: WireFormat;
}

export const DEFAULT_DATA_PARALLEL: DataParallelOptions = { shardOptimizer: true, bucketBytes: 4 << 20, gradWire: 'f32' };

/** A contiguous range of the flat parameter buffer, whole parameters only. */
export interface Bucket {
  start: number;
  end: number;
  /** indices into layout.specs, in the order the backward pass produces them (last first) */
  params: number[];
}

/**
 * The layout cut into buckets of about `bucketBytes` at parameter boundaries, walking from the
 * last parameter to the first (the backward pass's order): bucket 0 holds the last parameters.
 */
export function gradientBuckets(layout: ParamLayout, bucketBytes: number): Bucket[] {
  const target = Math.max(1, Math.floor(bucketBytes / 4));
  const buckets: Bucket[] = [];
  let open: Bucket | undefined;
  for (let i = layout.specs.length - 1; i >= 0; i--) {
    const s = layout.specs[i]!;
    if (!open) open = { start: s.offset, end: s.offset + s.size, params: [] };
    open.start = s.offset;
    open.params.push(i);
    if (open.end - open.start >= target) {
      buckets.push(open);
      open = undefined;
    }
  }
  if (open) buckets.push(open);
  return buckets;
}

/** Busy intervals of collectives, split at a moment: what ran before it was hidden behind other work. */
class CommClock {
  private spans: Array<[number, number]> = [];

  async time<T>(run: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await run();
    } finally {
      this.spans.push([t0, performance.now()]);
    }
  }

  /** total busy ms and the part before `cutoff`; forgets the spans */
  take(cutoff: number): CommTime {
    let commMs = 0;
    let hiddenMs = 0;
    for (const [a, b] of this.spans) {
      commMs += b - a;
      hiddenMs += Math.max(0, Math.min(b, cutoff) - a);
    }
    this.spans = [];
    return { commMs, hiddenMs };
  }
}

export interface CommTime {
  /** milliseconds the collectives ran */
  commMs: number;
  /** of which, milliseconds during which this rank had other work (reading back the next buckets, preparing the next batch) */
  hiddenMs: number;
}

const NO_COMM: CommTime = { commMs: 0, hiddenMs: 0 };

export class DataParallel {
  readonly worldSize: number;
  readonly rank: number;
  readonly sharded: boolean;
  readonly buckets: Bucket[];
  /** the parameters this rank's optimizer updates: chunk `rank` of every bucket (sharded) or all */
  readonly ownRanges: Range[];
  /** the norm units this rank computes, in the order normSquared takes their partial sums */
  readonly ownUnits: Range[];
  /** collectives run one at a time, in issue order */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly gradClock = new CommClock();
  private readonly gatherClock = new CommClock();
  private gather: Promise<void> | undefined;
  /** the weight all-gather's time, reported with the step after it */
  private lastGather: CommTime = NO_COMM;

  /** bf16 wire: what rounding dropped from this rank's last gradients (error feedback), allocated on first use */
  private residual: Float32Array | undefined;
  private readonly wire: WireFormat;

  constructor(readonly layout: ParamLayout, private readonly group: ProcessGroup | undefined, opts: DataParallelOptions) {
    this.worldSize = group?.worldSize ?? 1;
    this.rank = group?.rank ?? 0;
    this.wire = this.worldSize > 1 ? opts.gradWire : 'f32';
    this.sharded = opts.shardOptimizer && this.worldSize > 1;
    this.buckets = gradientBuckets(layout, opts.bucketBytes);
    const N = this.worldSize;
    const chunk = (b: Bucket, c: number): Range => {
      const lay = chunkLayout(b.end - b.start, N);
      return [b.start + lay.start[c]!, b.start + lay.start[c]! + lay.len[c]!];
    };
    this.ownRanges = this.sharded ? this.buckets.map((b) => chunk(b, this.rank)) : [[0, layout.total]];
    this.ownUnits = this.sharded ? this.ownRanges : this.buckets.flatMap((b) => Array.from({ length: N }, (_, c) => chunk(b, c)));
  }

  /** Runs a collective after the ones issued before it, timed on `clock` if given (failures propagate to whoever awaits). */
  private enqueue(run: () => Promise<unknown>, clock?: CommClock): Promise<void> {
    const next = this.chain.then(() => (clock ? clock.time(run) : run()));
    this.chain = next.catch(() => {}); // a failure is reported by the awaited promise, not twice
    return next.then(() => {});
  }

  private pendingGrads: Promise<void>[] = [];
  /** when the last bucket was handed over: the caller's read-back is done, communication after it is exposed */
  private lastBucketAt = 0;

  /** Bucket `k` of `grads` holds this rank's gradients: start its reduction (mean over ranks). */
  bucketReady(k: number, grads: Float32Array): void {
    const group = this.group;
    if (!group || this.worldSize === 1) return;
    const b = this.buckets[k]!;
    const view = grads.subarray(b.start, b.end);
    if (this.wire === 'bf16') this.feedBack(view, b);
    const opts = { wire: this.wire };
    const p = this.enqueue(() => (this.sharded ? group.reduceScatter(view, 'mean', opts) : group.allReduce(view, 'mean', opts)), this.gradClock);
    p.catch(() => {}); // awaited in reduced(); this keeps an abandoned step from an unhandled rejection
    this.pendingGrads.push(p);
    this.lastBucketAt = performance.now();
  }

  /** Error feedback: g += residual, then the residual becomes g − bf16(g) and g is sent as bf16(g). */
  private feedBack(g: Float32Array, b: Bucket): void {
    this.residual ??= new Float32Array(this.layout.total);
    const r = this.residual.subarray(b.start, b.end);
    for (let i = 0; i < g.length; i++) g[i]! += r[i]!;
    r.set(g);
    toBf16InPlace(g);
    for (let i = 0; i < g.length; i++) r[i]! -= g[i]!;
  }

  /**
   * Waits until every bucket is reduced. Returns the time of the reduction (hidden: the part that
   * ran before the last bucket was handed over, i.e. during the read-back) and of the previous
   * step's weight all-gather.
   */
  async reduced(): Promise<CommTime> {
    const pending = this.pendingGrads;
    this.pendingGrads = [];
    await Promise.all(pending);
    const grads = this.gradClock.take(this.lastBucketAt);
    const gather = this.lastGather;
    this.lastGather = NO_COMM;
    return { commMs: grads.commMs + gather.commMs, hiddenMs: grads.hiddenMs + gather.hiddenMs };
  }

  /**
   * The global squared norm from this rank's unit partial sums (in ownUnits order): summed in
   * (bucket, chunk) order; sharded, the ranks' partials are all-gathered first.
   */
  private async normSquared(partials: Float64Array): Promise<number> {
    const B = this.buckets.length;
    const N = this.worldSize;
    let all = partials; // unsharded: [bucket][chunk] already
    if (this.sharded) {
      const gathered = new Float64Array(N * B); // [rank][bucket]: rank r's partials are its chunk of the gather
      gathered.set(partials, this.rank * B);
      await this.enqueue(() => this.group!.allGather(new Float32Array(gathered.buffer))); // N × buckets numbers: not timed
      all = new Float64Array(N * B);
      for (let b = 0; b < B; b++) for (let c = 0; c < N; c++) all[b * N + c] = gathered[c * B + b]!;
    }
    let sq = 0;
    for (let i = 0; i < all.length; i++) sq += all[i]!;
    return sq;
  }

  /**
   * The update, once the gradients are reduced: masked gradients zeroed, the global norm (across
   * shards), clip + AdamW on the owned ranges, masked weights zeroed, and (sharded) the weights'
   * all-gather started. Returns the gradient norm before clipping (of the unscaled gradients when
   * `lossScale` is given; a non-finite one means the step was skipped).
   */
  async update(opt: AdamW, p: { weights: Float32Array; grads: Float32Array; mask?: Uint8Array | undefined }, lr: number, clipNorm: number, lossScale?: number): Promise<number> {
    const { weights, grads, mask } = p;
    if (mask) for (const [a, b] of this.ownRanges) for (let i = a; i < b; i++) if (mask[i] === 0) grads[i] = 0;
    // mixed precision (ml/train/loss-scale.ts): the gradients are lossScale × the true ones; unscaled
    // through the update's factor, and a non-finite norm (an f16 overflow) skips the step on every rank alike
    const unscale = lossScale ?? 1;
    const norm = Math.sqrt(await this.normSquared(await opt.sumSquares(grads, this.ownUnits))) / unscale;
    if (lossScale !== undefined && !Number.isFinite(norm)) return norm;
    await opt.step(weights, grads, lr, clipScale(norm, clipNorm) / unscale);
    if (mask) for (const [a, b] of this.ownRanges) for (let i = a; i < b; i++) if (mask[i] === 0) weights[i] = 0;
    this.gatherWeights(weights);
    return norm;
  }

  /** After the update (sharded): start all-gathering the weights, bucket by bucket; `settle` waits for it. */
  private gatherWeights(weights: Float32Array): void {
    if (!this.sharded) return;
    const group = this.group!;
    const calls = this.buckets.map((b) => this.enqueue(() => group.allGather(weights.subarray(b.start, b.end)), this.gatherClock));
    this.gather = Promise.all(calls).then(() => {});
    this.gather.catch(() => {}); // awaited by settle(); nobody may await it if the run ends here
  }

  /** Waits for a pending weight all-gather (true when there was one: the weights changed). */
  async settle(): Promise<boolean> {
    const gather = this.gather;
    if (!gather) return false;
    const cutoff = performance.now();
    try {
      await gather;
    } finally {
      this.gather = undefined;
      this.lastGather = this.gatherClock.take(cutoff);
    }
    return true;
  }

  /** The optimizer's moments for the whole layout (sharded: all-gathered; a collective, every rank must call it). */
  async fullMoments(opt: AdamW): Promise<{ m: Float32Array; v: Float32Array }> {
    if (!this.sharded) return { m: opt.m, v: opt.v };
    const total = this.layout.total;
    const m = new Float32Array(total);
    const v = new Float32Array(total);
    opt.scatterInto(m, v);
    const group = this.group!;
    for (const b of this.buckets) {
      await this.enqueue(() => group.allGather(m.subarray(b.start, b.end)));
      await this.enqueue(() => group.allGather(v.subarray(b.start, b.end)));
    }
    return { m, v };
  }
}
