/**
 * The webgpu fused kernels (ml/kernels/webgpu) against the tfjs-webgpu compositions they replace,
 * in one process, alternated: each op forward, and forward + backward, at a model's shapes (median
 * ms per call and the ratio composite / fused, plus compute dispatches per call); then one full
 * MLM training step with the fused ops on and off (setFusedEnabled), alternated: compute
 * dispatches per step, the gradient part's ms and the whole step's ms.
 *
 *   npm run bench:gpu-kernels [-- --allow-software] [-- --shapes base|lavapipe] [-- --reps N] [-- --json FILE]
 *
 * --allow-software  run on a software adapter (lavapipe); default shapes then `lavapipe`
 * --shapes S        `base` (BERT-base widths: N = 32·128 rows, d 768, ffn 3072, V 8000, step
 *                   model L4 d256 B32×128) or `lavapipe` (N = 8·64, d 128, ffn 512, V 2000, step
 *                   model L1 d64 B8×32)
 * --reps N          timed samples per variant and op (default 9; each runs the op `inner` times);
 *                   the step runs 5 (base) or 7 (lavapipe) alternated pairs
 *
 * CPU ms (process.cpuUsage) is what a software adapter's work costs regardless of other load on
 * the machine: lavapipe runs the shaders on this process's threads. On a GPU it is the host's
 * recording overhead.
 *
 * Dispatches are counted by wrapping GPUComputePassEncoder.prototype.dispatchWorkgroups (Dawn's
 * class), so both tfjs's programs and the fused kernels are seen. A sample ends when the GPU queue
 * is idle (onSubmittedWorkDone), without reading results back.
 */
// navigator.gpu first, then the webgpu backend: see ./lib/gpu-setup.ts (keep these two imports first)
import './lib/gpu-setup.ts';
import '@tensorflow/tfjs-backend-webgpu';

import fs from 'node:fs';
import os from 'node:os';

import { Rng } from '../core/rng.ts';
import { BackendError, initBackend } from '../ml/backend.ts';
import { biasGelu, embeddingGrad, layerNorm, setFusedEnabled, softmaxCrossEntropyRows, activeFused } from '../ml/kernels/fused.ts';
import { paramLayout, type ModelDims } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { tf, type Tensor } from '../ml/tf.ts';
import { MlmTrainer } from '../ml/train/trainer.ts';
import { syntheticBatch } from '../tests/kit/one-step.ts';
import { benchArgs } from './lib/args.ts';
import { countingDispatches } from './lib/dispatch-count.ts';
import { median } from './lib/median.ts';
import { printTable } from './lib/table.ts';

const { flag, opt } = benchArgs();

interface Shapes {
  rows: number;
  d: number;
  ffn: number;
  vocab: number;
  masked: number;
  inner: number;
  step: { dims: ModelDims; batch: number; reps: number };
}
const SHAPES: Record<string, Shapes> = {
  base: { rows: 32 * 128, d: 768, ffn: 3072, vocab: 8000, masked: 614, inner: 10, step: { dims: { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 128, vocab: 8000 }, batch: 32, reps: 5 } },
  lavapipe: { rows: 8 * 64, d: 128, ffn: 512, vocab: 2000, masked: 77, inner: 3, step: { dims: { layers: 1, hidden: 64, heads: 2, ffn: 256, seqLen: 32, vocab: 1000 }, batch: 8, reps: 7 } },
};

// ---------- dispatch counting ----------

/** wraps the dispatches once the backend is up (main) */
let dispatchCounter: { get: () => number } = { get: () => 0 };
const dispatches = () => dispatchCounter.get();

/** Waits until the GPU has run everything recorded so far (nothing read back). */
async function gpuIdle(): Promise<void> {
  const b = tf.backend() as unknown as { ensureCommandEncoderReady(): void; endComputePassEncoder(): void; submitQueue(): void; device: GPUDevice };
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await b.device.queue.onSubmittedWorkDone();
}

// ---------- per-op ----------

interface OpCase {
  name: string;
  inputs: Tensor[];
  f: (...xs: Tensor[]) => Tensor;
  /** has a backward (the embedding gradient is one itself) */
  grad: boolean;
  /** other tensors it holds (labels, ids) */
  owned?: Tensor[];
}

function normal(rng: Rng, shape: number[], scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return tf.tensor(v, shape, 'float32');
}

