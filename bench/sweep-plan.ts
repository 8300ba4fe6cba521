/**
 * The arithmetic of a sweep before it runs: per (size, budget) member its parameters, training
 * FLOPs per step (ml/flops.ts, the budget's own source of truth), steps under a FLOP budget, and
 * the estimated wall-clock of pretraining, fine-tuning, compression and evaluation at a throughput
 * model (TFLOP/s by model size); and a scaled-down copy of a sweep config (for a CPU/lavapipe
 * rehearsal of a GPU preset).
 *
 *   node --import tsx bench/sweep-plan.ts configs/sweep-gpu.json            the plan at the H200 throughput measured (docs/gpu.md)
 *   node --import tsx bench/sweep-plan.ts configs/sweep-gpu.json --tflops 1.1   the plan at a flat 1.1 TFLOP/s
 *   node --import tsx bench/sweep-plan.ts configs/sweep-gpu.json --scale 0.0003 --seconds-scale 0.5 --width 8 --depth 4 \
 *     --set '{"base":{"model":{"seqLen":32}}}' --out /tmp/s.json       a scaled copy (FLOP budgets × 0.0003, seconds × 0.5,
 *                                                                      widths ÷ 8, depths ÷ 4, then --set merged in)
 *
 * The estimate is arithmetic, not a measurement: docs/sweep-gpu.md says which figures it rests on.
 */
import fs from 'node:fs';
import { compressionGrid } from '../compression/grid.ts';
import { loadSweepConfig, memberSeeds, type SweepConfig } from '../coordinator/sweep-config.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { classifierStepFlops, mlmStepFlops } from '../ml/flops.ts';
import { nonEmbeddingParameterCount, parameterCount, type ModelDims } from '../ml/model/spec.ts';

/** Training TFLOP/s per worker by parameter count. */
export type Throughput = (params: number) => number;

/**
 * One H200 worker in the current stack (docs/gpu.md, run 4, B32×128, fp32, full step incl. the
 * gradient read-back): small 5.3M 0.28, medium 29.7M 0.72, base 91.9M 1.09 TFLOP/s; interpolated
 * in ln N, 1.1 TFLOP/s from base up (the figure issue 17 plans with), the small figure below.
 */
export const H200_MEASURED: ReadonlyArray<[number, number]> = [
  [5_314_624, 0.28],
  [29_653_312, 0.72],
  [91_898_432, 1.09],
  [300_000_000, 1.1],
];

export function interpolatedThroughput(points: ReadonlyArray<[number, number]> = H200_MEASURED): Throughput {
  return (n) => {
    if (n <= points[0]![0]) return points[0]![1];
    for (let i = 1; i < points.length; i++) {
      const [n1, t1] = points[i]!;
      const [n0, t0] = points[i - 1]!;
      if (n <= n1) return t0 + ((t1 - t0) * (Math.log(n) - Math.log(n0))) / (Math.log(n1) - Math.log(n0));
    }
    return points[points.length - 1]![1];
  };
}

/** Fixed costs the FLOP count does not see, in seconds (backend start, ring, first-step compile, checkpoints, file writes). */
export interface Overheads {
  perPretrain: number;
  perEvaluation: number;
  report: number;
}

export const DEFAULT_OVERHEADS: Overheads = { perPretrain: 4, perEvaluation: 4, report: 20 };

export interface MemberPlan {
  sizeId: string;
  budgetId: string;
  kind: 'flops' | 'seconds';
  seed?: number;
  parameters: number;
  nonEmbeddingParameters: number;
  flopsPerStep: number;
  /** FLOP budgets: the steps the schedule gets; seconds budgets: the steps expected at the throughput */
  steps: number;
  tflops: number;
  pretrainSeconds: number;
  evaluationSeconds: number;
}

export interface SweepPlan {
  members: MemberPlan[];
  pretrainSeconds: number;
  evaluationSeconds: number;
  reportSeconds: number;
  totalSeconds: number;
}

export function dimsOf(sweep: SweepConfig, size: { layers: number; hidden: number; heads: number; ffn: number }): ModelDims {
  return { ...sweep.base.model, layers: size.layers, hidden: size.hidden, heads: size.heads, ffn: size.ffn } as ModelDims;
}

