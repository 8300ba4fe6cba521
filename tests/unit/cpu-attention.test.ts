/**
 * The cpu backend's fused attention (ml/kernels/cpu-attention.ts, onnxruntime graphs) against the
 * composite of tfjs's own cpu kernels (ml/kernels/fused.ts compositeAttention, fast kernels off):
 * odd sizes, one head, several heads, key padding, values and the gradients of q, k and v.
 */
import test from 'ava';

import { tf } from '../../ml/tf.ts';
import { initBackend } from '../../ml/backend.ts';
import { unregisterFastCpuKernels } from '../../ml/kernels/index.ts';
import { activeFused, attention, compositeAttention, fusedCounts, resetFusedCounts, setFusedEnabled } from '../../ml/kernels/fused.ts';
import { maxDiff, seededRand } from '../kit/kernel-check.ts';

type T = tf.Tensor;

const rand = seededRand(4242).rand;

/** max |got − ref| / max |ref|; an all-zero ref makes any difference fail */
function relErr(ref: Float32Array, got: Float32Array): number {
  const { diff, maxRef } = maxDiff(ref, got);
  return ref.length === got.length ? diff / Math.max(maxRef, 1e-30) : Infinity;
}

test.before(async () => {
  await initBackend('cpu', { threads: 2 });
});

test.serial('the fused attention is active on cpu', (t) => {
  t.true(activeFused('cpu').includes('attention'));
});

for (const [B, T_, H, dh, masked] of [
  [2, 13, 3, 8, false],
  [3, 7, 1, 5, true],
  [1, 66, 4, 16, true],
  [4, 17, 12, 3, false],
] as const) {
  test.serial(`B${B} T${T_} H${H} dh${dh}${masked ? ' with key padding' : ''}: values and gradients match tfjs's kernels`, (t) => {
    const [q, k, v, dy] = [0, 1, 2, 3].map(() => rand([B * T_, H * dh]));
    const mask = masked ? tf.tensor2d(Array.from({ length: B * T_ }, (_, i) => (i % T_ < T_ - 1 - (Math.floor(i / T_) % T_) ? 1 : 0)), [B, T_]) : undefined;
    const run = (f: (q: T, k: T, v: T) => T) =>
      tf.tidy(() => {
        const value = f(q, k, v);
        const grads = tf.grads((a: T, b: T, c: T) => tf.sum(tf.mul(f(a, b, c), dy)))([q, k, v]);
        return [value, ...grads].map((x) => x.dataSync() as Float32Array);
      });
    resetFusedCounts();
    const got = run((a, b, c) => attention(a, b, c, B, H, mask));
    t.is(fusedCounts().fused.attention, 2, 'the fused kernel ran (forward, and forward again under tf.grads)');
    // the reference: tfjs's own cpu kernels, as the composite
    setFusedEnabled(false);
    unregisterFastCpuKernels();
    const ref = run((a, b, c) => compositeAttention(a, b, c, B, H, mask));
    setFusedEnabled(true);
    ['value', 'dq', 'dk', 'dv'].forEach((name, i) => {
      const e = relErr(ref[i]!, got[i]!);
      t.true(e < 1e-5, `${name}: relative error ${e}`);
    });
    tf.dispose([q, k, v, dy, ...(mask ? [mask] : [])]);
  });
}

test.serial('training steps on cpu with every new kernel active leave tf.memory() flat', async (t) => {
  const { MlmTrainer } = await import('../../ml/train/trainer.ts');
  const { paramLayout } = await import('../../ml/model/spec.ts');
  const { initialWeights } = await import('../../ml/model/weights.ts');
  const { fastKernelStats } = await import('../../ml/kernels/index.ts');
  await initBackend('cpu', { threads: 2 }); // re-registers the fast kernels the cases above removed
  const dims = { layers: 2, hidden: 96, heads: 3, ffn: 384, seqLen: 24, vocab: 300 };
  const tr = new MlmTrainer({ dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1 }, initialWeights(paramLayout(dims), 3, 0.02));
  const B = 4;
  const k = 3;
  const batch = {
    batch: B,
    seqLen: 24,
    inputIds: new Int32Array(B * 24).map((_, i) => 5 + ((i * 11) % 290)),
    maskedPositions: new Int32Array(B * k).map((_, i) => Math.floor(i / k) * 24 + 1 + (i % k) * 5),
    maskedLabels: new Int32Array(B * k).map((_, i) => 7 + i),
  };
  const memory: Array<[number, number]> = [];
  const losses: number[] = [];
  for (let s = 0; s < 4; s++) {
    const r = await tr.step(batch, 1e-3);
    losses.push(r.loss);
    memory.push([tf.memory().numTensors, tf.memory().numBytes]);
  }
  t.true(fastKernelStats().opsFast > 0 && fastKernelStats().fast > 0, 'onnxruntime kernels ran');
  t.deepEqual(memory.slice(1), [memory[1], memory[1], memory[1]], JSON.stringify(memory));
  t.true(losses[3]! < losses[0]!, `loss falls on a repeated batch: ${losses}`);
  tr.dispose();
});