function opCases(s: Shapes): OpCase[] {
  const rng = new Rng(7);
  const labels = tf.tensor1d(Array.from({ length: s.masked }, () => Math.floor(rng.next() * s.vocab)), 'int32');
  const ids = tf.tensor1d(Array.from({ length: s.rows }, () => Math.floor(rng.next() ** 3 * s.vocab)), 'int32');
  return [
    { name: `layerNorm [${s.rows},${s.d}]`, inputs: [normal(rng, [s.rows, s.d], 2), normal(rng, [s.d]), normal(rng, [s.d])], f: (x, g, b) => layerNorm(x, g, b), grad: true },
    { name: `biasGelu [${s.rows},${s.ffn}]`, inputs: [normal(rng, [s.rows, s.ffn], 2), normal(rng, [s.ffn])], f: (x, b) => biasGelu(x, b), grad: true },
    { name: `softmaxXent [${s.masked},${s.vocab}]`, inputs: [normal(rng, [s.masked, s.vocab], 3)], f: (x) => softmaxCrossEntropyRows(x, labels, s.vocab), grad: true, owned: [labels] },
    { name: `embeddingGrad [${s.rows},${s.d}] → [${s.vocab},${s.d}]`, inputs: [normal(rng, [s.rows, s.d])], f: (dy) => embeddingGrad(dy, ids, s.vocab), grad: false, owned: [ids] },
  ];
}

/** One call of the op (forward, or forward + backward), its outputs disposed. */
function call(c: OpCase, backward: boolean, dy: Tensor): void {
  // (a tidy keeps what its function returns: dispose the results too)
  tf.dispose(tf.tidy(() => (backward ? tf.grads((...xs: Tensor[]) => tf.sum(tf.mul(c.f(...xs), dy)))(c.inputs) : [c.f(...c.inputs)])));
}

interface Timing {
  ms: number[];
  cpuMs: number[];
  dispatches: number;
}

/** CPU ms of this process so far: tfjs's recording and, on a software adapter, the shaders' execution (lavapipe runs them on this process's threads). */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function sample(c: OpCase, backward: boolean, dy: Tensor, inner: number): Promise<{ ms: number; cpuMs: number; dispatches: number }> {
  await gpuIdle();
  const d0 = dispatches();
  const [t0, c0] = [performance.now(), cpuMs()];
  for (let i = 0; i < inner; i++) call(c, backward, dy);
  await gpuIdle();
  return { ms: (performance.now() - t0) / inner, cpuMs: (cpuMs() - c0) / inner, dispatches: (dispatches() - d0) / inner };
}

async function benchOp(c: OpCase, backward: boolean, s: Shapes, reps: number): Promise<Record<'fused' | 'composite', Timing>> {
  const dy = tf.tidy(() => normal(new Rng(3), c.f(...c.inputs).shape));
  const out: Record<'fused' | 'composite', Timing> = { fused: { ms: [], cpuMs: [], dispatches: 0 }, composite: { ms: [], cpuMs: [], dispatches: 0 } };
  for (const on of [true, false]) {
    setFusedEnabled(on);
    await sample(c, backward, dy, 1); // compile the shaders
  }
  for (let r = 0; r < reps; r++) {
    for (const on of r % 2 ? [false, true] : [true, false]) {
      setFusedEnabled(on);
      const x = await sample(c, backward, dy, s.inner);
      const t = on ? out.fused : out.composite;
      t.ms.push(x.ms);
      t.cpuMs.push(x.cpuMs);
      t.dispatches = x.dispatches;
    }
  }
  setFusedEnabled(true);
  dy.dispose();
  return out;
}

// ---------- full step ----------

type StepTiming = { gradMs: number[]; stepMs: number[]; stepCpuMs: number[]; dispatches: number; numTensors: number[] };

async function benchStep(s: Shapes): Promise<Record<'fused' | 'composite', StepTiming>> {
  const { dims, batch, reps } = s.step;
  const trainer = new MlmTrainer({ dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1.0 }, initialWeights(paramLayout(dims), 1234, 0.02));
  const batches = [0, 1, 2, 3].map((i) => syntheticBatch(dims, batch, 1234 + i));
  const out: Record<'fused' | 'composite', StepTiming> = {
    fused: { gradMs: [], stepMs: [], stepCpuMs: [], dispatches: 0, numTensors: [] },
    composite: { gradMs: [], stepMs: [], stepCpuMs: [], dispatches: 0, numTensors: [] },
  };
  let k = 0;
  const step = async (on: boolean) => {
    setFusedEnabled(on);
    const d0 = dispatches();
    const [t0, c0] = [performance.now(), cpuMs()];
    await trainer.computeGradients(batches[k++ % batches.length]);
    const t1 = performance.now();
    const d1 = dispatches();
    await trainer.apply(1e-4);
    return { gradMs: t1 - t0, stepMs: performance.now() - t0, stepCpuMs: cpuMs() - c0, dispatches: d1 - d0 };
  };
  try {
    for (const on of [true, false]) await step(on); // warm-up: shader compiles
    for (let r = 0; r < reps; r++) {
      for (const on of r % 2 ? [false, true] : [true, false]) {
        const x = await step(on);
        const t = on ? out.fused : out.composite;
        t.gradMs.push(x.gradMs);
        t.stepMs.push(x.stepMs);
        t.stepCpuMs.push(x.stepCpuMs);
        t.dispatches = x.dispatches;
        t.numTensors.push(tf.memory().numTensors);
      }
    }
  } finally {
    setFusedEnabled(true);
    trainer.dispose();
  }
  return out;
}

