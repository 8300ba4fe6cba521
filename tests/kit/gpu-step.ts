/**
 * Checks of the GPU-resident step (ml/train/gpu-adamw.ts, Trainer's updateOn 'gpu'), run in a
 * child process on webgpu (lavapipe in tests/gpu-step.test.ts; Dawn is process-global):
 *
 *   node --import tsx tests/kit/gpu-step.ts <check>[,<check>…] ['<json args>']     prints one JSON line
 *
 * - `optimizer`: GpuAdamW vs the CPU AdamW (ml/train/adamw.ts) on the same weights and the same
 *   gradients, 3 steps, clipping active, decayed and undecayed parameters, a pruning mask;
 * - `trainer`: the same MLM trainer from the same weights on the same 3 batches, once with the CPU
 *   update (gradients read back, AdamW in JS, weights written back) and once GPU-resident; the
 *   losses, norms and the full state after 3 steps; the tensor count and the tfjs read-backs of
 *   each GPU step;
 * - `resume`: GPU-resident, 2 steps, a real checkpoint written and loaded, a new trainer from it:
 *   its 3rd step vs the uninterrupted trainer's 3rd step.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { initBackend } from '../../ml/backend.ts';
import { loadCheckpoint, saveCheckpoint } from '../../ml/checkpoint/checkpoint.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { Rng } from '../../core/rng.ts';
import { tf } from '../../ml/tf.ts';
import { AdamW, type AdamWOptions, type OptimizerDevice } from '../../ml/train/adamw.ts';
import { GpuAdamW } from '../../ml/train/gpu-adamw.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import { webgpuAccess } from '../../ml/webgpu-access.ts';
import { CHECK_MODEL, diffArrays, syntheticBatch, TOLERANCE } from './one-step.ts';

export const OPT: AdamWOptions = { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 };
const LR = 1e-3;

/** max over elements of |x − ref| / (atol + rtol·|ref|) (> 1 is outside) and max |x − ref| */
export function used(x: Float32Array, ref: Float32Array, rtol: number, atol: number): { used: number; maxAbs: number } {
  const d = diffArrays(x, ref, rtol, atol);
  return { used: d.used, maxAbs: d.maxAbs };
}

/**
 * The same per parameter tensor, atol = atolOfMax·max|ref| of that tensor: a moment near 0 (a
 * gradient that changed sign) says nothing relative, while one tensor's scale says nothing about
 * another's (parameters' gradients differ by decades).
 */
export function usedPerTensor(x: Float32Array, ref: Float32Array, layout: ParamLayout, rtol: number, atolOfMax: number): { used: number; maxAbs: number; worst: string } {
  let out = { used: 0, maxAbs: 0, worst: '' };
  for (const s of layout.specs) {
    const r = ref.subarray(s.offset, s.offset + s.size);
    const d = diffArrays(x.subarray(s.offset, s.offset + s.size), r, rtol, Math.max(1e-30, atolOfMax * maxAbs(r)));
    if (!(d.used <= out.used)) out = { used: d.used, maxAbs: Math.max(out.maxAbs, d.maxAbs), worst: s.name };
    else out.maxAbs = Math.max(out.maxAbs, d.maxAbs);
  }
  return out;
}

export interface CheckArgs {
  dims?: ModelDims;
  batch?: number;
  seed?: number;
}

