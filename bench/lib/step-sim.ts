/**
 * One data-parallel training step with a fixed, simulated compute time, written against the
 * ProcessGroup interface only: forward and backward are timers (an accelerator computing leaves
 * the CPU and the event loop free, so communication can proceed meanwhile), the gradient
 * exchange and the optimizer update are real (AdamW over Float32Arrays in JS, as ml/ does on
 * the CPU backends).
 *
 *   allreduce          backward → allReduce(grads) → AdamW on every parameter
 *   allreduce-overlap  backward in buckets, each bucket's allReduce started as soon as it is ready
 *   sharded            ZeRO-1: backward → reduceScatter(grads) → AdamW on own 1/N → allGather(params)
 *   sharded-overlap    the same in buckets: reduce-scatter during backward, the update of each
 *                      bucket as its reduce-scatter lands, all-gathers during the next forward
 *
 * NOTE for the real step engine (ml/, ZeRO-1 + bucketed overlap): once it lands, `runSteps` should
 * call it with a fixed-time compute stub instead of `stepOnce`; the plan, result and the driver in
 * bench/cluster.ts stay as they are.
 */
import { chunkLayout, type ProcessGroup } from '../../collective/index.ts';
import type { StepVariant } from './alpha-beta.ts';

export const STEP_VARIANTS: StepVariant[] = ['allreduce', 'allreduce-overlap', 'sharded', 'sharded-overlap'];

export interface StepPlan {
  variant: StepVariant;
  params: number;
  /** forward + backward time per step, ms */
  computeMs: number;
  /** forward's share of computeMs (backward ≈ 2× forward) */
  forwardShare: number;
  /** gradient buckets for the overlap variants */
  buckets: number;
  steps: number;
  warmup: number;
}

export interface StepResult {
  /** wall time per timed step (the last includes draining pending collectives) */
  stepMs: number[];
  /** median AdamW time per step on this rank and its ns per updated parameter */
  updateMs: number;
  updateNsPerParam: number;
  /** FNV-1a of the parameters' bytes after the last step: equal on every rank, or the schedule is wrong */
  paramsHash: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class AdamW {
  readonly m: Float32Array;
  readonly v: Float32Array;
  t = 0;
  constructor(n: number, readonly lr = 1e-4, readonly wd = 0.01, readonly b1 = 0.9, readonly b2 = 0.999, readonly eps = 1e-8) {
    this.m = new Float32Array(n);
    this.v = new Float32Array(n);
  }
  /** update params[lo, hi) from grads[lo, hi) */
  update(params: Float32Array, grads: Float32Array, lo: number, hi: number): void {
    const { m, v, b1, b2, eps, lr, wd } = this;
    const c1 = 1 / (1 - b1 ** this.t), c2 = 1 / (1 - b2 ** this.t);
    for (let i = lo; i < hi; i++) {
      const g = grads[i]!;
      const mi = (m[i] = b1 * m[i]! + (1 - b1) * g);
      const vi = (v[i] = b2 * v[i]! + (1 - b2) * g * g);
      params[i] = params[i]! - lr * ((mi * c1) / (Math.sqrt(vi * c2) + eps) + wd * params[i]!);
    }
  }
}

function fnv1a(a: Float32Array): string {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return (h >>> 0).toString(16);
}

/** Contiguous bucket ranges over `n` elements (backward produces the last one first). */
function bucketRanges(n: number, buckets: number): [number, number][] {
  const b = Math.max(1, Math.min(buckets, n));
  return Array.from({ length: b }, (_, i) => [Math.floor((i * n) / b), Math.floor(((i + 1) * n) / b)]);
}

/** Run warmup + steps steps on every rank of `group` (all ranks call it with the same plan). */
export async function runSteps(group: ProcessGroup, plan: StepPlan): Promise<StepResult> {
  const P = plan.params, N = group.worldSize, r = group.rank;
  const params = new Float32Array(P).fill(0.01);
  const grads = new Float32Array(P);
  const opt = new AdamW(P);
  const fwd = plan.computeMs * plan.forwardShare, bwd = plan.computeMs - fwd;
  const ranges = bucketRanges(P, plan.variant.endsWith('overlap') ? plan.buckets : 1);
  // a ProcessGroup runs one call at a time: collectives are chained in issue order
  let chain: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(f: () => Promise<T>): Promise<T> => { const p = chain.then(f); chain = p.catch(() => {}); return p; };
  let gathered: Promise<unknown>[] = ranges.map(() => Promise.resolve());
  const updates: { ms: number; n: number }[] = [];
  const timedUpdate = (lo: number, hi: number) => {
    const t0 = performance.now();
    opt.update(params, grads, lo, hi);
    updates.push({ ms: performance.now() - t0, n: hi - lo });
  };
  const ownRange = (lo: number, hi: number): [number, number] => {
    const l = chunkLayout(hi - lo, N);
    return [lo + l.start[r]!, lo + l.start[r]! + l.len[r]!];
  };
  const fakeGrads = (lo: number, hi: number, step: number) => grads.fill(1e-3 * (r + 1) * ((step % 7) + 1), lo, hi);

  const stepOnce = async (step: number): Promise<void> => {
    opt.t = step + 1;
    // forward, bucket by bucket, each waiting for its parameters (all-gathered in the last step)
    for (let b = 0; b < ranges.length; b++) { await gathered[b]; await sleep(fwd / ranges.length); }
    const ready: Promise<unknown>[] = new Array(ranges.length);
    for (let b = ranges.length - 1; b >= 0; b--) {
      await sleep(bwd / ranges.length);
      const [lo, hi] = ranges[b]!;
      fakeGrads(lo, hi, step);
      const view = grads.subarray(lo, hi);
      ready[b] = plan.variant.startsWith('sharded') ? enqueue(() => group.reduceScatter(view, 'mean')) : enqueue(() => group.allReduce(view, 'mean'));
    }
    for (let b = ranges.length - 1; b >= 0; b--) {
      await ready[b];
      const [lo, hi] = ranges[b]!;
      if (plan.variant.startsWith('sharded')) timedUpdate(...ownRange(lo, hi));
      else timedUpdate(lo, hi);
    }
    if (plan.variant.startsWith('sharded')) {
      // in forward order, so the next forward's first bucket is gathered first
      gathered = ranges.map(([lo, hi]) => enqueue(() => group.allGather(params.subarray(lo, hi))));
      // without overlap the step ends when its parameters are complete
      if (plan.variant === 'sharded') await Promise.all(gathered);
    }
  };

  for (let s = 0; s < plan.warmup; s++) await stepOnce(s);
  await Promise.all(gathered);
  await group.barrier();
  const stepMs: number[] = [];
  for (let s = 0; s < plan.steps; s++) {
    const t0 = performance.now();
    await stepOnce(plan.warmup + s);
    if (s === plan.steps - 1) await Promise.all(gathered);
    stepMs.push(performance.now() - t0);
  }
  const perStep = updates.slice(-plan.steps * ranges.length);
  const ms = perStep.reduce((a, u) => a + u.ms, 0) / plan.steps;
  const n = perStep.reduce((a, u) => a + u.n, 0) / plan.steps;
  return { stepMs, updateMs: ms, updateNsPerParam: n > 0 ? (ms * 1e6) / n : 0, paramsHash: fnv1a(params) };
}
