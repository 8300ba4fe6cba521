/**
 * WebGPU benchmark: one full MLM training step (MlmTrainer.computeGradients = forward + loss +
 * backward, then Trainer.apply = clip + AdamW on the flat arrays + weight upload) at 3 sizes up to
 * BERT-base's shape, timed after warm-up steps (medians), with tokens/s and TFLOP/s from the
 * project's analytic FLOPs (ml/flops.ts), plus a matMul 4096² TFLOP/s probe; the smallest size
 * also on the CPU fast path (wasm + onnxruntime matmul) when that loads.
 *
 *   npm run bench:gpu [-- --allow-software] [-- --quick] [-- --json FILE] [-- --sizes small,medium]
 *   npm run bench:gpu -- --check [--check-model tiny|wide] [--allow-software] [--json FILE]    webgpu-vs-cpu one-step agreement
 *   npm run bench:gpu -- --mixed [--allow-software] [--json FILE]    tiled/f16 matmul vs tfjs's, fp32 vs mixed training (bench/lib/mixed-bench.ts)
 *
 * --allow-software  run on a software adapter (lavapipe); implies --quick (tiny sizes)
 * --quick           tiny sizes and batches (q-small, q-medium, q-large), fewer steps
 * --sizes           a subset of the size names (small, medium, base; q-small, q-medium, q-large)
 * --no-cpu          skip the CPU fast-path row
 * --cpu-only        only the CPU fast-path row (default size: small, or q-small with --quick), no GPU needed
 * --json FILE       also write the results as JSON
 * --check           instead of the bench: one training step on webgpu and on cpu from the same
 *                   weights and batch (tests/kit/one-step.ts), compared under its tolerance; exit 1
 *                   if they disagree
 * --check-model M   the model --check uses: tiny (default, L2 d32) or wide (L2 d256 T128, batch 8)
 * --mixed           instead of the bench: the matmul comparison and a short fp32 vs mixed-precision
 *                   training run (`npm run bench:gpu-matmul` = --mixed --allow-software)
 * --no-mixed        the bench without its mixed-precision row (the largest size again with
 *                   model.precision = mixed, when the adapter offers shader-f16)
 * --path-sizes S    sizes of the update-path comparison (default small,base; q-small with --quick; "none" skips it)
 * --path-rounds N   exactly N timed rounds of it (default: ≥ 7, ≤ 9 within the time rule)
 * --paths-only      only the update-path comparison (`npm run bench:gpu-step` = this with --allow-software)
 *
 * The update-path comparison: three trainers in one process, stepped in turn on the same batches
 * (so that load and clock drift hit them alike): the CPU update with tfjs's upload of the new
 * weights (the code before the GPU-resident step), the CPU update with the weights written back by
 * queue.writeBuffer (what a worker with peers does now), and the GPU-resident step (a worker
 * without peers: optimizer.device auto); plus the weight hand-back alone, tfjs upload vs writeBuffer.
 * The regular rows use the CPU update (optimizer.device "cpu"), as before.
 *
 * Without a usable GPU adapter it prints "no GPU adapter: <reasons from ml/backend.ts>" and
 * exits 0. Every measurement runs in a child process of this same file (`--cell`, `--one-step`),
 * so a bundle of it (docs/gpu.md: esbuild, only `webgpu` external) works on an offline GPU host.
 */
// navigator.gpu first, then the webgpu backend: see ./lib/gpu-setup.ts (keep these two imports first)
import './lib/gpu-setup.ts';
import * as tfjsWebgpu from '@tensorflow/tfjs-backend-webgpu';

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { BackendError, initBackend, type BackendChoice, type BackendInfo } from '../ml/backend.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { paramLayout, type ModelDims } from '../ml/model/spec.ts';
import { initialWeights, WeightTensors } from '../ml/model/weights.ts';
import { sharedFloat32, type OptimizerDevice } from '../ml/train/adamw.ts';
import { webgpuAccess } from '../ml/webgpu-access.ts';
import { tf } from '../ml/tf.ts';
import { MlmTrainer } from '../ml/train/trainer.ts';
import { CHECK_DEFAULTS, CHECK_MODELS, compareOneStep, oneStepMain, readOneStep, syntheticBatch, TOLERANCE, type OneStepArgs } from '../tests/kit/one-step.ts';
import { printTable } from './lib/table.ts';
import { benchArgs } from './lib/args.ts';
import { median } from './lib/median.ts';
import { mixedCellMain, mixedCompareMain } from './lib/mixed-bench.ts';
import { provideWebgpuPackage } from '../ml/kernels/webgpu-matmul.ts';
import { emit, runChildMain } from './lib/child-main.ts';

// mixed precision creates the webgpu backend itself: the class from the package bundled here
provideWebgpuPackage(tfjsWebgpu);

const { argv, flag, opt } = benchArgs();