/** GpuAdamW vs AdamW on identical gradients. */
async function optimizerCheck(a: CheckArgs) {
  const dims = a.dims ?? CHECK_MODEL;
  const layout = paramLayout(dims);
  const rng = new Rng(a.seed ?? 7);
  const w0 = initialWeights(layout, a.seed ?? 7, 0.02);
  const mask = new Uint8Array(layout.total).map(() => (rng.next() < 0.2 ? 0 : 1));
  for (let i = 0; i < mask.length; i++) if (!mask[i]) w0[i] = 0;
  const gradsOf = (k: number) => {
    const g = new Float32Array(layout.total);
    // varied scales per parameter (1e-6 … 1e-1) so that the moments span the float32 range AdamW meets
    for (const s of layout.specs) {
      const scale = 10 ** -(1 + ((s.offset + k) % 6));
      for (let i = s.offset; i < s.offset + s.size; i++) g[i] = rng.normal() * scale;
    }
    return g;
  };
  const grads = [gradsOf(0), gradsOf(1), gradsOf(2)];
  const clipNorm = 0.05; // below every step's norm: the clip scale is exercised

  // CPU reference: DataParallel's order (masked gradients zeroed, norm, AdamW, masked weights zeroed)
  const cpu = new AdamW(layout, { ...OPT, threads: 1 });
  const wCpu = Float32Array.from(w0);
  const cpuNorms: number[] = [];
  for (const g0 of grads) {
    const g = Float32Array.from(g0);
    for (let i = 0; i < g.length; i++) if (!mask[i]) g[i] = 0;
    cpuNorms.push(await cpu.update(wCpu, g, LR, clipNorm));
    for (let i = 0; i < g.length; i++) if (!mask[i]) wCpu[i] = 0;
  }

  const gpu = webgpuAccess()!;
  const opt = new GpuAdamW(gpu, layout, OPT);
  opt.setMoments(new Float32Array(layout.total), new Float32Array(layout.total));
  opt.setMask(mask);
  let weights = layout.specs.map((s) => tf.tensor(w0.slice(s.offset, s.offset + s.size), s.shape));
  const gpuNorms: number[] = [];
  const counts: number[] = [];
  for (let k = 0; k < grads.length; k++) {
    const g = layout.specs.map((s) => tf.tensor(grads[k]!.slice(s.offset, s.offset + s.size), s.shape));
    const next = opt.step(weights, g, undefined, { lr: LR, t: k + 1, clipNorm });
    tf.dispose([...weights, ...g]);
    weights = next;
    gpuNorms.push((await opt.readStats()).norm);
    counts.push(tf.memory().numTensors);
  }
  const wGpu = new Float32Array(layout.total);
  await gpu.read(layout.specs.map((s, i) => ({ buffer: gpu.buffer(weights[i]!), bytes: 4 * s.size, into: wGpu, at: s.offset })));
  const m = new Float32Array(layout.total);
  const v = new Float32Array(layout.total);
  await opt.readMoments(m, v);
  tf.dispose(weights);
  opt.dispose();
  let maskedNonZero = 0;
  for (let i = 0; i < mask.length; i++) if (!mask[i] && wGpu[i] !== 0) maskedNonZero++;
  return {
    norms: { gpu: gpuNorms, cpu: cpuNorms },
    weights: used(wGpu, wCpu, OPT_TOL.rtol, OPT_TOL.weightAtol),
    m: usedPerTensor(m, cpu.m, layout, OPT_TOL.rtol, OPT_TOL.momentAtolOfMax),
    v: usedPerTensor(v, cpu.v, layout, OPT_TOL.rtol, OPT_TOL.momentAtolOfMax),
    maskedNonZero,
    numTensors: counts,
    dispatches: layout.specs.length * 2 + 1,
  };
}

/**
 * GpuAdamW vs AdamW on the same gradients: float32 arithmetic vs float64 rounded once per store,
 * and the norm summed in another order: each weight, moment and the norm within a few float32
 * ulps. rtol 1e-5 (≈ 80 ulps) on every element; weightAtol 1e-9 for weights that cross 0 (an
 * AdamW step moves a weight by ~lr = 1e-3, so this is 1e-6 of one update); m and v relative only.
 */
export const OPT_TOL = { rtol: 1e-5, weightAtol: 1e-9, momentAtolOfMax: 1e-6, normRtol: 1e-5 } as const;

interface TrainerRun {
  losses: number[];
  norms: number[];
  state: { weights: Float32Array; m: Float32Array; v: Float32Array; t: number };
  numTensors: number[];
  reads: number[];
  updateOn: string;
  /** evaluate() after the steps, on two held-out batches */
  evalLoss: number;
}

/**
 * Counts tfjs's read-backs from the GPU (backend.read / readSync of a tensor whose values are not
 * on the CPU already; a small CPU-side tensor read by a kernel, e.g. Tile's, is not one) while `f` runs.
 */
async function countReads<T>(f: () => Promise<T>): Promise<{ value: T; reads: number }> {
  type Backend = { read: (id: object) => Promise<unknown>; readSync: (id: object) => unknown; tensorMap: { get(id: object): { values: unknown } | undefined } };
  const backend = tf.backend() as unknown as Backend;
  const read = backend.read;
  const readSync = backend.readSync;
  let reads = 0;
  const onGpu = (id: object) => backend.tensorMap.get(id)?.values == null;
  backend.read = function (this: Backend, id: object) {
    if (onGpu(id)) reads++;
    return read.call(this, id);
  };
  backend.readSync = function (this: Backend, id: object) {
    if (onGpu(id)) reads++;
    return readSync.call(this, id);
  };
  try {
    return { value: await f(), reads };
  } finally {
    backend.read = read;
    backend.readSync = readSync;
  }
}

