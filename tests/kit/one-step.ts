/**
 * One MLM training step on one backend, for the webgpu-vs-cpu agreement check
 * (tests/webgpu.test.ts, `npm run bench:gpu -- --check`, bench/gpu-device.sh).
 *
 * The step is the project's real one: MlmTrainer.computeGradients (forward, loss, gradients)
 * then Trainer.apply (global-norm clip + AdamW, in JS on the flat arrays), from initialWeights()
 * and a synthetic masked batch (deterministic from the seed, masked by ml/data/masking.ts;
 * synthetic so that it needs no corpus: it runs the same from a bundle on an offline GPU host).
 * A matMul check (two products, one batched with a transposed operand) comes with it.
 *
 * Each side runs in its own process (a tfjs process holds one backend; Dawn is process-global):
 * runOneStep() here, written by writeOneStep() to a binary file that readOneStep() reads back;
 * compareOneStep() then compares two results under the tolerance below.
 */
import fs from 'node:fs';

import { BackendError, initBackend, type BackendChoice } from '../../ml/backend.ts';
import { maskBatch } from '../../ml/data/masking.ts';
import { CLS_ID, NUM_SPECIAL, SEP_ID } from '../../ml/data/tokenizer.ts';
import { paramLayout, type ModelDims } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { Rng } from '../../core/rng.ts';
import { tf } from '../../ml/tf.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import type { MaskedBatch } from '../../ml/data/batches.ts';

export interface OneStepArgs {
  backend: BackendChoice;
  /** accept a software webgpu adapter (lavapipe); default true for webgpu, false for auto */
  allowSoftwareGpu?: boolean;
  /** default false: the plain tfjs kernels are the reference */
  fastKernels?: boolean;
  threads?: number;
  /** only initialise the backend and report it (no step) */
  probe?: boolean;
  dims: ModelDims;
  batch: number;
  seed: number;
  lr: number;
  /** further steps after the compared one, recording tf.memory().numTensors after each */
  leakSteps?: number;
  /** model.precision (default fp32) */
  precision?: 'fp32' | 'mixed';
}

export interface OneStepResult {
  dims: ModelDims;
  backend: string;
  detail: string;
  log: string[];
  /** the precision the backend runs (mixed: f16 matmul + loss scaling) */
  precision?: string;
  loss: number;
  gradNorm: number;
  /** tensor count after the compared step and after each of the leakSteps further steps */
  numTensors: number[];
  ms: { init: number; step: number; leakSteps: number };
  /** d(loss)/d(weights) of the first step, before clipping */
  grads: Float32Array;
  /** weights after the first step (clip + AdamW) */
  weights: Float32Array;
  /** the matMul check's outputs, concatenated */
  matmul: Float32Array;
}

/** Small enough for lavapipe on 2 cores, big enough to have every op of the model. */
export const CHECK_MODEL: ModelDims = { layers: 2, hidden: 32, heads: 2, ffn: 64, seqLen: 32, vocab: 1000 };
export const CHECK_DEFAULTS = { batch: 4, seed: 1234, lr: 1e-3 } as const;
/**
 * Check models by name (`bench/gpu.ts --check --check-model NAME`): `tiny` is CHECK_MODEL, the one
 * the lavapipe test runs; `wide` has realistic widths (d=256, T=128, vocab 8000, 1,024 tokens per
 * batch) so that a real GPU's tiled matMul and long reductions are exercised too (too slow for
 * lavapipe on 2 cores; the cpu reference takes ~10-20 s).
 */
export const CHECK_MODELS: Record<string, { dims: ModelDims; batch: number }> = {
  tiny: { dims: CHECK_MODEL, batch: CHECK_DEFAULTS.batch },
  wide: { dims: { layers: 2, hidden: 256, heads: 4, ffn: 1024, seqLen: 128, vocab: 8000 }, batch: 8 },
};

