/**
 * Where a training step goes, per tfjs kernel: wall time, calls and µs per call of every kernel
 * name (top-level engine.runKernel calls, timed by wrapping it; a kernel's nested calls count in
 * its own time), over `steps` MlmTrainer steps built as bench/lib/train-child.ts builds them (B16×T64,
 * V8000, bench/train.ts's sizes), fast matmul on, 2 threads. SHAPES=1 adds the costliest input
 * shapes per kernel. Also prints the unprofiled step (wall and process CPU) and its grad/apply split.
 *
 *   node --import tsx bench/profile-step.ts [S|M|L] [wasm|cpu] [fused: 1|0] [steps]
 */
import { initBackend } from '../ml/backend.ts';
import { prepareDataset } from '../ml/data/dataset.ts';
import { BatchReader, type DataPosition } from '../ml/data/batches.ts';
import { paramLayout, type ModelDims } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { MlmTrainer } from '../ml/train/trainer.ts';
import { tf } from '../ml/tf.ts';
import path from 'node:path';

const T = 64, V = 8000;
const SIZES: Record<string, ModelDims> = {
  S: { layers: 2, hidden: 64, heads: 2, ffn: 256, seqLen: T, vocab: V },
  M: { layers: 4, hidden: 128, heads: 2, ffn: 512, seqLen: T, vocab: V },
  L: { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: T, vocab: V },
};
const [size = 'M', backend = 'wasm', fused = '1', nSteps = '5'] = process.argv.slice(2);
const dims = SIZES[size];
const info = await initBackend(backend as 'wasm', { threads: 2, fastKernels: true, fusedKernels: fused === '1', allowSoftwareGpu: false });
console.log(info.detail);
const data = await prepareDataset({ seed: 1234, seqLen: T, vocabSize: V, validationFraction: 0.02, cacheDir: path.resolve('.cache'), log: () => {} });
const reader = new BatchReader({ data: data.train, count: data.trainCount, seqLen: T }, 1234, V);
const trainer = new MlmTrainer({ dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1.0 }, initialWeights(paramLayout(dims), 1234, 0.02));
let pos: DataPosition = { epoch: 0, offset: 0 };
const stat = new Map<string, { ms: number; n: number; shapes: Map<string, { ms: number; n: number }> }>();
let on = false;
const eng = tf.engine() as unknown as { runKernel: (name: string, inputs: Record<string, tf.Tensor>, attrs: unknown) => unknown };
const orig = eng.runKernel.bind(eng);
let depth = 0;
eng.runKernel = (name, inputs, attrs) => {
  if (!on || depth > 0) return orig(name, inputs, attrs);
  depth++;
  const t0 = performance.now();
  try {
    return orig(name, inputs, attrs);
  } finally {
    depth--;
    const dt = performance.now() - t0;
    const s = stat.get(name) ?? { ms: 0, n: 0, shapes: new Map() };
    s.ms += dt; s.n++;
    const key = Object.values(inputs ?? {}).map((t) => (t && (t as tf.Tensor).shape ? `[${(t as tf.Tensor).shape}]` : '?')).join(' ') + ' ' + JSON.stringify(attrs ?? {}).slice(0, 60);
    const e = s.shapes.get(key) ?? { ms: 0, n: 0 };
    e.ms += dt; e.n++; s.shapes.set(key, e);
    stat.set(name, s);
  }
};
const step = async () => {
  const batch = reader.read(pos, 0, 16);
  pos = reader.advance(pos, 16);
  const t0 = performance.now();
  await trainer.computeGradients(batch);
  const t1 = performance.now();
  await trainer.apply(5e-4);
  return [t1 - t0, performance.now() - t1];
};
for (let i = 0; i < 2 + Number(nSteps); i++) await step(); // warm-up (JIT, onnxruntime sessions)
const cpu0 = process.cpuUsage();
const w0 = performance.now();
const tot: number[] = [];
const ga: string[] = [];
for (let i = 0; i < Number(nSteps); i++) { const [g, a] = await step(); tot.push(g + a); ga.push(`${g.toFixed(0)}+${a.toFixed(0)}`); }
const cpu1 = process.cpuUsage(cpu0);
console.log(`unprofiled: ${((performance.now() - w0) / Number(nSteps)).toFixed(0)} ms wall/step, ${((cpu1.user + cpu1.system) / 1000 / Number(nSteps)).toFixed(0)} ms process CPU/step (user+sys, all threads)`);
console.log('step ms (unprofiled):', tot.map((x) => x.toFixed(0)).join(' '), ' grad+apply:', ga.join(' '), JSON.stringify(trainer.lastApply));
on = true;
let wall = 0;
for (let i = 0; i < Number(nSteps); i++) { const [g, a] = await step(); wall += g + a; }
on = false;
const n = Number(nSteps);
const rows = [...stat.entries()].sort((a, b) => b[1].ms - a[1].ms);
const sum = rows.reduce((s, [, v]) => s + v.ms, 0);
console.log(`profiled step ${(wall / n).toFixed(1)} ms, kernel sum ${(sum / n).toFixed(1)} ms, calls/step ${(rows.reduce((s, [, v]) => s + v.n, 0) / n).toFixed(0)}`);
for (const [k, v] of rows.slice(0, 30)) {
  console.log(`${k.padEnd(28)} ${(v.ms / n).toFixed(2).padStart(8)} ms ${String(v.n / n).padStart(6)} calls ${((v.ms / v.n) * 1000).toFixed(0).padStart(6)} us/call`);
  if (process.env.SHAPES) for (const [sk, sv] of [...v.shapes.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 6)) console.log(`     ${(sv.ms / n).toFixed(2).padStart(8)} ms ${String(sv.n / n).padStart(5)}x  ${sk}`);
}
trainer.dispose();
process.exit(0);
