/**
 * The GPU-resident optimizer step (ml/train/gpu-adamw.ts; Trainer.updateOn 'gpu') on lavapipe, in
 * one child process (tests/kit/gpu-step.ts; Dawn is process-global), ~25 s on 2 idle cores:
 * - GpuAdamW vs the CPU AdamW on the same gradients, 3 steps, clipping, weight decay by kind and a
 *   pruning mask: weights, moments and norms within a few float32 ulps (OPT_TOL, why there);
 * - the trainer GPU-resident vs with the CPU update, both on webgpu, 3 steps from the same weights
 *   on the same batches: losses, norms, evaluation and the full state (weights under TOLERANCE,
 *   moments per tensor) agree; no gradient is read back (no tfjs read from the GPU in a step);
 *   tf.memory().numTensors stays flat;
 * - a checkpoint written after 2 GPU-resident steps and resumed gives the uninterrupted 3rd step;
 * - a pruning mask set after GPU-resident steps zeroes the device's weights and holds.
 * Without lavapipe's ICD file the checks are registered as skipped with the reason in their titles.
 */
import test from 'ava';
import { OPT_TOL } from './kit/gpu-step.ts';
import { findLavapipe, NO_LAVAPIPE, onlyIcd, resultLine, runTsx } from './kit/lavapipe.ts';
import { TOLERANCE } from './kit/one-step.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { MlmTrainer } from '../ml/train/trainer.ts';
import { initBackend } from '../ml/backend.ts';

const LAVAPIPE = findLavapipe();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** The three checks in one child process (one tsx start, one Dawn init), started on first use and shared by the tests. */
type Checks = { ok?: boolean; error?: string; stack?: string; ms?: Record<string, number>; results?: Json };
let all: Promise<Checks> | undefined;
function runChecks() {
  all ??= runTsx('tests/kit/gpu-step.ts', ['optimizer,trainer,resume,mask'], onlyIcd(LAVAPIPE!), 150_000).then((r) => {
    const msg = resultLine(r) as Checks;
    // the child printed no result line: its stderr says why
    return msg.error?.startsWith('no result line') ? { ...msg, error: `${msg.error}: ${r.stderr}` } : msg;
  });
  return all;
}

async function runCheck(check: string): Promise<{ ok?: boolean; error?: string; stack?: string; result: Json }> {
  const o = await runChecks();
  return { ...o, result: o.results?.[check] };
}

