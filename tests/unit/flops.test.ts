import test from 'ava';
import { tf } from '../../ml/tf.ts';
import { initBackend } from '../../ml/backend.ts';
import { mlmStepFlops, classifierStepFlops } from '../../ml/flops.ts';
import { paramLayout, type ModelDims } from '../../ml/model/spec.ts';
import { initialWeights, WeightTensors } from '../../ml/model/weights.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import { classifierLogits } from '../../ml/model/transformer.ts';
import { crossEntropy } from '../../ml/model/ops.ts';
import { maskRows } from '../../ml/data/batches.ts';
import { numMaskedPerSeq } from '../../ml/data/masking.ts';
import { Rng } from '../../core/rng.ts';
import { countMatmulFlops } from '../kit/matmul-count.ts';

function randomRows(rng: Rng, batch: number, seqLen: number, vocab: number): Int32Array {
  const rows = new Int32Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    rows[b * seqLen] = 2; // [CLS]
    for (let t = 1; t < seqLen - 1; t++) rows[b * seqLen + t] = 5 + rng.int(vocab - 5);
    rows[b * seqLen + seqLen - 1] = 3; // [SEP]
  }
  return rows;
}

const shapes: ModelDims[] = [
  { layers: 2, hidden: 32, heads: 2, ffn: 64, seqLen: 16, vocab: 300 },
  { layers: 1, hidden: 48, heads: 3, ffn: 96, seqLen: 24, vocab: 500 },
];

test.before(async () => {
  // the tfjs compositions: a fused kernel (cpu attention runs in onnxruntime) multiplies outside the matmul kernels counted here
  await initBackend('cpu', { threads: 1, fusedKernels: false });
});

for (const dims of shapes) {
  test.serial(`analytic MLM training FLOPs equal executed matmul FLOPs (${JSON.stringify(dims)})`, async (t) => {
    const batch = 3;
    const layout = paramLayout(dims);
    const trainer = new MlmTrainer({ dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0 }, gradClipNorm: 0 }, initialWeights(layout, 1, 0.02));
    const rng = new Rng(3);
    const ids = Array.from({ length: batch }, (_, i) => ({ epoch: 0, index: i }));
    const mb = maskRows(randomRows(rng, batch, dims.seqLen, dims.vocab), ids, dims.seqLen, dims.vocab, 9);
    const counter = countMatmulFlops();
    try {
      await trainer.computeGradients(mb);
    } finally {
      counter.restore();
      trainer.dispose();
    }
    const analytic = mlmStepFlops(dims, batch, numMaskedPerSeq(dims.seqLen)).training;
    t.true(counter.flops() > 0);
    t.true(Math.abs(counter.flops() - analytic) / analytic <= 0.01, `executed ${counter.flops()} vs analytic ${analytic}`);
  });
}

test.serial('analytic classifier forward FLOPs equal executed matmul FLOPs', (t) => {
  const dims = shapes[0];
  const numClasses = 10;
  const layout = paramLayout(dims, { kind: 'classifier', numClasses });
  const weights = new WeightTensors(layout, initialWeights(layout, 2, 0.02));
  const counter = countMatmulFlops();
  try {
    tf.tidy(() => {
      const ids = tf.tensor1d(randomRows(new Rng(1), 4, dims.seqLen, dims.vocab), 'int32');
      crossEntropy(classifierLogits(weights.tensors, dims, { ids, batch: 4 }), tf.tensor1d([0, 1, 2, 3], 'int32'), numClasses).dataSync();
    });
  } finally {
    counter.restore();
    weights.dispose();
  }
  const analytic = classifierStepFlops(dims, 4, dims.seqLen, numClasses).forward;
  t.true(Math.abs(counter.flops() - analytic) / analytic <= 0.01, `executed ${counter.flops()} vs analytic ${analytic}`);
});
