/**
 * One data-parallel training step with a fixed, simulated compute time, run by ttc's real step
 * engine: ml/train/data-parallel.ts (gradient buckets at parameter boundaries of the model's real
 * layout, reduce-scatter or all-reduce per bucket, the clip's global norm across shards, the ZeRO-1
 * update, the weight all-gather awaited at the next use of the weights) and ml/train/adamw.ts (the
 * real AdamW on the update threads). Only forward and backward are timers (an accelerator computing
 * leaves the CPU and the event loop free, so communication proceeds meanwhile): the backward timer
 * hands out the buckets in the order the backward pass produces them, each after its share of the
 * backward time, exactly where the trainer's read-back hands them to DataParallel.bucketReady.
 *
 *   allreduce          one bucket: backward → all-reduce → AdamW on every parameter
 *   allreduce-overlap  plan.buckets buckets, each all-reduced as soon as its backward slice is done
 *   sharded            ZeRO-1, one bucket: backward → reduce-scatter → AdamW on own 1/N → all-gather
 *   sharded-overlap    ZeRO-1 in buckets: reduce-scatters during the backward; the weight all-gather
 *                      runs until the next step needs the weights (its forward)
 */
import type { ProcessGroup } from '../../collective/index.ts';
import { paramLayout, type ModelDims } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { AdamW, sharedFloat32 } from '../../ml/train/adamw.ts';
import { DataParallel } from '../../ml/train/data-parallel.ts';
import type { StepVariant } from './alpha-beta.ts';

export const STEP_VARIANTS: StepVariant[] = ['allreduce', 'allreduce-overlap', 'sharded', 'sharded-overlap'];

export interface StepPlan {
  variant: StepVariant;
  /** the model whose parameter layout (and so buckets) the step uses */
  dims: ModelDims;
  /** forward + backward time per step, ms */
  computeMs: number;
  /** forward's share of computeMs (backward ≈ 2× forward) */
  forwardShare: number;
  /** gradient buckets for the overlap variants (dist.bucketBytes = the gradient bytes / buckets) */
  buckets: number;
  steps: number;
  warmup: number;
}

export interface StepResult {
  /** wall time per timed step (the last includes draining pending collectives) */
  stepMs: number[];
  /** median optimizer update time per step on this rank (clip + AdamW) and its ns per updated parameter */
  updateMs: number;
  updateNsPerParam: number;
  /** FNV-1a of the parameters' bytes after the last step: equal on every rank, or the step is wrong */
  paramsHash: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function fnv1a(a: Float32Array): string {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return (h >>> 0).toString(16);
}

/** Run warmup + steps steps on every rank of `group` (all ranks call it with the same plan). */
export async function runSteps(group: ProcessGroup, plan: StepPlan): Promise<StepResult> {
  const layout = paramLayout(plan.dims);
  const P = layout.total;
  const overlap = plan.variant.endsWith('overlap');
  const dp = new DataParallel(layout, group, {
    shardOptimizer: plan.variant.startsWith('sharded'),
    bucketBytes: overlap ? Math.ceil((P * 4) / Math.max(1, plan.buckets)) : P * 4,
    gradWire: 'f32',
  });
  const opt = new AdamW(layout, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01 }, dp.ownRanges);
  const weights = sharedFloat32(P);
  weights.set(initialWeights(layout, 1, 0.02));
  const grads = sharedFloat32(P);
  const fwd = plan.computeMs * plan.forwardShare, bwd = plan.computeMs - fwd;
  const updates: { ms: number; n: number }[] = [];
  const r = group.rank;

  const stepOnce = async (step: number): Promise<void> => {
    await dp.settle(); // the last step's weights (the trainer's settle before its forward)
    await sleep(fwd);
    for (let k = 0; k < dp.buckets.length; k++) {
      const b = dp.buckets[k]!;
      await sleep((bwd * (b.end - b.start)) / P);
      grads.fill(1e-3 * (r + 1) * ((step % 7) + 1), b.start, b.end);
      dp.bucketReady(k, grads);
    }
    await dp.reduced();
    const t0 = performance.now();
    await dp.update(opt, { weights, grads }, 1e-4, 1.0);
    updates.push({ ms: performance.now() - t0, n: opt.owned });
    if (!overlap) await dp.settle(); // without overlap the step ends when its weights are complete
  };

  for (let s = 0; s < plan.warmup; s++) await stepOnce(s);
  await dp.settle();
  await group.barrier();
  const stepMs: number[] = [];
  for (let s = 0; s < plan.steps; s++) {
    const t0 = performance.now();
    await stepOnce(plan.warmup + s);
    if (s === plan.steps - 1) await dp.settle();
    stepMs.push(performance.now() - t0);
  }
  const perStep = updates.slice(-plan.steps);
  const ms = perStep.reduce((a, u) => a + u.ms, 0) / plan.steps;
  const n = perStep.reduce((a, u) => a + u.n, 0) / plan.steps;
  return { stepMs, updateMs: ms, updateNsPerParam: n > 0 ? (ms * 1e6) / n : 0, paramsHash: fnv1a(weights) };
}