// ---------- main ----------

/** Median of composite/fused over the alternated pairs: a pair shares the machine's load of the moment. */
const pairedRatio = (composite: number[], fused: number[]) => median(composite.map((c, i) => c / fused[i]));

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

async function main(): Promise<number> {
  const software = flag('--allow-software');
  let info;
  try {
    info = await initBackend('webgpu', { threads: 1, allowSoftwareGpu: software });
  } catch (e) {
    if (e instanceof BackendError) {
      console.log(`no GPU adapter: ${e.message.split('\n').slice(1).map((l) => l.trim()).join('; ')}`);
      return 0;
    }
    throw e;
  }
  const shapesName = opt('--shapes') ?? (/llvmpipe|lavapipe|swiftshader/i.test(info.detail) ? 'lavapipe' : 'base');
  const s = SHAPES[shapesName];
  if (!s) throw new Error(`--shapes: unknown "${shapesName}" (${Object.keys(SHAPES).join(', ')})`);
  const reps = Number(opt('--reps') ?? 9);
  dispatchCounter = countingDispatches();
  console.log(`${info.detail}; fused ops on: ${activeFused().join(', ')}; shapes ${shapesName}; ${reps} alternated samples × ${s.inner} calls; host ${os.cpus()[0]?.model} ×${os.availableParallelism()}, load ${os.loadavg()[0].toFixed(1)}`);
  for (const l of info.log.filter((x) => /fused/.test(x))) console.log(`  ${l}`);

  const tensorsBefore = tf.memory().numTensors;
  const cases = opCases(s);
  const opRows: string[][] = [];
  const json: Record<string, unknown>[] = [];
  for (const c of cases) {
    for (const backward of c.grad ? [false, true] : [false]) {
      const r = await benchOp(c, backward, s, reps);
      const [f, m] = [median(r.fused.ms), median(r.composite.ms)];
      const [fc, mc] = [median(r.fused.cpuMs), median(r.composite.cpuMs)];
      opRows.push([c.name, backward ? 'fwd+bwd' : 'fwd', fmt(m), fmt(f), `${pairedRatio(r.composite.ms, r.fused.ms).toFixed(2)}×`, fmt(mc), fmt(fc), `${pairedRatio(r.composite.cpuMs, r.fused.cpuMs).toFixed(2)}×`, String(r.composite.dispatches), String(r.fused.dispatches)]);
      json.push({ op: c.name, pass: backward ? 'fwd+bwd' : 'fwd', composite: r.composite, fused: r.fused });
    }
  }
  tf.dispose(cases.flatMap((c) => [...c.inputs, ...(c.owned ?? [])]));
  const opLeak = tf.memory().numTensors - tensorsBefore;
  console.log('\nPer op (median ms per call; speed-up: median over the alternated pairs of composite / fused):\n');
  printTable(['op', 'pass', 'composite ms', 'fused ms', 'speed-up', 'composite CPU ms', 'fused CPU ms', 'CPU ratio', 'dispatches composite', 'dispatches fused'], opRows);
  console.log(`(tensors left by the per-op runs: ${opLeak}; the fwd+bwd dispatches include the harness's sum(f·dy) and its gradient, the same on both sides)`);

  const st = await benchStep(s);
  const d = s.step.dims;
  console.log(`\nOne MLM training step, L${d.layers} d${d.hidden} h${d.heads} ffn${d.ffn} V${d.vocab}, B${s.step.batch}×${d.seqLen} (median of ${s.step.reps}, alternated):\n`);
  const row = (name: string, t: StepTiming) => [name, String(t.dispatches), fmt(median(t.gradMs)), fmt(median(t.stepMs)), fmt(median(t.stepCpuMs)), t.numTensors.join(' ')];
  printTable(['fused ops', 'dispatches per step', 'grad ms', 'step ms', 'step CPU ms', 'tensors after each step'], [row('off (tfjs compositions)', st.composite), row(`on (${activeFused().join(', ')})`, st.fused)]);
  console.log(
    `\nstep speed-up ${pairedRatio(st.composite.stepMs, st.fused.stepMs).toFixed(2)}× wall, ${pairedRatio(st.composite.stepCpuMs, st.fused.stepCpuMs).toFixed(2)}× CPU time (medians over the alternated pairs); ` +
      `dispatches −${(100 * (1 - st.fused.dispatches / st.composite.dispatches)).toFixed(0)}%`,
  );
  const file = opt('--json');
  if (file) fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), detail: info.detail, shapes: shapesName, fused: activeFused(), ops: json, step: st }, null, 1));
  return 0;
}

process.exit(await main());