async function trainSteps(device: OptimizerDevice, dims: ModelDims, batch: number, seed: number, steps: number, clip: number): Promise<TrainerRun> {
  const layout = paramLayout(dims);
  const trainer = new MlmTrainer({ dims, optimizer: { ...OPT, device }, gradClipNorm: clip }, initialWeights(layout, seed, 0.02));
  const out: TrainerRun = { losses: [], norms: [], numTensors: [], reads: [], updateOn: trainer.updateOn, evalLoss: NaN, state: undefined! };
  try {
    for (let k = 0; k < steps; k++) {
      const b = syntheticBatch(dims, batch, seed + k);
      const { value: r, reads } = await countReads(() => trainer.step(b, LR));
      out.losses.push(r.loss);
      out.norms.push(r.gradNorm);
      out.reads.push(reads);
      out.numTensors.push(tf.memory().numTensors);
    }
    out.evalLoss = await trainer.evaluate([syntheticBatch(dims, batch, seed + 100), syntheticBatch(dims, batch, seed + 101)]);
    const s = await trainer.fullState();
    out.state = { weights: Float32Array.from(s.weights), m: Float32Array.from(s.m), v: Float32Array.from(s.v), t: s.t };
    return out;
  } finally {
    trainer.dispose();
  }
}

async function trainerCheck(a: CheckArgs) {
  const dims = a.dims ?? CHECK_MODEL;
  const batch = a.batch ?? 4;
  const seed = a.seed ?? 1234;
  // clip 0.5: below the first steps' norms (≈1–3 here), so both paths scale
  const cpu = await trainSteps('cpu', dims, batch, seed, 3, 0.5);
  const gpu = await trainSteps('auto', dims, batch, seed, 3, 0.5);
  return { cpu: summary(cpu), gpu: summary(gpu), ...compareRuns(gpu, cpu, paramLayout(dims)) };
}

const summary = (r: TrainerRun) => ({ updateOn: r.updateOn, losses: r.losses, norms: r.norms, numTensors: r.numTensors, reads: r.reads, t: r.state.t, evalLoss: r.evalLoss });

function compareRuns(x: TrainerRun, ref: TrainerRun, layout: ParamLayout) {
  return {
    weights: used(x.state.weights, ref.state.weights, TOLERANCE.rtol, TOLERANCE.atol),
    m: tensorNorms(x.state.m, ref.state.m, layout),
    v: tensorNorms(x.state.v, ref.state.v, layout),
  };
}

/**
 * Trainer runs (CPU update vs GPU-resident, both on webgpu): the gradients themselves differ by the
 * GPU's unordered reductions (not bit-repeatable, docs/gpu.md), and the key bias's gradient is
 * rounding noise around 0 whose moments differ entirely. So the moments are compared as
 * tests/kit/one-step.ts compares gradients: per parameter tensor, ‖Δ‖ ≤ tensorRtol·‖ref‖ +
 * tensorFloorOfTotal·‖ref over all tensors‖ (TOLERANCE's values).
 */
export function tensorNorms(x: Float32Array, ref: Float32Array, layout: ParamLayout): { used: number; worst: string; worstRel: number } {
  let total = 0;
  for (let i = 0; i < ref.length; i++) total += ref[i]! * ref[i]!;
  const floor = TOLERANCE.tensorFloorOfTotal * Math.sqrt(total);
  let out = { used: 0, worst: '', worstRel: 0 };
  for (const s of layout.specs) {
    let d2 = 0;
    let r2 = 0;
    for (let i = s.offset; i < s.offset + s.size; i++) {
      d2 += (x[i]! - ref[i]!) ** 2;
      r2 += ref[i]! ** 2;
    }
    const u = Math.sqrt(d2) / (TOLERANCE.tensorRtol * Math.sqrt(r2) + floor);
    if (!(u <= out.used)) out = { used: u, worst: s.name, worstRel: r2 > 0 ? Math.sqrt(d2 / r2) : Math.sqrt(d2) };
  }
  return out;
}

const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

