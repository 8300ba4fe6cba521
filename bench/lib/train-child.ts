/**
 * One (backend, model size) cell of bench/train.ts, in its own process: tfjs backends and the
 * fast-kernel registration are process-global, so every cell gets a fresh process.
 *
 *   node --import tsx bench/lib/train-child.ts '<json ChildArgs>'
 *
 * Output is JSON lines on stdout (logs go to stderr):
 * - backend unavailable (initBackend throws BackendError): {"skipped": "<reason>"}, exit 0;
 * - `probe: true`: {"ok": true, "backend", "detail"} right after initBackend, exit 0;
 * - `serve: true`: builds the trainer, runs the warm-up step, prints {"ready": true, …}, then
 *   answers stdin lines: "step" → {"ms", "gradMs", "applyMs", "loss"}; "profile" → one step
 *   under tf.profile → {"profile": {kernel: ms}, "ms"}; "done" → the result line, exit.
 *   bench/train.ts drives several of these round-robin, so all backends of one size are timed
 *   over the same stretch of a noisy machine;
 * - otherwise it times steps itself (warm-up, then until minSteps and minSeconds, or maxSeconds)
 *   and prints the result line: {"result": {…}}.
 *
 * A step is what ml/train/run.ts times: MlmTrainer.computeGradients on a real masked batch
 * (prepareDataset + BatchReader, read outside the timing) followed by trainer.apply(lr).
 */
import { createInterface } from 'node:readline';

import { BackendError, initBackend, type BackendChoice } from '../../ml/backend.ts';
import { prepareDataset } from '../../ml/data/dataset.ts';
import { BatchReader } from '../../ml/data/batches.ts';
import { paramLayout, type ModelDims } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import type { DataPosition } from '../../ml/data/batches.ts';
import { tf } from '../../ml/tf.ts';
import { emit, runChildMain } from './child-main.ts';

export interface ChildArgs {
  backend: Exclude<BackendChoice, 'auto'>;
  fastKernels: boolean;
  /** the fused ops of ml/kernels/fused.ts (default true); false = tfjs compositions */
  fused?: boolean;
  threads: number;
  dims: ModelDims;
  batch: number;
  seed: number;
  cacheDir: string;
  validationFraction: number;
  probe?: boolean;
  serve?: boolean;
  /** standalone mode: stop after minSteps once minSeconds have passed, or after maxSteps, or at maxSeconds */
  minSteps?: number;
  maxSteps?: number;
  minSeconds?: number;
  maxSeconds?: number;
}

export interface StepResult {
  ms: number;
  gradMs: number;
  applyMs: number;
  loss: number;
}

export interface ChildResult {
  backend: string;
  detail: string;
  params: number;
  warmupMs: number;
  steps: StepResult[];
  numTensors: number;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
  let info;
  try {
    // A software webgpu adapter (lavapipe) is not a GPU: that column is skipped with the reason.
    info = await initBackend(a.backend, { threads: a.threads, fastKernels: a.fastKernels, fusedKernels: a.fused !== false, allowSoftwareGpu: false });
  } catch (e) {
    if (e instanceof BackendError) {
      // the first line says "requested but unavailable"; the candidate lines say why
      const lines = e.message.split('\n').map((s) => s.trim()).filter(Boolean);
      emit({ skipped: lines.slice(1).join('; ') || lines[0] });
      return;
    }
    throw e;
  }
  // initBackend falls back to plain kernels when the fast ones do not load: that is not the cell asked for
  if (a.fastKernels && !/matmul/.test(info.detail)) {
    emit({ skipped: `fast kernels did not load (${info.log.join('; ')})` });
    return;
  }
  if (a.probe) {
    emit({ ok: true, backend: info.name, detail: info.detail, fused: info.fused });
    return;
  }

  const dims = a.dims;
  const data = await prepareDataset({
    seed: a.seed,
    seqLen: dims.seqLen,
    vocabSize: dims.vocab,
    validationFraction: a.validationFraction,
    cacheDir: a.cacheDir,
    log: (m) => process.stderr.write(`${m}\n`),
  });
  const reader = new BatchReader({ data: data.train, count: data.trainCount, seqLen: dims.seqLen }, a.seed, dims.vocab);
  const layout = paramLayout(dims);
  const trainer = new MlmTrainer(
    { dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1.0 },
    initialWeights(layout, a.seed, 0.02),
  );
  let pos: DataPosition = { epoch: 0, offset: 0 };
  const lr = 5e-4;

  const step = async (): Promise<StepResult> => {
    const batch = reader.read(pos, 0, a.batch);
    pos = reader.advance(pos, a.batch);
    const t0 = performance.now();
    const loss = await trainer.computeGradients(batch);
    const t1 = performance.now();
    await trainer.apply(lr);
    const t2 = performance.now();
    if (!Number.isFinite(loss)) throw new Error(`non-finite loss ${loss}`);
    return { ms: t2 - t0, gradMs: t1 - t0, applyMs: t2 - t1, loss };
  };

  const warm = await step();
  const steps: StepResult[] = [];
  const result = (): ChildResult => ({
    backend: info.name,
    detail: info.detail,
    params: layout.total,
    warmupMs: warm.ms,
    steps,
    numTensors: tf.memory().numTensors,
  });

  if (!a.serve) {
    const minSteps = a.minSteps ?? 3;
    const maxSteps = a.maxSteps ?? 10;
    const minMs = (a.minSeconds ?? 5) * 1000;
    const maxMs = (a.maxSeconds ?? 20) * 1000;
    let spent = 0;
    while (steps.length === 0 || (spent < maxMs && !(steps.length >= minSteps && (spent >= minMs || steps.length >= maxSteps)))) {
      const s = await step();
      steps.push(s);
      spent += s.ms;
    }
    emit({ result: result() });
    trainer.dispose();
    return;
  }

  emit({ ready: true, backend: info.name, detail: info.detail, fused: info.fused, params: layout.total, warmupMs: warm.ms, loss: warm.loss });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = line.trim();
    if (cmd === 'step') {
      const s = await step();
      steps.push(s);
      emit(s);
    } else if (cmd === 'profile') {
      let s: StepResult | undefined;
      const prof = await tf.profile(async () => {
        s = await step();
        return [];
      });
      // Registered kernels only: tf.customGrad's forward functions (rowLookup, crossEntropy) show
      // up as a pseudo-kernel named after their scope ("forward") whose time includes the real
      // kernels they call, which are listed too; counting both would count that time twice.
      const be = tf.getBackend();
      const byKernel: Record<string, number> = {};
      let composite = 0;
      for (const k of prof.kernels) {
        if (tf.getKernel(k.name, be)) byKernel[k.name] = (byKernel[k.name] ?? 0) + (k.kernelTimeMs as number);
        else composite += k.kernelTimeMs as number;
      }
      emit({ profile: byKernel, compositeMs: composite, ms: s!.ms, gradMs: s!.gradMs, applyMs: s!.applyMs, kernelCalls: prof.kernels.length });
    } else if (cmd === 'done') {
      emit({ result: result() });
      break;
    }
  }
  rl.close();
  trainer.dispose();
}

runChildMain(main, { stack: true });
