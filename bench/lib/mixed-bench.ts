/**
 * `bench/gpu.ts --mixed` (`npm run bench:gpu-matmul`): in one run, (1) the tiled webgpu matmul
 * (ml/kernels/webgpu-matmul.ts, fp32 and f16) against tfjs's own kernel on the products of a
 * BERT-base step (B32×T128: M = 4096, hidden 768, ffn 3072, 12 heads; scaled down on a software
 * adapter), as speed-ups; (2) a short training run of the same seed and batches in fp32 and in mixed
 * precision, side by side: the loss curves (max |Δ loss|, final losses) and each one's throughput.
 * Every part runs in a child process of the calling script (Dawn is process-global; one backend
 * and one precision per process).
 */
import { initBackend } from '../../ml/backend.ts';
import { matMulWith, type TileConfig } from '../../ml/kernels/webgpu-matmul.ts';
import { paramLayout, type ModelDims } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { tf } from '../../ml/tf.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import { syntheticBatch } from '../../tests/kit/one-step.ts';
import { printTable } from './table.ts';

export interface Shape {
  name: string;
  batch: number;
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

/** The matmuls of one encoder layer's step (forward, and the two backward forms of a dense layer), and attention's per-head products. */
export function stepShapes(B: number, T: number, d: number, ffn: number, heads: number): Shape[] {
  const M = B * T;
  const bh = B * heads;
  const dh = d / heads;
  const s = (name: string, batch: number, m: number, k: number, n: number, transposeA = false, transposeB = false): Shape => ({ name, batch, m, k, n, transposeA, transposeB });
  return [
    s(`q/k/v/out dense [${M},${d}]·[${d},${d}]`, 1, M, d, d),
    s(`ffn up [${M},${d}]·[${d},${ffn}]`, 1, M, d, ffn),
    s(`ffn down [${M},${ffn}]·[${ffn},${d}]`, 1, M, ffn, d),
    s(`ffn up, dx = dy·Wᵀ [${M},${ffn}]·[${d},${ffn}]ᵀ`, 1, M, ffn, d, false, true),
    s(`ffn up, dW = xᵀ·dy [${M},${d}]ᵀ·[${M},${ffn}]`, 1, d, M, ffn, true, false),
    s(`scores q·kᵀ ${bh}×[${T},${dh}]·[${T},${dh}]ᵀ`, bh, T, dh, T, false, true),
    s(`context p·v ${bh}×[${T},${T}]·[${T},${dh}]`, bh, T, T, dh),
  ];
}

export const FULL_SHAPES = stepShapes(32, 128, 768, 3072, 12);
/** a software adapter: B4×T64, d192, ffn768, 3 heads (dh 64) */
export const SOFTWARE_SHAPES = stepShapes(4, 64, 192, 768, 3);

const ROUTES: { name: string; route: 'tfjs' | TileConfig }[] = [
  { name: 'tfjs', route: 'tfjs' },
  { name: 'tiled 64×64 fp32', route: { rowsPerThread: 4, f16: false } },
  { name: 'tiled 128×64 fp32', route: { rowsPerThread: 8, f16: false } },
  { name: 'tiled 64×64 f16', route: { rowsPerThread: 4, f16: true } },
];

export interface MatmulRow {
  shape: string;
  gflop: number;
  /** ms per product, per route name */
  ms: Record<string, number>;
}

/** Child: each shape on each route, `reps` products after one warm-up (compiles), mean ms from queue submit to the last result. */
export async function matmulChild(a: { software: boolean; reps: number }): Promise<{ detail: string; rows: MatmulRow[] }> {
  const info = await initBackend('webgpu', { threads: 1, allowSoftwareGpu: a.software, precision: 'mixed' });
  const rows: MatmulRow[] = [];
  for (const s of a.software ? SOFTWARE_SHAPES : FULL_SHAPES) {
    const aShape = s.transposeA ? [s.k, s.m] : [s.m, s.k];
    const bShape = s.transposeB ? [s.n, s.k] : [s.k, s.n];
    const x = tf.randomNormal(s.batch > 1 ? [s.batch, ...aShape] : aShape, 0, 1, 'float32', 1);
    const y = tf.randomNormal(s.batch > 1 ? [s.batch, ...bShape] : bShape, 0, 1, 'float32', 2);
    const ms: Record<string, number> = {};
    // alternate the routes over rounds, so that a load change on a shared machine hits them alike
    const samples: Record<string, number[]> = {};
    for (let round = 0; round < 2; round++) {
      for (const r of ROUTES) {
        const w = matMulWith(r.route, x, y, s.transposeA, s.transposeB);
        await w.data();
        w.dispose();
        const t0 = performance.now();
        let last: tf.Tensor | undefined;
        for (let i = 0; i < a.reps; i++) {
          last?.dispose();
          last = matMulWith(r.route, x, y, s.transposeA, s.transposeB);
        }
        await last!.data(); // in-order queue: the last result is ready when all are
        last!.dispose();
        (samples[r.name] ??= []).push((performance.now() - t0) / a.reps);
      }
    }
    for (const r of ROUTES) ms[r.name] = Math.min(...samples[r.name]!);
    tf.dispose([x, y]);
    rows.push({ shape: s.name, gflop: (2 * s.batch * s.m * s.n * s.k) / 1e9, ms });
    process.stderr.write(`  matmul ${s.name}: ${ROUTES.map((r) => `${r.name} ${ms[r.name]!.toFixed(2)} ms`).join(', ')}\n`);
  }
  return { detail: info.detail, rows };
}

export interface CurveArgs {
  software: boolean;
  precision: 'fp32' | 'mixed';
  dims: ModelDims;
  batch: number;
  steps: number;
  lr: number;
  seed: number;
}

export interface CurveResult {
  detail: string;
  precision: string;
  losses: number[];
  /** ms per step (the first includes compiling the shaders) */
  ms: number[];
  skipped: number;
  lossScale?: number;
  numTensors: number[];
}

/** Child: `steps` real training steps (MlmTrainer.step) on the same synthetic batches for either precision. */
export async function curveChild(a: CurveArgs): Promise<CurveResult> {
  const info = await initBackend('webgpu', { threads: 0, allowSoftwareGpu: a.software, precision: a.precision });
  const layout = paramLayout(a.dims);
  const trainer = new MlmTrainer({ dims: a.dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1.0 }, initialWeights(layout, a.seed, 0.02));
  const batches = Array.from({ length: 8 }, (_, i) => syntheticBatch(a.dims, a.batch, a.seed + i));
  const losses: number[] = [];
  const ms: number[] = [];
  const numTensors: number[] = [];
  try {
    for (let i = 0; i < a.steps; i++) {
      const t0 = performance.now();
      const r = await trainer.step(batches[i % batches.length]!, a.lr);
      ms.push(performance.now() - t0);
      losses.push(r.loss);
      numTensors.push(tf.memory().numTensors);
    }
    return { detail: info.detail, precision: info.precision, losses, ms, skipped: trainer.lossScaler?.skipped ?? 0, lossScale: trainer.lossScaler?.scale, numTensors };
  } finally {
    trainer.dispose();
  }
}

type Msg = Record<string, unknown>;
type RunSelf = (args: string[], timeoutMs: number) => Promise<{ lines: Msg[]; code: number | null; stderr: string; timedOut: boolean }>;

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

export const CURVE_MODELS = {
  software: { dims: { layers: 1, hidden: 64, heads: 2, ffn: 256, seqLen: 32, vocab: 1000 }, batch: 8, steps: 30 },
  gpu: { dims: { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 128, vocab: 8000 }, batch: 32, steps: 40 },
};

/** Parent: runs the children through `runSelf(['--mixed-cell', json])` and prints the tables; returns the JSON. */
export async function mixedCompareMain(runSelf: RunSelf, software: boolean): Promise<{ ok: boolean; json: Record<string, unknown> }> {
  const cell = async (o: Msg, timeoutMs: number) => {
    const r = await runSelf(['--mixed-cell', JSON.stringify(o)], timeoutMs);
    const m = r.lines.find((x) => x.ok || x.error);
    if (!m?.ok) throw new Error(`${String(o.kind)} child failed: ${m?.error ?? (r.timedOut ? 'timed out' : `exit ${r.code}: ${r.stderr.split('\n').filter((l) => l.trim() && !/artificially/.test(l)).slice(-3).join(' | ')}`)}`);
    return m.result as Record<string, unknown>;
  };
  const mm = (await cell({ kind: 'matmul', software, reps: software ? 3 : 20 }, 600_000)) as unknown as { detail: string; rows: MatmulRow[] };
  console.log(`\n# matmul: ms per product (best of 2 alternated rounds of ${software ? 3 : 20}) and speed-up over tfjs's kernel; ${mm.detail}${software ? ' — SOFTWARE adapter: shapes scaled down (B4×T64, d192, ffn768, 3 heads)' : ' — BERT-base step shapes (B32×T128)'}`);
  const names = ROUTES.map((r) => r.name);
  printTable(
    ['product', 'GFLOP', ...names.map((n) => `${n} ms`), ...names.slice(1).map((n) => `${n} ×`)],
    mm.rows.map((r) => [r.shape, r.gflop.toPrecision(3), ...names.map((n) => r.ms[n]!.toFixed(2)), ...names.slice(1).map((n) => (r.ms.tfjs! / r.ms[n]!).toFixed(2))]),
  );
  const model = software ? CURVE_MODELS.software : CURVE_MODELS.gpu;
  const base = { software, dims: model.dims, batch: model.batch, steps: model.steps, lr: 1e-3, seed: 1234 };
  const curves: Record<string, CurveResult> = {};
  for (const precision of ['fp32', 'mixed'] as const) curves[precision] = (await cell({ kind: 'curve', ...base, precision }, 900_000)) as unknown as CurveResult;
  const f = curves.fp32!;
  const x = curves.mixed!;
  let maxD = 0;
  for (let i = 0; i < f.losses.length; i++) maxD = Math.max(maxD, Math.abs(f.losses[i]! - x.losses[i]!));
  const tokens = model.batch * model.dims.seqLen;
  const d = model.dims;
  console.log(
    `\n# training, same seed and batches: L${d.layers} d${d.hidden} h${d.heads} ffn${d.ffn} V${d.vocab}, B${model.batch}×T${d.seqLen}, ${model.steps} steps, lr 1e-3 constant, AdamW + clip 1.0; ` +
      `tokens/s from the median step after the first (which compiles the shaders)`,
  );
  const row = (name: string, c: CurveResult) => [
    name,
    c.detail,
    c.losses[0]!.toFixed(4),
    c.losses.at(-1)!.toFixed(4),
    Math.round(median(c.ms.slice(1))).toLocaleString('en'),
    Math.round(tokens / (median(c.ms.slice(1)) / 1000)).toLocaleString('en'),
    String(c.skipped),
    c.lossScale === undefined ? '—' : String(c.lossScale),
    c.numTensors.every((n) => n === c.numTensors[0]) ? 'yes' : 'NO',
  ];
  printTable(['precision', 'backend', 'first loss', 'final loss', 'ms/step', 'tokens/s', 'skipped steps', 'final loss scale', 'tensors flat'], [row('fp32', f), row('mixed', x)]);
  console.log(`  max |Δ loss| over the ${model.steps} steps: ${maxD.toExponential(2)}; final |Δ| ${Math.abs(f.losses.at(-1)! - x.losses.at(-1)!).toExponential(2)}; mixed/fp32 throughput ${(median(f.ms.slice(1)) / median(x.ms.slice(1))).toFixed(2)}×`);
  const every = Math.max(1, Math.floor(model.steps / 10));
  console.log(`  loss every ${every} steps, fp32 | mixed: ${f.losses.filter((_, i) => i % every === 0).map((l, j) => `${l.toFixed(3)}|${x.losses[j * every]!.toFixed(3)}`).join('  ')}`);
  const flat = [f, x].every((c) => c.numTensors.every((n) => n === c.numTensors[0]));
  return { ok: flat && Number.isFinite(maxD), json: { matmul: mm, curves, maxAbsLossDiff: maxD } };
}

/** Child entry: `--mixed-cell <json>`; prints {"ok": true, result} or throws. */
export async function mixedCellMain(json: string): Promise<void> {
  const o = JSON.parse(json) as { kind: 'matmul' | 'curve' } & Record<string, unknown>;
  const result = o.kind === 'matmul' ? await matmulChild(o as unknown as { software: boolean; reps: number }) : await curveChild(o as unknown as CurveArgs);
  process.stdout.write(`${JSON.stringify({ ok: true, result })}\n`);
}
