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

/** Wraps the matmul kernels of the active backend to add up 2·m·n·k per executed product. */
function countMatmulFlops(): { flops: () => number; restore: () => void } {
  const backend = tf.getBackend();
  let total = 0;
  const originals = ['BatchMatMul', '_FusedMatMul'].map((name) => tf.getKernel(name, backend)!);
  for (const k of originals) {
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const [a, b] = [args.inputs.a as tf.TensorInfo, args.inputs.b as tf.TensorInfo];
        const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
        const ra = a.shape.length;
        const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
        const kk = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
        const n = transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
        const batch = Math.max(a.shape.slice(0, -2).reduce((x, y) => x * y, 1), b.shape.slice(0, -2).reduce((x, y) => x * y, 1));
        total += 2 * batch * m * n * kk;
        return k.kernelFunc(args);
      },
    });
  }
  return {
    flops: () => total,
    restore: () => {
      for (const k of originals) {
        tf.unregisterKernel(k.kernelName, backend);
        tf.registerKernel(k);
      }
    },
  };
}

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