async function resumeCheck(a: CheckArgs) {
  const dims = a.dims ?? CHECK_MODEL;
  const batch = a.batch ?? 4;
  const seed = a.seed ?? 1234;
  const layout = paramLayout(dims);
  const opts = { dims, optimizer: { ...OPT, device: 'gpu' as const }, gradClipNorm: 1 };
  const first = new MlmTrainer(opts, initialWeights(layout, seed, 0.02));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-gpu-resume-'));
  try {
    for (let k = 0; k < 2; k++) await first.step(syntheticBatch(dims, batch, seed + k), LR);
    const s = await first.fullState();
    const state = { step: 2, totalSteps: 3, flopsUsed: 0, secondsUsed: 0, tokensSeen: 0, dataPosition: { epoch: 0, offset: 0 }, rngState: [1, 2, 3, 4] as [number, number, number, number], worldSize: 1 };
    const ckptDir = saveCheckpoint(dir, layout, { dims, weights: s.weights, optimizer: { m: s.m, v: s.v, t: s.t }, state });
    const ckpt = loadCheckpoint(ckptDir, layout);
    const resumed = new MlmTrainer(opts, ckpt.weights);
    resumed.setOptimizerState(ckpt.optimizer);
    const b3 = syntheticBatch(dims, batch, seed + 2);
    const r1 = await first.step(b3, LR);
    const r2 = await resumed.step(b3, LR);
    const w1 = Float32Array.from((await first.fullState()).weights);
    const w2 = Float32Array.from((await resumed.fullState()).weights);
    const out = {
      updateOn: [first.updateOn, resumed.updateOn],
      t: [first.optimizer.t, resumed.optimizer.t],
      loss: { uninterrupted: r1.loss, resumed: r2.loss, rel: Math.abs(r1.loss - r2.loss) / Math.abs(r1.loss) },
      norm: { uninterrupted: r1.gradNorm, resumed: r2.gradNorm },
      weights: used(w2, w1, TOLERANCE.rtol, TOLERANCE.atol),
    };
    first.dispose();
    resumed.dispose();
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A pruning mask set after GPU-resident steps (the device holds newer weights than the host: they
 * are masked on the device) holds through the next step; the unmasked weights keep training.
 */
async function maskCheck(a: CheckArgs) {
  const dims = a.dims ?? CHECK_MODEL;
  const batch = a.batch ?? 4;
  const seed = a.seed ?? 1234;
  const layout = paramLayout(dims);
  const trainer = new MlmTrainer({ dims, optimizer: { ...OPT, device: 'gpu' }, gradClipNorm: 1 }, initialWeights(layout, seed, 0.02));
  try {
    await trainer.step(syntheticBatch(dims, batch, seed), LR);
    const before = Float32Array.from(await trainer.hostWeights());
    const rng = new Rng(seed);
    const mask = new Uint8Array(layout.total).map(() => (rng.next() < 0.3 ? 0 : 1));
    await trainer.step(syntheticBatch(dims, batch, seed + 1), LR); // the device is ahead of the host again
    const ahead = Float32Array.from((await trainer.fullState()).weights);
    await trainer.step(syntheticBatch(dims, batch, seed + 2), LR);
    trainer.setMask(mask);
    const masked = Float32Array.from(await trainer.hostWeights());
    await trainer.step(syntheticBatch(dims, batch, seed + 3), LR);
    const after = await trainer.fullState();
    let zeroAfterMask = 0;
    let zeroAfterStep = 0;
    let changed = 0;
    let keptNonZero = 0;
    for (let i = 0; i < mask.length; i++) {
      if (mask[i] === 0) {
        if (masked[i] === 0) zeroAfterMask++;
        if (after.weights[i] === 0) zeroAfterStep++;
      } else {
        if (after.weights[i] !== masked[i]) changed++;
        if (masked[i] !== 0) keptNonZero++;
      }
    }
    const dropped = mask.reduce((n, x) => n + (x === 0 ? 1 : 0), 0);
    return { dropped, zeroAfterMask, zeroAfterStep, keptNonZero, changed, kept: mask.length - dropped, stepsMoved: ahead.some((x, i) => x !== before[i]) };
  } finally {
    trainer.dispose();
  }
}

export const CHECKS = { optimizer: optimizerCheck, trainer: trainerCheck, resume: resumeCheck, mask: maskCheck } as const;

/** argv: <check>[,<check>…] [json args]: runs the checks in turn, one backend init; prints {"ok": true, results: {check: result}} */
export async function gpuStepMain(argv: string[]): Promise<number> {
  const emit = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  try {
    const checks = (argv[0] ?? '').split(',') as Array<keyof typeof CHECKS>;
    if (!checks.every((c) => c in CHECKS)) throw new Error(`usage: gpu-step <${Object.keys(CHECKS).join('|')}>[,…] [json args]`);
    const info = await initBackend('webgpu', { threads: 1, allowSoftwareGpu: true });
    const results: Record<string, unknown> = {};
    const ms: Record<string, number> = {};
    for (const c of checks) {
      const t0 = performance.now();
      results[c] = await CHECKS[c](JSON.parse(argv[1] ?? '{}') as CheckArgs);
      ms[c] = performance.now() - t0;
    }
    emit({ ok: true, backend: info.detail, ms, results });
    return 0;
  } catch (e) {
    emit({ error: e instanceof Error ? e.message : String(e), stack: e instanceof Error ? e.stack : undefined });
    return 1;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  process.exit(await gpuStepMain(process.argv.slice(2)));
}
