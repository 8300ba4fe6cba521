/**
 * Mixed precision without a GPU: the dynamic loss scaler (ml/train/loss-scale.ts), the trainer's
 * scaled step on the cpu backend (scaling by a power of two is exact, so a scaled step equals the
 * unscaled one bit for bit; an overflowed step is skipped), the refusal of model.precision =
 * mixed where it cannot run, a skipped step on the wire, and which products the tiled webgpu matmul
 * takes. The kernels themselves: tests/webgpu-matmul.test.ts (lavapipe).
 */
import test from 'ava';

import { resolveConfig } from '../../core/config/load.ts';
import { BackendError, initBackend } from '../../ml/backend.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { tf } from '../../ml/tf.ts';
import { LossScaler } from '../../ml/train/loss-scale.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import { CHECK_MODEL, syntheticBatch } from '../kit/one-step.ts';
import { M } from '../../protocol/index.ts';
import { decodeFrame, encodeFrame } from '../../wire/protocol/index.ts';

test('loss scaler: an overflow skips the step and halves the scale; N good steps in a row double it; bounded', (t) => {
  const s = new LossScaler({ initial: 2 ** 10, growthInterval: 3, min: 2 ** 8, max: 2 ** 12 });
  t.is(s.scale, 1024);
  t.false(s.update(Infinity));
  t.is(s.scale, 512);
  t.false(s.update(NaN));
  t.is(s.scale, 256);
  t.false(s.update(Infinity));
  t.is(s.scale, 256, 'not below min');
  t.true(s.update(1.5));
  t.true(s.update(0));
  t.is(s.scale, 256);
  t.true(s.update(2));
  t.is(s.scale, 512, 'doubled after 3 good steps in a row');
  t.true(s.update(1));
  t.true(s.update(1));
  t.false(s.update(Infinity), 'an overflow resets the run of good steps');
  t.is(s.scale, 256);
  for (let i = 0; i < 3 * 5; i++) s.update(1);
  t.is(s.scale, 4096, 'not above max');
  t.deepEqual(s.state(), { scale: 4096, goodSteps: 0, skipped: 4, steps: 24 });
  t.throws(() => new LossScaler({ initial: 1000 }), { message: 'loss scale initial: expected a power of two, got 1000' });
  t.throws(() => new LossScaler({ growthInterval: 0 }), { message: 'loss scale growthInterval: expected a positive integer, got 0' });
});

const trainerOpts = { dims: CHECK_MODEL, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1.0 };

test('a loss-scaled step equals the unscaled one bit for bit (cpu); an overflowed step changes nothing but the scale; no tensor leak', async (t) => {
  await initBackend('cpu', { threads: 1, fastKernels: false });
  const layout = paramLayout(CHECK_MODEL);
  const w0 = initialWeights(layout, 1234, 0.02);
  const plain = new MlmTrainer({ ...trainerOpts, lossScale: false }, w0);
  const scaled = new MlmTrainer({ ...trainerOpts, lossScale: new LossScaler({ initial: 2 ** 12, growthInterval: 2 }) }, w0);
  t.is(plain.lossScaler, undefined, 'fp32 on cpu: no scaler');
  const counts: number[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const b = syntheticBatch(CHECK_MODEL, 4, 1234 + i);
      const p = await plain.step(b, 1e-3);
      const s = await scaled.step(b, 1e-3);
      t.is(s.loss, p.loss, `step ${i}: the loss is reported unscaled`);
      t.is(s.gradNorm, p.gradNorm, `step ${i}: the norm is the unscaled gradients'`);
      t.false(s.skipped!);
      t.deepEqual(scaled.weights, plain.weights, `step ${i}: weights after the update`);
      counts.push(tf.memory().numTensors);
    }
    t.is(scaled.lossScaler!.scale, 2 ** 13, 'grew once after 2 good steps');

    // an overflow: the gradients hold an inf (as the f16 kernels make it) → skipped, scale halved
    const before = Float32Array.from(scaled.weights);
    const t0 = scaled.optimizer.t;
    await scaled.computeGradients(syntheticBatch(CHECK_MODEL, 4, 99));
    await scaled.reduce();
    scaled.grads[5] = Infinity;
    const norm = await scaled.apply(1e-3);
    t.false(Number.isFinite(norm));
    t.deepEqual(scaled.weights, before, 'weights unchanged');
    t.is(scaled.optimizer.t, t0, "the optimizer's step count unchanged (bias correction as if the step had not happened)");
    t.is(scaled.lossScaler!.scale, 2 ** 12);
    t.is(scaled.lossScaler!.skipped, 1);
    counts.push(tf.memory().numTensors);
    t.true(counts.every((n) => n === counts[0]), `tf.memory().numTensors after each step: ${counts.join(', ')}`);
  } finally {
    plain.dispose();
    scaled.dispose();
  }
});