/**
 * Agreement tolerance, float32. Float32's unit roundoff is 6e-8; the backends sum in different
 * orders and the GPU's exp/erf/rsqrt are not the CPU's. Measured on lavapipe (docs/gpu.md, 4
 * models/seeds): loss rel ≤ 7e-8, each parameter tensor's gradient ‖Δ‖/‖ref‖ ≤ 1.6e-6, weights
 * after the step max |Δ| ≤ 6e-7, matMul max |Δ| ≤ 2.7e-5 (values up to ~50): at most 3.7% of any
 * limit below (the comparison prints the share used). The limits keep that ≥ 25× margin for GPUs
 * that round differently, and still catch a real bug, which is off by O(1) in some tensor:
 * - loss: |Δ| ≤ lossRtol·|ref|;
 * - weights after clip + AdamW, and matMul: every element |Δ| ≤ atol + rtol·|ref| (numpy's
 *   allclose). An AdamW step moves a weight by ~lr = 1e-3, so atol 1e-4 is 10% of one update;
 * - gradients, every element: |Δ| ≤ gradAtolOfMax·max|ref| + rtol·|ref|, and every parameter
 *   tensor: ‖Δ‖ ≤ tensorRtol·‖ref‖ + tensorFloorOfTotal·‖all gradients‖. The per-tensor check is
 *   what sees the small gradients (query/key weights: ~1e-6 per element at init, far below any
 *   element-wise atol); its floor only matters for tensors whose gradient is 0 in exact arithmetic
 *   (the key bias: softmax ignores a per-row constant; ~1e-13 of rounding noise here).
 */
export const TOLERANCE = { lossRtol: 1e-5, rtol: 1e-3, atol: 1e-4, gradAtolOfMax: 1e-4, tensorRtol: 1e-4, tensorFloorOfTotal: 1e-7 } as const;

/** A masked batch of `batch` rows: [CLS] ids… [SEP], ids skewed towards small values so that
 * rows repeat tokens (the embedding gradient then sums duplicate indices). */
export function syntheticBatch(dims: ModelDims, batch: number, seed: number): MaskedBatch {
  const rng = new Rng(seed);
  const T = dims.seqLen;
  const ids = new Int32Array(batch * T);
  const span = dims.vocab - NUM_SPECIAL;
  for (let b = 0; b < batch; b++) {
    ids[b * T] = CLS_ID;
    for (let t = 1; t < T - 1; t++) ids[b * T + t] = NUM_SPECIAL + Math.min(span - 1, Math.floor(span * rng.next() ** 3));
    ids[b * T + T - 1] = SEP_ID;
  }
  const m = maskBatch(ids, batch, T, dims.vocab, rng);
  return { batch, seqLen: T, ...m };
}

function randomTensor(rng: Rng, shape: number[]): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal();
  return tf.tensor(v, shape, 'float32');
}

/** Two products: [96,160]·[160,128] and [4,32,48]·[4,40,48]ᵀ (batched, transposed b). */
export async function matmulCheck(seed: number): Promise<Float32Array> {
  const rng = new Rng(seed ^ 0x5eed);
  const out = tf.tidy(() => {
    const a = randomTensor(rng, [96, 160]);
    const b = randomTensor(rng, [160, 128]);
    const c = randomTensor(rng, [4, 32, 48]);
    const d = randomTensor(rng, [4, 40, 48]);
    return tf.concat([tf.matMul(a, b).reshape([-1]), tf.matMul(c, d, false, true).reshape([-1])]);
  });
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return Float32Array.from(data);
}