if (LAVAPIPE) {
  test('GPU AdamW (lavapipe) = CPU AdamW on the same gradients: 3 steps with clipping, decay by kind and a pruning mask', async (t) => {
    const o = await runCheck('optimizer');
    if (!o.ok) return t.fail(`${o.error}\n${o.stack ?? ''}`);
    const r = o.result;
    t.log(JSON.stringify(r));
    t.true(r.weights.used <= 1, `weights: ${JSON.stringify(r.weights)}`);
    t.true(r.m.used <= 1, `m: ${JSON.stringify(r.m)}`);
    t.true(r.v.used <= 1, `v: ${JSON.stringify(r.v)}`);
    r.norms.gpu.forEach((n: number, k: number) => t.true(Math.abs(n - r.norms.cpu[k]) <= OPT_TOL.normRtol * r.norms.cpu[k], `norm of step ${k + 1}: ${n} vs ${r.norms.cpu[k]}`));
    t.is(r.maskedNonZero, 0, 'masked weights stay exactly 0');
    t.true(r.numTensors.every((n: number) => n === r.numTensors[0]), `tensors: ${r.numTensors}`);
  });

  test('trainer GPU-resident vs CPU update (lavapipe): same losses, norms, evaluation and state after 3 steps; no gradient read back; tensors flat', async (t) => {
    const o = await runCheck('trainer');
    if (!o.ok) return t.fail(`${o.error}\n${o.stack ?? ''}`);
    const r = o.result;
    t.log(`cpu ${JSON.stringify(r.cpu)}`);
    t.log(`gpu ${JSON.stringify(r.gpu)}`);
    t.log(`weights ${JSON.stringify(r.weights)} m ${JSON.stringify(r.m)} v ${JSON.stringify(r.v)}`);
    t.is(r.cpu.updateOn, 'cpu');
    t.is(r.gpu.updateOn, 'gpu');
    r.gpu.losses.forEach((l: number, k: number) => t.true(Math.abs(l - r.cpu.losses[k]) <= TOLERANCE.lossRtol * Math.abs(r.cpu.losses[k]), `loss ${k + 1}: ${l} vs ${r.cpu.losses[k]}`));
    r.gpu.norms.forEach((n: number, k: number) => t.true(Math.abs(n - r.cpu.norms[k]) <= 1e-5 * r.cpu.norms[k], `norm ${k + 1}: ${n} vs ${r.cpu.norms[k]}`));
    t.true(Math.abs(r.gpu.evalLoss - r.cpu.evalLoss) <= TOLERANCE.lossRtol * r.cpu.evalLoss, `evaluation: ${r.gpu.evalLoss} vs ${r.cpu.evalLoss}`);
    t.true(r.weights.used <= 1, `weights after 3 steps: ${JSON.stringify(r.weights)}`);
    t.true(r.m.used <= 1 && r.v.used <= 1, `moments: m ${JSON.stringify(r.m)}, v ${JSON.stringify(r.v)}`);
    t.is(r.gpu.t, 3);
    t.deepEqual(r.gpu.reads, [0, 0, 0], 'a GPU-resident step reads nothing back through tfjs (loss and norm come in its own 16-byte read)');
    t.true(r.cpu.reads.every((n: number) => n > 0), 'the CPU-update path does read the gradients back (the count above is meaningful)');
    t.true(r.gpu.numTensors.every((n: number) => n === r.gpu.numTensors[0]), `tensors after each GPU step: ${r.gpu.numTensors}`);
  });

  test('resume on the GPU-resident path (lavapipe): a checkpoint after 2 steps gives the uninterrupted 3rd step', async (t) => {
    const o = await runCheck('resume');
    if (!o.ok) return t.fail(`${o.error}\n${o.stack ?? ''}`);
    const r = o.result;
    t.log(JSON.stringify(r));
    t.deepEqual(r.updateOn, ['gpu', 'gpu']);
    t.deepEqual(r.t, [3, 3]);
    t.true(r.loss.rel <= TOLERANCE.lossRtol, `3rd-step loss: resumed ${r.loss.resumed} vs ${r.loss.uninterrupted}`);
    t.true(r.weights.used <= 1, `weights after the 3rd step: ${JSON.stringify(r.weights)}`);
  });

  test('a pruning mask set after GPU-resident steps zeroes the weights on the device and holds through the next step (lavapipe)', async (t) => {
    const o = await runCheck('mask');
    if (!o.ok) return t.fail(`${o.error}\n${o.stack ?? ''}`);
    const r = o.result;
    t.log(JSON.stringify(r));
    t.true(r.stepsMoved);
    t.true(r.dropped > 0);
    t.is(r.zeroAfterMask, r.dropped);
    t.is(r.zeroAfterStep, r.dropped);
    t.true(r.keptNonZero > 0.99 * r.kept, 'the kept weights are not zeroed');
    t.true(r.changed > 0.9 * r.kept, 'the kept weights keep training');
  });
} else {
  test.skip(`GPU AdamW = CPU AdamW on the same gradients (${NO_LAVAPIPE})`, () => {});
  test.skip(`trainer GPU-resident vs CPU update (${NO_LAVAPIPE})`, () => {});
  test.skip(`resume on the GPU-resident path (${NO_LAVAPIPE})`, () => {});
  test.skip(`a pruning mask set after GPU-resident steps (${NO_LAVAPIPE})`, () => {});
}

test('optimizer.device "gpu" on a CPU backend is refused; "auto" there keeps the CPU update', async (t) => {
  await initBackend('cpu', { threads: 1, fastKernels: false });
  const dims = { layers: 1, hidden: 16, heads: 2, ffn: 32, seqLen: 8, vocab: 50 };
  const w = initialWeights(paramLayout(dims), 1, 0.02);
  const opt = { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 };
  const err = t.throws(() => new MlmTrainer({ dims, optimizer: { ...opt, device: 'gpu' }, gradClipNorm: 1 }, w));
  t.regex(err!.message, /optimizer\.device "gpu" needs the webgpu backend \(the active backend is cpu\)/);
  const auto = new MlmTrainer({ dims, optimizer: opt, gradClipNorm: 1 }, w);
  t.is(auto.updateOn, 'cpu');
  auto.dispose();
});