interface Size {
  name: string;
  dims: ModelDims;
  batch: number;
  note?: string;
}
const V = 8000;
const SIZES: Size[] = [
  { name: 'small', dims: { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 128, vocab: V }, batch: 32 },
  { name: 'medium', dims: { layers: 8, hidden: 512, heads: 8, ffn: 2048, seqLen: 128, vocab: V }, batch: 32 },
  { name: 'base', dims: { layers: 12, hidden: 768, heads: 12, ffn: 3072, seqLen: 128, vocab: V }, batch: 32, note: 'BERT-base shape, vocab 8000' },
];
/** for a software adapter (lavapipe) or --quick: seconds per step on 2 CPU cores */
const QUICK_SIZES: Size[] = [
  { name: 'q-small', dims: { layers: 1, hidden: 64, heads: 2, ffn: 256, seqLen: 32, vocab: 1000 }, batch: 8 },
  { name: 'q-medium', dims: { layers: 2, hidden: 128, heads: 2, ffn: 512, seqLen: 64, vocab: 2000 }, batch: 8 },
  { name: 'q-large', dims: { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 64, vocab: 4000 }, batch: 8 },
];
const FULL_RULE = { warmup: 2, minSteps: 5, maxSteps: 10, minSeconds: 5, maxSeconds: 30 };
const QUICK_RULE = { warmup: 1, minSteps: 3, maxSteps: 5, minSeconds: 2, maxSeconds: 15 };
const SEED = 1234;
const LR = 1e-4;

type Rule = typeof FULL_RULE;

// ---------- child side ----------

interface CellArgs {
  kind: 'probe' | 'train' | 'paths';
  backend: Exclude<BackendChoice, 'auto'>;
  allowSoftware: boolean;
  fastKernels: boolean;
  threads: number;
  /** model.precision of a train cell (default fp32) */
  precision?: 'fp32' | 'mixed';
  matmul?: { n: number; reps: number };
  size?: Size;
  rule?: Rule;
}

const progress = (s: string) => process.stderr.write(`  ${s}\n`);
const SOFTWARE_SKIPPED = /software \(CPU\) implementation, skipped/;

/** initBackend for the cell; a software webgpu adapter is flagged (and refused unless allowed). */
async function cellBackend(a: CellArgs): Promise<{ info: BackendInfo; software: boolean }> {
  if (a.backend !== 'webgpu') return { info: await initBackend(a.backend, { threads: a.threads, fastKernels: a.fastKernels }), software: false };
  try {
    return { info: await initBackend('webgpu', { threads: a.threads, allowSoftwareGpu: false, precision: a.precision }), software: false };
  } catch (e) {
    if (!(e instanceof BackendError && SOFTWARE_SKIPPED.test(e.message)) || !a.allowSoftware) throw e;
    return { info: await initBackend('webgpu', { threads: a.threads, allowSoftwareGpu: true, precision: a.precision }), software: true };
  }
}

async function matmulProbe(n: number, reps: number): Promise<{ n: number; reps: number; ms: number; tflops: number }> {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  let c = tf.matMul(a, b);
  await c.data();
  c.dispose();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    c = tf.matMul(a, b);
    if (i < reps - 1) c.dispose();
  }
  await c.data(); // the queue runs in order: the last result is ready when all are
  const ms = (performance.now() - t0) / reps;
  tf.dispose([a, b, c]);
  return { n, reps, ms, tflops: (2 * n ** 3) / (ms / 1000) / 1e12 };
}

async function cellMain(a: CellArgs): Promise<void> {
  let be;
  try {
    be = await cellBackend(a);
  } catch (e) {
    if (e instanceof BackendError) {
      const lines = e.message.split('\n').map((s) => s.trim()).filter(Boolean);
      emit({ unavailable: lines.slice(1).join('; ') || lines[0], log: lines.slice(1) });
      return;
    }
    throw e;
  }
  const { info, software } = be;
  if (a.fastKernels && !/matmul/.test(info.detail)) {
    emit({ unavailable: `the CPU fast path did not load: ${info.log.filter((l) => /fast|wasm/.test(l)).join('; ')}`, log: info.log });
    return;
  }
  if (a.kind === 'probe') {
    const matmul = a.matmul ? await matmulProbe(a.matmul.n, a.matmul.reps) : undefined;
    emit({ ok: true, backend: info.name, detail: info.detail, log: info.log, software, matmul });
    return;
  }
  const { size, rule } = a as Required<CellArgs>;
  const dims = size.dims;
  const layout = paramLayout(dims);
  if (a.kind === 'paths') return pathsCell(info, size, rule);
  const trainer = new MlmTrainer(
    // the CPU update (gradients read back), as these rows always measured; the GPU-resident step is pathsCell's
    { dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01, device: 'cpu' }, gradClipNorm: 1.0 },
    initialWeights(layout, SEED, 0.02),
  );
  const batches = [0, 1, 2, 3].map((i) => syntheticBatch(dims, size.batch, SEED + i));
  emit({ ready: true, backend: info.name, detail: info.detail, params: layout.total });
  let k = 0;
  const step = async () => {
    const t0 = performance.now();
    const loss = await trainer.computeGradients(batches[k++ % batches.length]);
    const t1 = performance.now();
    await trainer.apply(LR);
    const t2 = performance.now();
    if (!Number.isFinite(loss)) throw new Error(`non-finite loss ${loss}`);
    return { ms: t2 - t0, gradMs: t1 - t0, applyMs: t2 - t1, ...trainer.lastApply, loss, numTensors: tf.memory().numTensors };
  };
  for (let i = 0; i < rule.warmup; i++) emit({ warmup: await step() });
  let spent = 0;
  for (let n = 0; ; ) {
    const s = await step();
    emit({ step: s });
    n++;
    spent += s.ms;
    if (spent >= rule.maxSeconds * 1000 || n >= rule.maxSteps || (n >= rule.minSteps && spent >= rule.minSeconds * 1000)) break;
  }
  // the optimizer update alone on 1 thread vs the auto thread count, alternated (same process, same
  // arrays; it changes the weights behind the trainer's back, which is disposed right after)
  const auto = trainer.optimizer.threads;
  if (auto > 1) {
    const ms: Record<string, number[]> = { one: [], auto: [] };
    for (let r = 0; r < 3; r++) {
      for (const [key, n] of [['one', 1], ['auto', auto]] as const) {
        trainer.optimizer.threads = n;
        const t0 = performance.now();
        await trainer.optimizer.update(trainer.weights, trainer.grads, LR, 1.0);
        ms[key].push(performance.now() - t0);
      }
    }
    trainer.optimizer.threads = auto;
    emit({ updateThreads: { threads: auto, oneMs: ms.one, autoMs: ms.auto } });
  }
  emit({ done: true });
  trainer.dispose();
}