export async function runOneStep(a: OneStepArgs): Promise<OneStepResult> {
  const t0 = performance.now();
  const info = await initBackend(a.backend, { threads: a.threads ?? 1, fastKernels: a.fastKernels ?? false, allowSoftwareGpu: a.allowSoftwareGpu, precision: a.precision });
  const t1 = performance.now();
  const base = { dims: a.dims, backend: info.name, detail: info.detail, log: info.log, precision: info.precision };
  if (a.probe) {
    const empty = new Float32Array(0);
    return { ...base, loss: NaN, gradNorm: NaN, numTensors: [], ms: { init: t1 - t0, step: 0, leakSteps: 0 }, grads: empty, weights: empty, matmul: empty };
  }
  const layout = paramLayout(a.dims);
  const trainer = new MlmTrainer(
    // device 'cpu': this check compares the gradients, which the GPU-resident step never reads back
    // (that step has its own checks: tests/kit/gpu-step.ts)
    { dims: a.dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01, device: 'cpu' }, gradClipNorm: 1.0 },
    initialWeights(layout, a.seed, 0.02),
  );
  try {
    const batch = syntheticBatch(a.dims, a.batch, a.seed);
    const loss = await trainer.computeGradients(batch);
    // mixed precision: the gradients are scaled by the loss scale (a power of two: unscaled exactly)
    const scale = trainer.lossScaler?.scale ?? 1;
    const grads = Float32Array.from(trainer.grads, (g) => g / scale);
    const gradNorm = await trainer.apply(a.lr);
    const weights = Float32Array.from(trainer.weights);
    const t2 = performance.now();
    const numTensors = [tf.memory().numTensors];
    for (let i = 0; i < (a.leakSteps ?? 0); i++) {
      await trainer.computeGradients(syntheticBatch(a.dims, a.batch, a.seed + 1 + i));
      await trainer.apply(a.lr);
      numTensors.push(tf.memory().numTensors);
    }
    const t3 = performance.now();
    const matmul = await matmulCheck(a.seed);
    return { ...base, loss, gradNorm, numTensors, ms: { init: t1 - t0, step: t2 - t1, leakSteps: t3 - t2 }, grads, weights, matmul };
  } finally {
    trainer.dispose();
  }
}

// ---------- the result file: u32 header length, JSON header, then the float32 arrays ----------

const ARRAYS = ['grads', 'weights', 'matmul'] as const;

export function writeOneStep(file: string, r: OneStepResult): void {
  const { grads, weights, matmul, ...meta } = r;
  const header = Buffer.from(JSON.stringify({ ...meta, lengths: [grads.length, weights.length, matmul.length] }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const parts = [len, header, ...[grads, weights, matmul].map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength))];
  fs.writeFileSync(file, Buffer.concat(parts));
}

export function readOneStep(file: string): OneStepResult {
  const buf = fs.readFileSync(file);
  const n = buf.readUInt32LE(0);
  const meta = JSON.parse(buf.subarray(4, 4 + n).toString()) as Omit<OneStepResult, (typeof ARRAYS)[number]> & { lengths: number[] };
  let off = 4 + n;
  const arrays = meta.lengths.map((len) => {
    const copy = new Float32Array(len);
    new Uint8Array(copy.buffer).set(buf.subarray(off, off + len * 4));
    off += len * 4;
    return copy;
  });
  const { lengths: _lengths, ...rest } = meta;
  return { ...rest, grads: arrays[0], weights: arrays[1], matmul: arrays[2] };
}

// ---------- comparison ----------

export interface ArrayDiff {
  n: number;
  /** max |x − ref| */
  maxAbs: number;
  /** max |x − ref| / |ref| over the elements with |ref| ≥ 1e-3·max|ref| (tiny values say nothing relative) */
  maxRel: number;
  /** ‖x − ref‖₂ / ‖ref‖₂ */
  relL2: number;
  /** the atol used (scaled for gradients) */
  atol: number;
  /** elements outside atol + rtol·|ref| */
  bad: number;
  /** max over elements of |x − ref| / (atol + rtol·|ref|): the share of the tolerance used (> 1 fails) */
  used: number;
  /** the worst element: index, value, reference */
  worst?: { index: number; value: number; ref: number };
}

