import { tf } from '/work/main/shared/tf.ts';
import { initBackend } from '/work/main/shared/backend.ts';
import { paramLayout } from '/work/main/shared/model/spec.ts';
import { initialWeights } from '/work/main/shared/model/weights.ts';
import { MlmTrainer } from '/work/main/shared/train/trainer.ts';
async function main() {
  await initBackend('wasm', { threads: 2, fastKernels: true });
  const dims = { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 64, vocab: 8000 };
  const layout = paramLayout(dims);
  const tr = new MlmTrainer({ dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1 }, initialWeights(layout, 1, 0.02));
  const B = 16, T = 64;
  const inputIds = Int32Array.from({ length: B * T }, (_, i) => 5 + ((i * 7919) % 7990));
  const maskedPositions = Int32Array.from({ length: B * 9 }, (_, i) => Math.floor(i / 9) * T + 1 + (i % 9) * 6);
  const b = { batch: B, seqLen: T, inputIds, maskedPositions, maskedLabels: inputIds.slice(0, B * 9) };
  await tr.computeGradients(b);
  const prof = await tf.profile(async () => { await tr.computeGradients(b); return []; });
  const agg = new Map<string, number>();
  for (const k of prof.kernels) {
    if (!['GatherV2', 'Sum', 'Exp', 'Identity', 'Add', 'ScatterNd'].includes(k.name)) continue;
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    agg.set(key, (agg.get(key) ?? 0) + (k.kernelTimeMs as number));
  }
  for (const [k, v] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(v.toFixed(1).padStart(7), k);
}
main();