const PATHS: Array<{ name: string; device: OptimizerDevice; upload: 'load' | 'write'; expect: 'cpu' | 'gpu' }> = [
  { name: 'CPU update, tfjs upload', device: 'cpu', upload: 'load', expect: 'cpu' },
  { name: 'CPU update, writeBuffer', device: 'cpu', upload: 'write', expect: 'cpu' },
  { name: 'GPU-resident', device: 'auto', upload: 'write', expect: 'gpu' },
];

/** The update paths side by side in this process (see the header), then the weight hand-back alone. */
async function pathsCell(info: BackendInfo, size: Size, rule: Rule): Promise<void> {
  const dims = size.dims;
  const layout = paramLayout(dims);
  const trainers = PATHS.map((p) => {
    const t = new MlmTrainer({ dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01, device: p.device }, gradClipNorm: 1.0 }, initialWeights(layout, SEED, 0.02));
    t.weightUpload = p.upload;
    if (t.updateOn !== p.expect) throw new Error(`${p.name}: the trainer chose the ${t.updateOn} update`);
    return t;
  });
  const batches = [0, 1, 2, 3].map((i) => syntheticBatch(dims, size.batch, SEED + i));
  emit({ ready: true, backend: info.name, detail: info.detail, params: layout.total });
  const ms: number[][] = PATHS.map(() => []);
  const losses: number[][] = PATHS.map(() => []);
  const tensors: number[] = [];
  let spent = 0;
  for (let k = 0; ; k++) {
    for (let i = 0; i < trainers.length; i++) {
      const t0 = performance.now();
      const r = await trainers[i]!.step(batches[k % batches.length]!, LR);
      const dt = performance.now() - t0;
      if (!Number.isFinite(r.loss)) throw new Error(`${PATHS[i]!.name}: non-finite loss ${r.loss}`);
      if (k >= rule.warmup) {
        ms[i]!.push(dt);
        losses[i]!.push(r.loss);
        spent += dt;
      }
    }
    if (k >= rule.warmup) tensors.push(tf.memory().numTensors);
    const n = k + 1 - rule.warmup;
    emit({ pathRound: { k, ms: ms.map((x) => x.at(-1) ?? NaN), warmup: k < rule.warmup } });
    if (n > 0 && (spent >= rule.maxSeconds * 1000 * PATHS.length || n >= rule.maxSteps || (n >= rule.minSteps && spent >= rule.minSeconds * 1000 * PATHS.length))) break;
  }
  trainers.forEach((t) => t.dispose());
  // the hand-back alone: new tensors from the host weights until the GPU holds them (tfjs uploads
  // at a tensor's first use: forced here), alternated 5×
  const gpu = webgpuAccess()!;
  const flat = sharedFloat32(layout.total); // shared, as the trainer's weights are
  flat.set(initialWeights(layout, SEED, 0.02));
  const wt = new WeightTensors(layout);
  const handBack: Record<'load' | 'write', number[]> = { load: [], write: [] };
  const probe4 = new Float32Array(1);
  for (let r = 0; r < 6; r++) {
    for (const mode of ['load', 'write'] as const) {
      const t0 = performance.now();
      if (mode === 'load') wt.load(flat);
      else wt.write(flat);
      const list = wt.list();
      for (const t of list) gpu.buffer(t);
      // a 4-byte read of the last tensor: returns once the queue has run every upload before it
      await gpu.read([{ buffer: gpu.buffer(list.at(-1)!), bytes: 4, into: probe4, at: 0 }]);
      if (r > 0) handBack[mode].push(performance.now() - t0);
    }
  }
  wt.dispose();
  emit({ paths: { names: PATHS.map((p) => p.name), ms, losses, tensors, handBack } });
  emit({ done: true });
}

// ---------- parent side ----------