export function diffArrays(x: Float32Array, ref: Float32Array, rtol: number, atol: number): ArrayDiff {
  if (x.length !== ref.length) throw new Error(`length ${x.length} vs reference ${ref.length}`);
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  const floor = 1e-3 * maxRef;
  let maxAbs = 0;
  let maxRel = 0;
  let num = 0;
  let den = 0;
  let bad = 0;
  let worst: ArrayDiff['worst'];
  let worstExcess = -Infinity;
  let used = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(x[i] - ref[i]);
    if (!(d <= atol + rtol * Math.abs(ref[i]))) bad++; // NaN counts as bad
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? NaN : d;
    if (Math.abs(ref[i]) >= floor && floor > 0) maxRel = Math.max(maxRel, d / Math.abs(ref[i]));
    num += d * d;
    den += ref[i] * ref[i];
    const excess = Number.isNaN(d) ? Infinity : d - (atol + rtol * Math.abs(ref[i]));
    used = Math.max(used, Number.isNaN(d) ? Infinity : d / (atol + rtol * Math.abs(ref[i])));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = { index: i, value: x[i], ref: ref[i] };
    }
  }
  return { n: x.length, maxAbs, maxRel, relL2: den > 0 ? Math.sqrt(num / den) : Math.sqrt(num), atol, bad, used, worst };
}

export interface TensorDiff {
  name: string;
  norm: number;
  /** ‖Δ‖ / ‖ref‖ */
  relL2: number;
  /** ‖Δ‖ within tensorRtol·‖ref‖ + floor */
  ok: boolean;
}

export interface OneStepComparison {
  ok: boolean;
  /** per parameter tensor, gradients */
  tensors: TensorDiff[];
  loss: { value: number; ref: number; rel: number };
  gradNorm: { value: number; ref: number; rel: number };
  grads: ArrayDiff;
  weights: ArrayDiff;
  matmul: ArrayDiff;
  /** human-readable lines, the failing ones first */
  lines: string[];
}

/** A tolerance of TOLERANCE's form (other numbers, e.g. mixed precision's in tests/webgpu-matmul.test.ts). */
export type Tolerance = { readonly [K in keyof typeof TOLERANCE]: number };