test('model.precision "mixed" is refused up front where it cannot run, in one line', async (t) => {
  t.is(resolveConfig({}).model.precision, 'fp32', 'default fp32');
  t.is(resolveConfig({ backend: 'webgpu', model: { precision: 'mixed' } }).model.precision, 'mixed');
  t.is(resolveConfig({ model: { precision: 'mixed' } }).model.precision, 'mixed', 'auto: decided at backend start (fp32 with the reason logged)');
  for (const backend of ['cpu', 'wasm', 'tensorflow']) {
    const e = t.throws(() => resolveConfig({ backend, model: { precision: 'mixed' } }));
    t.is(e?.message, `invalid config: model.precision: "mixed" needs backend webgpu (or auto), got backend "${backend}"`);
  }
  t.throws(() => resolveConfig({ backend: 'webgpu', model: { precision: 'mixed' }, dist: { gradWire: 'bf16' } }), { message: 'invalid config: model.precision: "mixed" cannot be combined with dist.gradWire "bf16"' });
  t.throws(() => resolveConfig({ model: { precision: 'half' } }), { message: /model\.precision: must be one of the possible values: \["fp32","mixed"\]/ });
  // the API refuses too (callers without a config)
  const e = await t.throwsAsync(initBackend('cpu', { threads: 1, precision: 'mixed' }));
  t.true(e instanceof BackendError);
  t.is(e?.message, 'model.precision "mixed" needs backend webgpu (or auto), got "cpu"');
});

test('a skipped step travels from a worker to the coordinator as gradNorm null (coord.step-done)', (t) => {
  const fields = { formation: 1, step: 3, loss: 6.9, computeMs: 1, reduceMs: 0, applyMs: 1, commMs: 0, hiddenMs: 0 };
  t.is(decodeFrame(encodeFrame(M.StepDone, { ...fields, gradNorm: null }), [M.StepDone]).gradNorm, null);
  t.is(decodeFrame(encodeFrame(M.StepDone, { ...fields, gradNorm: 0.5 }), [M.StepDone]).gradNorm, 0.5);
  t.throws(() => encodeFrame(M.StepDone, { ...fields, gradNorm: Infinity }), undefined, 'a non-finite number is still refused');
});

test('tiled webgpu matmul: which products it takes (plan), and why it leaves the others to tfjs', async (t) => {
  const { plan } = await import('../../ml/kernels/webgpu-matmul.ts');
  const ti = (shape: number[], dtype = 'float32') => ({ dataId: {}, shape, dtype });
  const p = plan({ a: ti([3, 70, 48]), b: ti([48, 132]), transposeA: false, transposeB: false });
  t.deepEqual(p, { batch: 3, m: 70, n: 132, k: 48, strideA: 70 * 48, strideB: 0, outShape: [3, 70, 132] }, 'one matrix for the whole batch: stride 0');
  t.like(plan({ a: ti([45, 67]), b: ti([33, 45]), transposeA: true, transposeB: true }), { batch: 1, m: 67, n: 33, k: 45, outShape: [67, 33] });
  t.is(plan({ a: ti([2, 1, 4, 5]), b: ti([1, 3, 5, 6]), transposeA: false, transposeB: false }), 'broadcast batch');
  t.is(plan({ a: ti([4, 5], 'int32'), b: ti([5, 6]), transposeA: false, transposeB: false }), 'not float32');
  t.is(plan({ a: ti([4, 5]), b: ti([5, 6]), transposeA: false, transposeB: false, bias: ti([4, 6]) }), 'bias not of N elements');
  t.is(plan({ a: ti([4, 5]), b: ti([6, 6]), transposeA: false, transposeB: false }), 'inner dimensions differ');
  t.is(plan({ a: ti([70000 * 64, 5]), b: ti([5, 6]), transposeA: false, transposeB: false }), 'dispatch too large');
});