type Msg = Record<string, unknown>;

/** Runs this same script (or bundle) as a child; collects its JSON lines. */
function runSelf(args: string[], timeoutMs: number, onLine?: (m: Msg) => void): Promise<{ lines: Msg[]; code: number | null; stderr: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, process.argv[1], ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Msg[] = [];
    let stderr = '';
    let timedOut = false;
    createInterface({ input: p.stdout }).on('line', (line) => {
      try {
        const m = JSON.parse(line) as Msg;
        lines.push(m);
        onLine?.(m);
      } catch {
        /* not ours */
      }
    });
    p.stderr.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ lines, code, stderr, timedOut });
    });
  });
}

const childError = (r: { code: number | null; stderr: string; timedOut: boolean; lines: Msg[] }) =>
  r.timedOut
    ? 'timed out'
    : String(r.lines.find((m) => m.error)?.error ?? `exited ${r.code}: ${r.stderr.split('\n').filter((l) => l.trim() && !/artificially reduced/.test(l)).slice(-3).join(' | ')}`);


interface StepRow {
  ms: number;
  gradMs: number;
  applyMs: number;
  /** the parts of applyMs: optimizer update (clip + AdamW on the CPU threads), weight upload */
  updateMs: number;
  uploadMs: number;
  loss: number;
  numTensors: number;
}

interface CellResult {
  size: string;
  path: string;
  detail?: string;
  skipped?: string;
  error?: string;
  params?: number;
  warmupMs: number[];
  steps: StepRow[];
  medianMs?: number;
  medianGradMs?: number;
  medianApplyMs?: number;
  medianUpdateMs?: number;
  medianUploadMs?: number;
  /** the update alone, 1 thread vs `threads` (the auto count), alternated after the timed steps */
  updateThreads?: { threads: number; oneMs: number[]; autoMs: number[] };
  tokensPerSecond?: number;
  tflops?: number;
  tflopsGradOnly?: number;
  numTensorsStable?: boolean;
}

async function trainCell(size: Size, path_: string, a: Omit<CellArgs, 'kind' | 'size'>, flops: number, timeoutMs: number): Promise<CellResult> {
  const res: CellResult = { size: size.name, path: path_, warmupMs: [], steps: [] };
  const r = await runSelf(['--cell', JSON.stringify({ ...a, kind: 'train', size })], timeoutMs, (m) => {
    if (m.ready) progress(`${size.name} ${path_}: ${m.detail}, ${(m.params as number).toLocaleString('en')} parameters`);
    const w = m.warmup as StepRow | undefined;
    if (w) progress(`${size.name} ${path_}: warm-up step ${w.ms.toFixed(0)} ms (loss ${w.loss.toFixed(3)})`);
    const s = m.step as StepRow | undefined;
    if (s) progress(`${size.name} ${path_}: step ${s.ms.toFixed(0)} ms = grad ${s.gradMs.toFixed(0)} + apply ${s.applyMs.toFixed(0)} (update ${s.updateMs.toFixed(0)} + upload ${s.uploadMs.toFixed(0)})`);
  });
  for (const m of r.lines) {
    if (m.unavailable) res.skipped = String(m.unavailable);
    if (m.ready) {
      res.detail = String(m.detail);
      res.params = m.params as number;
    }
    if (m.warmup) res.warmupMs.push((m.warmup as StepRow).ms);
    if (m.step) res.steps.push(m.step as StepRow);
    if (m.updateThreads) res.updateThreads = m.updateThreads as CellResult['updateThreads'];
  }
  if (!res.skipped && !r.lines.some((m) => m.done)) res.error = childError(r);
  if (res.steps.length) {
    const s = res.steps;
    res.medianMs = median(s.map((x) => x.ms));
    res.medianGradMs = median(s.map((x) => x.gradMs));
    res.medianApplyMs = median(s.map((x) => x.applyMs));
    res.medianUpdateMs = median(s.map((x) => x.updateMs));
    res.medianUploadMs = median(s.map((x) => x.uploadMs));
    res.tokensPerSecond = (size.batch * size.dims.seqLen) / (res.medianMs / 1000);
    res.tflops = flops / (res.medianMs / 1000) / 1e12;
    res.tflopsGradOnly = flops / (res.medianGradMs / 1000) / 1e12;
    res.numTensorsStable = s.every((x) => x.numTensors === s[0].numTensors);
  }
  return res;
}

interface PathsResult {
  size: string;
  dims: ModelDims;
  batch: number;
  params?: number;
  detail?: string;
  error?: string;
  skipped?: string;
  names: string[];
  /** per path: the timed steps (ms) and their losses */
  ms: number[][];
  losses: number[][];
  medianMs: number[];
  /** tf.memory().numTensors after each round */
  tensors: number[];
  handBack?: { load: number[]; write: number[] };
}