export function compareOneStep(x: OneStepResult, ref: OneStepResult, tol: Tolerance = TOLERANCE): OneStepComparison {
  if (JSON.stringify(x.dims) !== JSON.stringify(ref.dims) || x.grads.length !== ref.grads.length) throw new Error('compareOneStep: the two results are of different models');
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
  let gradMax = 0;
  for (let i = 0; i < ref.grads.length; i++) gradMax = Math.max(gradMax, Math.abs(ref.grads[i]));
  const grads = diffArrays(x.grads, ref.grads, tol.rtol, tol.gradAtolOfMax * gradMax);
  const weights = diffArrays(x.weights, ref.weights, tol.rtol, tol.atol);
  const matmul = diffArrays(x.matmul, ref.matmul, tol.rtol, tol.atol);
  let totalSq = 0;
  for (let i = 0; i < ref.grads.length; i++) totalSq += ref.grads[i] * ref.grads[i];
  const floor = tol.tensorFloorOfTotal * Math.sqrt(totalSq);
  const tensors: TensorDiff[] = paramLayout(ref.dims).specs.map((s) => {
    let d2 = 0;
    let r2 = 0;
    for (let i = s.offset; i < s.offset + s.size; i++) {
      d2 += (x.grads[i] - ref.grads[i]) ** 2;
      r2 += ref.grads[i] ** 2;
    }
    const dn = Math.sqrt(d2);
    const rn = Math.sqrt(r2);
    return { name: s.name, norm: rn, relL2: rn > 0 ? dn / rn : dn, ok: dn <= tol.tensorRtol * rn + floor };
  });
  const badTensors = tensors.filter((t) => !t.ok);
  const worstTensor = tensors.filter((t) => t.norm > floor).sort((a, b) => b.relL2 - a.relL2)[0];
  const tensorUsed = Math.max(...tensors.map((t) => (t.relL2 * t.norm) / (tol.tensorRtol * t.norm + floor)));
  const loss = { value: x.loss, ref: ref.loss, rel: rel(x.loss, ref.loss) };
  const gradNorm = { value: x.gradNorm, ref: ref.gradNorm, rel: rel(x.gradNorm, ref.gradNorm) };
  const lossOk = loss.rel <= tol.lossRtol;
  const fmt = (name: string, d: ArrayDiff) =>
    `${d.bad === 0 ? 'ok  ' : 'FAIL'} ${name}: ${d.n} values, max |Δ| ${d.maxAbs.toExponential(2)}, max rel ${d.maxRel.toExponential(2)}, ‖Δ‖/‖ref‖ ${d.relL2.toExponential(2)}, ` +
    `${d.bad} outside ${d.atol.toExponential(1)} + ${tol.rtol}·|ref| (${(100 * d.used).toPrecision(2)}% of it used)` +
    (d.bad && d.worst ? ` (worst: [${d.worst.index}] ${d.worst.value} vs ${d.worst.ref})` : '');
  const lines = [
    `${lossOk ? 'ok  ' : 'FAIL'} loss: ${loss.value} vs ${loss.ref} (rel ${loss.rel.toExponential(2)}, limit ${tol.lossRtol}: ${((100 * loss.rel) / tol.lossRtol).toPrecision(2)}% used)`,
    `info gradient norm: ${gradNorm.value} vs ${gradNorm.ref} (rel ${gradNorm.rel.toExponential(2)})`,
    fmt('gradients', grads),
    `${badTensors.length === 0 ? 'ok  ' : 'FAIL'} gradients per tensor: ${tensors.length} tensors, worst ‖Δ‖/‖ref‖ ${worstTensor ? `${worstTensor.relL2.toExponential(2)} (${worstTensor.name})` : '—'}, ` +
      `limit ${tol.tensorRtol} + floor ${floor.toExponential(1)} (${(100 * tensorUsed).toPrecision(2)}% of it used)` +
      (badTensors.length ? `; outside: ${badTensors.map((t) => `${t.name} ${t.relL2.toExponential(2)}`).join(', ')}` : ''),
    fmt('weights after clip + AdamW', weights),
    fmt('matMul', matmul),
  ];
  lines.sort((a, b) => Number(b.startsWith('FAIL')) - Number(a.startsWith('FAIL')));
  const ok = lossOk && grads.bad === 0 && badTensors.length === 0 && weights.bad === 0 && matmul.bad === 0;
  return { ok, tensors, loss, gradNorm, grads, weights, matmul, lines };
}

// ---------- the child process's entry (bench/lib/one-step-child.ts, bench/gpu.ts --one-step) ----------

/**
 * argv: '<json OneStepArgs>' <result file>. Prints one JSON line: {"ok": true, backend, detail, log}
 * after writing the file (exit 0), {"unavailable": "<reasons>", log} when the backend cannot be
 * used (exit 3), {"error": "..."} otherwise (exit 1).
 */
export async function oneStepMain(argv: string[]): Promise<number> {
  const emit = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  try {
    const a = JSON.parse(argv[0] ?? '') as OneStepArgs;
    const file = argv[1];
    if (!file && !a.probe) throw new Error('usage: one-step <json args> <result file>');
    const r = await runOneStep(a);
    if (file) writeOneStep(file, r);
    emit({ ok: true, backend: r.backend, detail: r.detail, log: r.log, loss: r.loss, numTensors: r.numTensors, ms: r.ms });
    return 0;
  } catch (e) {
    if (e instanceof BackendError) {
      const lines = e.message.split('\n').map((s) => s.trim()).filter(Boolean);
      emit({ unavailable: lines.slice(1).join('; ') || lines[0], log: lines.slice(1) });
      return 3;
    }
    emit({ error: e instanceof Error ? e.message : String(e) });
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    return 1;
  }
}