/** The estimated wall-clock of every member and of the whole sweep (pretraining + evaluation + report). */
export function planSweep(sweep: SweepConfig, throughput: Throughput = interpolatedThroughput(), overheads: Overheads = DEFAULT_OVERHEADS): SweepPlan {
  const members: MemberPlan[] = [];
  const batch = sweep.base.train.batchSize;
  const workers = sweep.workers;
  const ev = sweep.evaluation;
  const cells = ev ? compressionGrid(ev.compression) : [];
  for (const budget of sweep.budgets) {
    for (const size of sweep.sizes) {
      for (const seed of memberSeeds(sweep)) {
        const d = dimsOf(sweep, size);
        const parameters = parameterCount(d);
        const flopsPerStep = mlmStepFlops(d, batch, numMaskedPerSeq(d.seqLen)).training * workers;
        // workers share one budget; each computes its share at its own rate
        const tflops = throughput(parameters) * workers;
        const steps = budget.kind === 'flops' ? Math.floor(budget.value / flopsPerStep) : Math.floor((budget.value * tflops * 1e12) / flopsPerStep);
        const pretrainSeconds = (budget.kind === 'flops' ? (steps * flopsPerStep) / (tflops * 1e12) : budget.value) + overheads.perPretrain;
        let evaluationSeconds = 0;
        if (ev && (!ev.budgets || ev.budgets.includes(budget.id))) {
          // fine-tuning (and the fine-tuning rounds of iterative pruning) at the training rate; evaluation of every cell forward-only (1/3 of a training step's FLOPs)
          const ft = classifierStepFlops(d, ev.finetune.batchSize, d.seqLen, 3).training;
          const iterRounds = cells.filter((c) => c.method === 'prune-iterative').length * (ev.compression.iterative ? ev.compression.iterative.rounds * ev.compression.iterative.stepsPerRound : 0);
          const trainFlops = (ev.finetune.steps + iterRounds) * ft;
          const examples = (ev.maxDev || 2000) + (ev.maxTest || 2000);
          const evalFlops = cells.length * (classifierStepFlops(d, examples, d.seqLen, 3).forward);
          // fine-tuning is data-parallel over the workers; the cells are counted at one worker's rate (conservative)
          evaluationSeconds = trainFlops / (tflops * 1e12) + evalFlops / (throughput(parameters) * 1e12) + overheads.perEvaluation;
        }
        members.push({ sizeId: size.id, budgetId: budget.id, kind: budget.kind, ...(seed !== undefined ? { seed } : {}), parameters, nonEmbeddingParameters: nonEmbeddingParameterCount(d), flopsPerStep, steps, tflops, pretrainSeconds, evaluationSeconds });
      }
    }
  }
  const pretrainSeconds = members.reduce((a, m) => a + m.pretrainSeconds, 0);
  const evaluationSeconds = members.reduce((a, m) => a + m.evaluationSeconds, 0);
  return { members, pretrainSeconds, evaluationSeconds, reportSeconds: overheads.report, totalSeconds: pretrainSeconds + evaluationSeconds + overheads.report };
}

/**
 * A copy of a sweep config (the raw JSON) scaled down for a rehearsal: FLOP budgets × `flops`,
 * seconds budgets × `seconds`, every size's hidden and ffn ÷ `width` (heads kept dividing hidden) and
 * layers ÷ `depth` (at least 1), the evaluation's fine-tuning and data cut down.
 */
export function scaleSweepJson(raw: Record<string, unknown>, f: { flops: number; seconds: number; width: number; depth: number; sweepId?: string }): Record<string, unknown> {
  const out = JSON.parse(JSON.stringify(raw)) as Record<string, any>;
  if (f.sweepId) out.sweepId = f.sweepId;
  out.sizes = (out.sizes as Array<Record<string, number | string>>).map((s) => {
    const heads = Math.max(1, Math.round((s.heads as number) / f.width));
    const hidden = Math.max(heads * 8, Math.round((s.hidden as number) / f.width / heads) * heads);
    return { ...s, layers: Math.max(1, Math.round((s.layers as number) / f.depth)), hidden, heads, ffn: Math.max(8, Math.round((s.ffn as number) / f.width)) };
  });
  out.budgets = (out.budgets as Array<Record<string, unknown>>).map((b) => ({ ...b, value: (b.value as number) * (b.kind === 'flops' ? f.flops : f.seconds) }));
  return out;
}

/** `over` merged into `base` (objects recursively; anything else replaced). */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

function fmt(n: number, digits = 3): string {
  return n >= 1e6 ? `${(n / 1e6).toPrecision(digits)}M` : n >= 1e3 ? `${(n / 1e3).toPrecision(digits)}k` : n.toPrecision(digits);
}

export function planTable(plan: SweepPlan): string {
  const rows = [
    '| member | kind | params | non-emb. | GFLOP/step | steps | TFLOP/s | pretrain s | fine-tune + compress + eval s |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...plan.members.map((m) => `| ${m.sizeId}_${m.budgetId}${m.seed !== undefined ? `_s${m.seed}` : ''} | ${m.kind} | ${fmt(m.parameters)} | ${fmt(m.nonEmbeddingParameters)} | ${(m.flopsPerStep / 1e9).toFixed(0)} | ${m.steps} | ${m.tflops.toFixed(2)} | ${m.pretrainSeconds.toFixed(0)} | ${m.evaluationSeconds.toFixed(0)} |`),
  ];
  rows.push('', `pretraining ${plan.pretrainSeconds.toFixed(0)} s + fine-tuning/compression/evaluation ${plan.evaluationSeconds.toFixed(0)} s + report ${plan.reportSeconds.toFixed(0)} s = **${plan.totalSeconds.toFixed(0)} s (${(plan.totalSeconds / 60).toFixed(1)} min)**`);
  return rows.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--')) ?? 'configs/sweep-gpu.json';
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (opt('scale') !== undefined) {
    const k = Number(opt('scale'));
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    const scaled = deepMerge(scaleSweepJson(raw, { flops: k, seconds: Number(opt('seconds-scale') ?? k), width: Number(opt('width') ?? 4), depth: Number(opt('depth') ?? 4) }), JSON.parse(opt('set') ?? '{}') as Record<string, unknown>);
    const text = `${JSON.stringify(scaled, null, 2)}\n`;
    if (opt('out')) fs.writeFileSync(opt('out')!, text);
    else process.stdout.write(text);
  } else {
    const sweep = loadSweepConfig(file);
    const flat = opt('tflops');
    const tp = flat !== undefined ? () => Number(flat) : interpolatedThroughput();
    console.log(planTable(planSweep(sweep, tp)));
  }
}