async function pathsRun(size: Size, a: Omit<CellArgs, 'kind' | 'size'>, timeoutMs: number): Promise<PathsResult> {
  const res: PathsResult = { size: size.name, dims: size.dims, batch: size.batch, names: PATHS.map((p) => p.name), ms: [], losses: [], medianMs: [], tensors: [] };
  const r = await runSelf(['--cell', JSON.stringify({ ...a, kind: 'paths', size })], timeoutMs, (m) => {
    if (m.ready) progress(`${size.name} update paths: ${m.detail}, ${(m.params as number).toLocaleString('en')} parameters`);
    const p = m.pathRound as { k: number; ms: number[]; warmup: boolean } | undefined;
    if (p) progress(`${size.name} update paths, round ${p.k}${p.warmup ? ' (warm-up)' : ''}: ${p.ms.map((x, i) => `${PATHS[i]!.name} ${fmtMs(x)}`).join(', ')}`);
  });
  for (const m of r.lines) {
    if (m.unavailable) res.skipped = String(m.unavailable);
    if (m.ready) {
      res.detail = String(m.detail);
      res.params = m.params as number;
    }
    if (m.paths) Object.assign(res, m.paths);
  }
  if (!res.skipped && !r.lines.some((m) => m.done)) res.error = childError(r);
  res.medianMs = res.ms.map((x) => median(x));
  return res;
}

function printPaths(results: PathsResult[], software: boolean): void {
  if (!results.length) return;
  console.log('\n# update paths, side by side: three trainers in one process stepped in turn on the same batches; ms per step (medians, min–max)');
  const [load, write, gpu] = [0, 1, 2];
  printTable(
    ['size', 'params', ...PATHS.map((p) => `${p.name} ms`), 'CPU update (writeBuffer) / GPU-resident', 'tfjs upload / writeBuffer', 'hand-back alone: tfjs upload / writeBuffer ms', 'tensors flat'],
    results.map((r) => {
      const label = `${r.size} (L${r.dims.layers} d${r.dims.hidden}, B${r.batch}×${r.dims.seqLen})`;
      if (!r.ms.length) return [label, (r.params ?? 0).toLocaleString('en'), r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.error}`, '', '', '', '', '', ''];
      const cell = (i: number) => `${fmtMs(r.medianMs[i])} (${fmtMs(Math.min(...r.ms[i]!))}–${fmtMs(Math.max(...r.ms[i]!))})`;
      const hb = r.handBack ? `${fmtMs(median(r.handBack.load))} / ${fmtMs(median(r.handBack.write))}` : '—';
      return [
        label,
        (r.params ?? 0).toLocaleString('en'),
        cell(load),
        cell(write),
        cell(gpu),
        `${(r.medianMs[write]! / r.medianMs[gpu]!).toFixed(2)}×`,
        `${(r.medianMs[load]! / r.medianMs[write]!).toFixed(2)}×`,
        hb,
        r.tensors.every((n) => n === r.tensors[0]) ? 'yes' : 'NO',
      ];
    }),
  );
  console.log(
    '  CPU update = gradients read back, clip + AdamW in JS (optimizer.threads auto), new weights handed back (tfjs upload: new tensors uploaded at first use through a mapped staging buffer each; writeBuffer: queue.writeBuffer into pool buffers); ' +
      'GPU-resident = clip + AdamW in WGSL on the device, only loss and norm read back; hand-back alone = host weights → new tensors in GPU buffers, until a 4-byte read after them returns',
  );
  if (software) console.log('  SOFTWARE adapter (lavapipe: Vulkan on the CPU): the GPU work runs on the same cores as the JS update');
}

const fmtMs = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? '—' : ms >= 100 ? Math.round(ms).toLocaleString('en') : ms.toFixed(1));
const fmtTflops = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));

function header(): string[] {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return [
    `# ttc webgpu benchmark — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    `# ${cpu}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; Node ${process.version}`,
  ];
}

async function probe(allowSoftware: boolean, matmul: { n: number; reps: number } | undefined) {
  const r = await runSelf(['--cell', JSON.stringify({ kind: 'probe', backend: 'webgpu', allowSoftware, fastKernels: false, threads: 1, matmul } satisfies CellArgs)], 300_000);
  const m = r.lines.find((x) => x.ok || x.unavailable);
  if (!m) return { error: childError(r) };
  return m;
}

function writeJson(file: string | undefined, o: unknown, announce = true): void {
  if (!file) return;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(o, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
  if (announce) console.log(`# wrote ${file}`);
}

async function benchMain(): Promise<number> {
  const t0 = Date.now();
  const allowSoftware = flag('--allow-software');
  const jsonFile = opt('--json');
  for (const l of header()) console.log(l);

  if (flag('--cpu-only')) return cpuOnlyMain();
  const first = await probe(allowSoftware, undefined);
  if (!first.ok) {
    const reason = String(first.unavailable ?? first.error);
    const hint = SOFTWARE_SKIPPED.test(reason) ? ' (pass --allow-software to bench the software adapter anyway)' : '';
    console.log(`no GPU adapter: ${reason}${hint}`);
    writeJson(jsonFile, { date: new Date().toISOString(), available: false, reason });
    return 0;
  }
  const software = first.software === true;
  const quick = flag('--quick') || software;
  const rule = quick ? QUICK_RULE : FULL_RULE;
  const all = [...SIZES, ...QUICK_SIZES];
  const wanted = opt('--sizes')?.split(',').map((s) => s.trim()).filter(Boolean);
  const sizes = wanted ? wanted.map((n) => all.find((s) => s.name === n) ?? (() => { throw new Error(`--sizes: unknown size "${n}" (${all.map((s) => s.name).join(', ')})`); })()) : quick ? QUICK_SIZES : SIZES;
  console.log(`# adapter: ${first.detail}${software ? ' — a SOFTWARE adapter (CPU Vulkan): these figures say nothing about GPU performance' : ''}`);
  console.log(
    `# step = MlmTrainer.computeGradients (forward + loss + backward on webgpu, gradients read back) + apply (clip + AdamW in JS on the CPU, weights uploaded); ` +
      `synthetic masked batches; ${rule.warmup} warm-up step(s), then ≥ ${rule.minSteps} steps and ≥ ${rule.minSeconds} s (or ${rule.maxSteps} steps, or ${rule.maxSeconds} s); medians` +
      `${quick ? ' (--quick sizes)' : ''}`,
  );
  console.log('# TFLOP/s = analytic training FLOPs per step (ml/flops.ts: 3 × forward matmul FLOPs, MLM head on the masked positions) / median step time');

  // matMul probe (fresh process: a clean device)
  const mm = quick ? { n: 512, reps: 3 } : { n: 4096, reps: 10 };
  const mp = flag('--paths-only') ? { unavailable: 'skipped (--paths-only)' } : await probe(allowSoftware, mm);
  const matmul = mp.ok ? (mp.matmul as { n: number; reps: number; ms: number; tflops: number }) : undefined;
  console.log(matmul ? `# matMul ${matmul.n}² fp32: ${matmul.ms.toFixed(2)} ms, ${fmtTflops(matmul.tflops)} TFLOP/s (mean of ${matmul.reps} after 1 warm-up)` : `# matMul probe failed: ${mp.unavailable ?? mp.error}`);

  const results: Row[] = [];
  const paths: PathsResult[] = [];
  // written after every cell too, so that a run cut short by a time limit keeps what it measured
  const save = (complete: boolean) =>
    writeJson(
      jsonFile,
      {
        date: new Date().toISOString(),
        available: true,
        complete,
        adapter: first.detail,
        software,
        quick,
        host: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), load: os.loadavg(), node: process.version },
        log: first.log,
        rule,
        lr: LR,
        matmul: matmul ?? null,
        results,
        paths,
      },
      complete,
    );
  save(false);
  const cellTimeout = (rule.maxSeconds + 240) * 1000;
  const pathSizeNames = (opt('--path-sizes') ?? (quick ? 'q-small' : 'small,base')).split(',').map((x) => x.trim()).filter((x) => x && x !== 'none');
  const pathSizes = pathSizeNames.map((n) => all.find((s) => s.name === n) ?? (() => { throw new Error(`--path-sizes: unknown size "${n}"`); })());
  const runPaths = async () => {
    for (const size of pathSizes) {
      process.stderr.write(`[${size.name} update paths] ${((Date.now() - t0) / 1000).toFixed(0)} s elapsed\n`);
      // more rounds than a single cell: three paths share the noise of one process
      const rounds = Number(opt('--path-rounds') ?? 0);
      const pathRule = rounds > 0 ? { ...rule, minSteps: rounds, maxSteps: rounds, maxSeconds: 3600 } : { ...rule, minSteps: Math.max(rule.minSteps, 7), maxSteps: Math.max(rule.maxSteps, 9) };
      paths.push(await pathsRun(size, { backend: 'webgpu', allowSoftware, fastKernels: false, threads: THREADS, rule: pathRule }, cellTimeout * PATHS.length));
      save(false);
    }
  };
  if (flag('--paths-only')) {
    await runPaths();
    printPaths(paths, software);
    console.log(`\n# total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    save(true);
    return paths.some((r) => r.error) ? 1 : 0;
  }
  for (const size of sizes) {
    const flops = stepFlops(size);
    process.stderr.write(`[${size.name}] ${((Date.now() - t0) / 1000).toFixed(0)} s elapsed\n`);
    const r = await trainCell(size, 'webgpu', { backend: 'webgpu', allowSoftware, fastKernels: false, threads: THREADS, rule }, flops, cellTimeout);
    results.push({ ...r, dims: size.dims, batch: size.batch, flopsPerStep: flops });
    save(false);
  }
  // the largest size again in mixed precision (f16 matmul, loss scaling): fp32 vs mixed side by side
  if (!flag('--no-mixed')) {
    const size = sizes.at(-1)!;
    const flops = stepFlops(size);
    process.stderr.write(`[${size.name} mixed] ${((Date.now() - t0) / 1000).toFixed(0)} s elapsed\n`);
    const r = await trainCell(size, 'webgpu mixed', { backend: 'webgpu', allowSoftware, fastKernels: false, threads: THREADS, rule, precision: 'mixed' }, flops, cellTimeout);
    results.push({ ...r, dims: size.dims, batch: size.batch, flopsPerStep: flops });
    save(false);
  }
  await runPaths();
  if (!flag('--no-cpu')) results.push(await cpuCell(sizes[0], quick));

  printResults(results, software);
  printPaths(paths, software);
  console.log(`\n# total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  save(true);
  return results.some((r) => r.error) ? 1 : 0;
}

type Row = CellResult & { dims: ModelDims; batch: number; flopsPerStep: number };
const THREADS = os.availableParallelism();
const stepFlops = (size: Size) => mlmStepFlops(size.dims, size.batch, numMaskedPerSeq(size.dims.seqLen)).training;

/** The CPU fast path (wasm + onnxruntime matmul, all cores) on one size, fewer steps. */
async function cpuCell(size: Size, quick: boolean): Promise<Row> {
  const flops = stepFlops(size);
  const rule = quick ? { ...QUICK_RULE } : { warmup: 1, minSteps: 3, maxSteps: 5, minSeconds: 5, maxSeconds: 40 };
  const r = await trainCell(size, 'wasm + fast (CPU)', { backend: 'wasm', allowSoftware: false, fastKernels: true, threads: THREADS, rule }, flops, (rule.maxSeconds + 240) * 1000);
  return { ...r, dims: size.dims, batch: size.batch, flopsPerStep: flops };
}

/** --cpu-only: the CPU fast-path row alone (e.g. on a CPU machine, for the comparison a GPU host's bundle cannot make). */
async function cpuOnlyMain(): Promise<number> {
  const t0 = Date.now();
  const quick = flag('--quick');
  const all = [...SIZES, ...QUICK_SIZES];
  const names = opt('--sizes')?.split(',').map((s) => s.trim()).filter(Boolean) ?? [quick ? 'q-small' : 'small'];
  const results: Row[] = [];
  for (const n of names) {
    const size = all.find((s) => s.name === n);
    if (!size) throw new Error(`--sizes: unknown size "${n}" (${all.map((s) => s.name).join(', ')})`);
    results.push(await cpuCell(size, quick));
  }
  printResults(results, false);
  console.log(`\n# total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  writeJson(opt('--json'), { date: new Date().toISOString(), cpuOnly: true, host: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), load: os.loadavg(), node: process.version }, lr: LR, results });
  return results.some((r) => r.error) ? 1 : 0;
}

function printResults(results: Row[], software: boolean): void {
  console.log('');
  const rows = results.map((r) => {
    const d = r.dims;
    const label = `${r.size} (L${d.layers} d${d.hidden} h${d.heads} ffn${d.ffn})`;
    const base = [label, r.path, `${r.batch}×${d.seqLen}`, (r.params ?? paramLayout(d).total).toLocaleString('en'), r.flopsPerStep >= 1e10 ? (r.flopsPerStep / 1e9).toFixed(0) : (r.flopsPerStep / 1e9).toPrecision(2)];
    if (!r.steps.length) return [...base, r.skipped ? 'skipped (†)' : 'failed (†)', '', '', '', '', '', '', ''];
    return [
      ...base,
      fmtMs(r.medianMs),
      `${fmtMs(Math.min(...r.steps.map((s) => s.ms)))}–${fmtMs(Math.max(...r.steps.map((s) => s.ms)))} (${r.steps.length})`,
      `${fmtMs(r.medianGradMs)} / ${fmtMs(r.medianUpdateMs)} / ${fmtMs(r.medianUploadMs)}`,
      Math.round(r.tokensPerSecond!).toLocaleString('en'),
      fmtTflops(r.tflops),
      fmtTflops(r.tflopsGradOnly),
      fmtMs(r.warmupMs[0]),
      r.numTensorsStable ? 'yes' : 'NO',
    ];
  });
  printTable(['size', 'backend', 'B×T', 'params', 'GFLOP/step', 'ms/step', 'min–max (steps)', 'grad / update / upload ms', 'tokens/s', 'TFLOP/s', 'TFLOP/s grad only', '1st step ms', 'tensors flat'], rows);
  for (const r of results) if (!r.steps.length || r.error) console.log(`  † ${r.size} ${r.path}: ${r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.error}`}`);
  console.log(
    `  grad = forward + backward + reading the gradients back; update = clip + AdamW on the CPU (optimizer.threads auto); upload = handing the new weights to the backend; "1st step" = the first warm-up step (on webgpu it includes compiling the shaders)`,
  );
  const cmp = results.filter((r) => r.updateThreads);
  if (cmp.length) {
    console.log('\n# the optimizer update alone (clip + AdamW), 1 thread vs the auto count, alternated 3× in the same process; medians');
    printTable(
      ['size', 'params', 'threads', '1 thread ms', 'threads ms', 'speed-up'],
      cmp.map((r) => {
        const u = r.updateThreads!;
        const one = median(u.oneMs);
        const many = median(u.autoMs);
        return [r.size, (r.params ?? 0).toLocaleString('en'), String(u.threads), fmtMs(one), fmtMs(many), `${(one / many).toFixed(2)}×`];
      }),
    );
  }
  if (software) console.log('  SOFTWARE adapter (lavapipe: Vulkan on the CPU): a test of the webgpu code path, not GPU performance');
}

/** webgpu vs cpu, one step each in a child process of this file, compared (tests/kit/one-step.ts). */
async function checkMain(): Promise<number> {
  const allowSoftware = flag('--allow-software');
  const jsonFile = opt('--json');
  for (const l of header()) console.log(l);
  const modelName = opt('--check-model') ?? 'tiny';
  const model = CHECK_MODELS[modelName];
  if (!model) throw new Error(`--check-model: unknown model "${modelName}" (${Object.keys(CHECK_MODELS).join(', ')})`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-gpu-check-'));
  const side = async (name: string, a: Partial<OneStepArgs> & { backend: BackendChoice }) => {
    const full: OneStepArgs = { ...CHECK_DEFAULTS, dims: model.dims, batch: model.batch, ...a };
    const file = path.join(dir, `${name}.bin`);
    const r = await runSelf(['--one-step', JSON.stringify(full), file], 300_000);
    const m = r.lines.at(-1) ?? {};
    return { m, result: m.ok ? readOneStep(file) : undefined, err: m.unavailable ?? m.error ?? childError(r) };
  };
  // a real GPU unless --allow-software: probe first so that the reason is the backend's own
  const first = await probe(allowSoftware, undefined);
  if (!first.ok) {
    const reason = String(first.unavailable ?? first.error);
    console.log(`no GPU adapter: ${reason}${SOFTWARE_SKIPPED.test(reason) ? ' (pass --allow-software to check the software adapter)' : ''}`);
    writeJson(jsonFile, { date: new Date().toISOString(), available: false, reason });
    return 0;
  }
  const gpu = await side('webgpu', { backend: 'webgpu', allowSoftwareGpu: allowSoftware, leakSteps: 3 });
  const cpu = await side('cpu', { backend: 'cpu', fastKernels: false });
  if (!gpu.result || !cpu.result) {
    console.log(`check failed to run: webgpu: ${gpu.result ? 'ok' : gpu.err}; cpu: ${cpu.result ? 'ok' : cpu.err}`);
    writeJson(jsonFile, { date: new Date().toISOString(), available: true, ok: false, webgpu: gpu.err, cpu: cpu.err });
    return 1;
  }
  const cmp = compareOneStep(gpu.result, cpu.result);
  console.log(`# webgpu vs cpu, one MLM training step: ${modelName} ${JSON.stringify(model.dims)}, batch ${model.batch}, seed ${CHECK_DEFAULTS.seed}, lr ${CHECK_DEFAULTS.lr}`);
  console.log(`# webgpu: ${gpu.result.detail} (first step ${gpu.result.ms.step.toFixed(0)} ms); cpu: ${cpu.result.detail}`);
  for (const l of cmp.lines) console.log(l);
  const leakOk = gpu.result.numTensors.every((n) => n === gpu.result!.numTensors[0]);
  console.log(`${leakOk ? 'ok  ' : 'FAIL'} webgpu tensor count after each of 4 steps: ${gpu.result.numTensors.join(', ')}`);
  console.log(cmp.ok && leakOk ? 'AGREE' : 'DISAGREE');
  const { ok: stepOk, ...summary } = cmp;
  writeJson(jsonFile, {
    date: new Date().toISOString(),
    available: true,
    ok: stepOk && leakOk,
    model: { name: modelName, ...model },
    webgpu: gpu.result.detail,
    cpu: cpu.result.detail,
    tolerance: TOLERANCE,
    ...summary,
    numTensors: gpu.result.numTensors,
  });
  fs.rmSync(dir, { recursive: true, force: true });
  return cmp.ok && leakOk ? 0 : 1;
}

/** --mixed: the matmul comparison and fp32 vs mixed training (bench/lib/mixed-bench.ts). */
async function mixedMain(): Promise<number> {
  for (const l of header()) console.log(l);
  const jsonFile = opt('--json');
  const first = await probe(flag('--allow-software'), undefined);
  if (!first.ok) {
    const reason = String(first.unavailable ?? first.error);
    console.log(`no GPU adapter: ${reason}${SOFTWARE_SKIPPED.test(reason) ? ' (pass --allow-software to bench the software adapter anyway)' : ''}`);
    writeJson(jsonFile, { date: new Date().toISOString(), available: false, reason });
    return 0;
  }
  const software = first.software === true;
  if (software) console.log('# SOFTWARE adapter (lavapipe: Vulkan on the CPU): a test of the code path; the ratios say nothing about a GPU');
  const r = await mixedCompareMain(runSelf, software);
  writeJson(jsonFile, { date: new Date().toISOString(), available: true, adapter: first.detail, software, host: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), load: os.loadavg() }, ...r.json });
  return r.ok ? 0 : 1;
}

async function main(): Promise<number> {
  const i = argv.indexOf('--one-step');
  if (i >= 0) return oneStepMain(argv.slice(i + 1));
  const mc = opt('--mixed-cell');
  if (mc !== undefined) {
    await mixedCellMain(mc);
    return 0;
  }
  if (flag('--mixed')) return mixedMain();
  const c = opt('--cell');
  if (c !== undefined) {
    await cellMain(JSON.parse(c) as CellArgs);
    return 0;
  }
  return flag('--check') ? checkMain() : benchMain();
}

// exit explicitly: a Dawn instance keeps the event loop alive
runChildMain(main, { stack: true });
