/**
 * A sweep config: one base run config, a list (or depth × width grid) of model sizes and one or
 * more total budgets. Every (size, budget) member is the base config with that size and budget.
 * Validated with the same clear errors as run configs (field, value, expectation).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, readConfigFile, refuseUnsafeKeys, resolveConfig } from '../core/config/load.ts';
import { RunDirError } from '../core/errors.ts';
import { compressionGrid, type GridOptions } from '../compression/grid.ts';
import { checkRunFits, type RunPlace } from '../ml/loop/memory-check.ts';
import type { HostMemory } from '../ml/model/memory.ts';
import { runIdProblem, type Config } from '../core/config/schema.ts';

export interface SweepSize {
  id: string;
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
}

export interface SweepBudget {
  id: string;
  kind: 'flops' | 'seconds';
  value: number;
}

export interface SweepEvaluation {
  /**
   * fine-tuning of every pretrained member on the classification task (steps, batchSize, lr and
   * warmupFraction also drive the rounds of iterative pruning). Early stopping (the members'
   * fine-tuning only): every evalEvery steps (0 = off) the early-stopping split — the last
   * stopExamples training examples, held out of fine-tuning — is scored; after `patience`
   * evaluations without improvement (0 = never) fine-tuning stops; the best weights are kept.
   */
  finetune: { steps: number; batchSize: number; lr: number; warmupFraction: number; evalEvery: number; patience: number; stopExamples: number };
  /** use only the first N train/dev/test examples of the classification set (0 = all: 16k/2k/2k) */
  maxTrain: number;
  maxDev: number;
  maxTest: number;
  compression: GridOptions;
  /**
   * Fine-tune, compress and evaluate only the members of these budgets (ids); absent = every budget.
   * A GPU preset uses it to keep the compression step inside its time (configs/sweep-gpu.json).
   */
  budgets?: string[];
}

export interface SweepConfig {
  sweepId: string;
  outputDir: string;
  workers: number;
  base: Config;
  sizes: SweepSize[];
  budgets: SweepBudget[];
  /**
   * Repeats of every member with these training seeds (config.trainSeed: initial weights, data
   * order, masks; the data split and validation set stay). Empty = one run per member with the
   * base config's own seeds (member ids without a seed suffix).
   */
  seeds: number[];
  /** the compression + evaluation step; absent = pretraining only */
  evaluation?: SweepEvaluation;
}

const DEFAULT_EVALUATION: SweepEvaluation = {
  finetune: { steps: 300, batchSize: 32, lr: 1e-3, warmupFraction: 0.1, evalEvery: 25, patience: 4, stopExamples: 500 },
  maxTrain: 0,
  maxDev: 0,
  maxTest: 0,
  compression: {
    bits: [8, 6, 4, 3, 2],
    granularities: ['channel', 'tensor'],
    embeddings: [false, true],
    sparsities: [0.3, 0.5, 0.7, 0.9],
    iterative: { rounds: 3, stepsPerRound: 50 },
    combined: [{ sparsity: 0.5, bits: 4 }],
  },
};

function parseEvaluation(raw: unknown, errors: string[]): SweepEvaluation | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObj(raw)) {
    errors.push(`evaluation: expected an object, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  for (const k of Object.keys(raw)) if (!['finetune', 'maxTrain', 'maxDev', 'maxTest', 'compression', 'budgets'].includes(k)) errors.push(`evaluation.${k}: unknown field`);
  const ft = { ...DEFAULT_EVALUATION.finetune, ...(isObj(raw.finetune) ? raw.finetune : {}) } as SweepEvaluation['finetune'];
  if (!posInt(ft.steps)) errors.push(`evaluation.finetune.steps: expected a positive integer, got ${JSON.stringify(ft.steps)}`);
  if (!posInt(ft.batchSize)) errors.push(`evaluation.finetune.batchSize: expected a positive integer, got ${JSON.stringify(ft.batchSize)}`);
  if (typeof ft.lr !== 'number' || !(ft.lr >= 0)) errors.push(`evaluation.finetune.lr: expected a number >= 0, got ${JSON.stringify(ft.lr)}`);
  if (typeof ft.warmupFraction !== 'number' || !(ft.warmupFraction >= 0 && ft.warmupFraction < 1)) errors.push(`evaluation.finetune.warmupFraction: expected a number in [0, 1), got ${JSON.stringify(ft.warmupFraction)}`);
  if (isObj(raw.finetune)) for (const k of Object.keys(raw.finetune)) if (!(k in DEFAULT_EVALUATION.finetune)) errors.push(`evaluation.finetune.${k}: unknown field`);
  const nonNegInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
  if (!nonNegInt(ft.evalEvery)) errors.push(`evaluation.finetune.evalEvery: expected an integer >= 0 (steps between early-stopping evaluations; 0 = no early stopping), got ${JSON.stringify(ft.evalEvery)}`);
  if (!nonNegInt(ft.patience)) errors.push(`evaluation.finetune.patience: expected an integer >= 0 (evaluations without improvement before stopping; 0 = never stop early), got ${JSON.stringify(ft.patience)}`);
  // the classification set's training split has 16,000 examples (ml/data/classification.ts): keep most of them for training
  if (!nonNegInt(ft.stopExamples) || (ft.stopExamples as number) > 8000) errors.push(`evaluation.finetune.stopExamples: expected an integer in [0, 8000] (training examples held out for early stopping), got ${JSON.stringify(ft.stopExamples)}`);
  else if (nonNegInt(ft.evalEvery) && ft.evalEvery > 0 && ft.stopExamples === 0) errors.push('evaluation.finetune.stopExamples: early stopping (evalEvery > 0) needs an early-stopping split: expected an integer in [1, 8000], got 0');
  const out: SweepEvaluation = { ...DEFAULT_EVALUATION, finetune: ft, compression: { ...DEFAULT_EVALUATION.compression, ...(isObj(raw.compression) ? (raw.compression as object) : {}) } };
  for (const k of ['maxTrain', 'maxDev', 'maxTest'] as const) {
    const x = raw[k] ?? 0;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) errors.push(`evaluation.${k}: expected an integer >= 0, got ${JSON.stringify(x)}`);
    else out[k] = x;
  }
  if (raw.budgets !== undefined) {
    if (!Array.isArray(raw.budgets) || raw.budgets.length === 0 || !raw.budgets.every((b) => typeof b === 'string')) errors.push(`evaluation.budgets: expected a non-empty list of budget ids, got ${JSON.stringify(raw.budgets)}`);
    else out.budgets = [...new Set(raw.budgets as string[])];
  }
  try {
    compressionGrid(out.compression);
  } catch (e) {
    errors.push(`evaluation.compression: ${(e as Error).message}`);
  }
  return out;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const posInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 1;

function parseSize(raw: unknown, where: string, errors: string[]): SweepSize | undefined {
  if (!isObj(raw)) {
    errors.push(`${where}: expected an object {layers, hidden[, heads, ffn, id]}, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  for (const k of Object.keys(raw)) if (!['id', 'layers', 'hidden', 'heads', 'ffn'].includes(k)) errors.push(`${where}.${k}: unknown field`);
  const { layers, hidden } = raw;
  if (!posInt(layers)) errors.push(`${where}.layers: expected a positive integer, got ${JSON.stringify(layers)}`);
  if (!posInt(hidden)) errors.push(`${where}.hidden: expected a positive integer, got ${JSON.stringify(hidden)}`);
  if (!posInt(layers) || !posInt(hidden)) return undefined;
  const h = hidden as number;
  // Defaults follow BERT: 64-dimensional heads, feed-forward 4 × hidden.
  const heads = raw.heads ?? Math.max(1, Math.floor(h / 64));
  const ffn = raw.ffn ?? 4 * h;
  if (!posInt(heads) || h % (heads as number) !== 0) errors.push(`${where}.heads: expected a positive divisor of hidden (${h}), got ${JSON.stringify(heads)}`);
  if (!posInt(ffn)) errors.push(`${where}.ffn: expected a positive integer, got ${JSON.stringify(ffn)}`);
  const id = typeof raw.id === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(raw.id) ? raw.id : `L${layers}-d${h}`;
  return { id, layers: layers as number, hidden: h, heads: heads as number, ffn: ffn as number };
}

function parseBudget(raw: unknown, where: string, errors: string[]): SweepBudget | undefined {
  if (!isObj(raw) || (raw.kind !== 'flops' && raw.kind !== 'seconds') || typeof raw.value !== 'number' || !(raw.value > 0)) {
    errors.push(`${where}: expected {kind: "flops" | "seconds", value: number > 0[, id]}, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  const id = typeof raw.id === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(raw.id) ? raw.id : `${raw.kind === 'flops' ? 'F' : 'S'}${raw.value.toExponential(1).replace('+', '')}`;
  return { id, kind: raw.kind, value: raw.value };
}

export function resolveSweepConfig(raw: unknown, source = 'sweep config'): SweepConfig {
  if (!isObj(raw)) throw new ConfigError(`${source}: expected a JSON object`);
  refuseUnsafeKeys(raw, source);
  const errors: string[] = [];
  for (const k of Object.keys(raw)) if (!['sweepId', 'outputDir', 'workers', 'base', 'sizes', 'grid', 'budgets', 'seeds', 'evaluation'].includes(k)) errors.push(`${k}: unknown field`);
  const seeds = parseSeeds(raw.seeds, errors);
  const evaluation = parseEvaluation(raw.evaluation, errors);
  let base: Config | undefined;
  try {
    base = resolveConfig(raw.base ?? {});
  } catch (e) {
    errors.push(`base: ${(e as Error).message.replace(/\n\s*/g, '; ')}`);
  }
  const sizes: SweepSize[] = [];
  if (raw.sizes !== undefined && raw.grid !== undefined) errors.push('sizes / grid: give one of them, not both');
  if (Array.isArray(raw.sizes)) raw.sizes.forEach((s, i) => { const p = parseSize(s, `sizes[${i}]`, errors); if (p) sizes.push(p); });
  else if (isObj(raw.grid) && Array.isArray(raw.grid.layers) && Array.isArray(raw.grid.hidden)) {
    for (const layers of raw.grid.layers) for (const hidden of raw.grid.hidden) { const p = parseSize({ layers, hidden }, `grid(${layers}×${hidden})`, errors); if (p) sizes.push(p); }
  } else errors.push('sizes: expected a list of {layers, hidden[, heads, ffn]} (or grid: {layers: [...], hidden: [...]})');
  if (sizes.length === 0 && errors.length === 0) errors.push('sizes: at least one size is needed');
  const budgets: SweepBudget[] = [];
  if (Array.isArray(raw.budgets) && raw.budgets.length > 0) raw.budgets.forEach((b, i) => { const p = parseBudget(b, `budgets[${i}]`, errors); if (p) budgets.push(p); });
  else errors.push('budgets: expected a non-empty list of {kind: "flops" | "seconds", value}');
  const dup = (xs: { id: string }[]) => xs.map((x) => x.id).filter((id, i, a) => a.indexOf(id) !== i);
  for (const id of dup(sizes)) errors.push(`sizes: duplicate id "${id}"`);
  for (const id of dup(budgets)) errors.push(`budgets: duplicate id "${id}"`);
  for (const id of evaluation?.budgets ?? []) if (!budgets.some((b) => b.id === id)) errors.push(`evaluation.budgets: no budget with id "${id}" (budgets: ${budgets.map((b) => b.id).join(', ')})`);
  const workers = raw.workers ?? 2;
  if (!posInt(workers)) errors.push(`workers: expected a positive integer, got ${JSON.stringify(workers)}`);
  const sweepId = raw.sweepId ?? '';
  // it names the sweep's directory under outputDir, as a run id does
  const sweepIdProblem = runIdProblem(sweepId);
  if (sweepIdProblem) errors.push(`sweepId: ${sweepIdProblem}`);
  const outputDir = raw.outputDir ?? 'runs';
  if (typeof outputDir !== 'string') errors.push(`outputDir: expected a string, got ${JSON.stringify(outputDir)}`);
  if (base?.task === 'translation' && evaluation) errors.push('evaluation: the compression + evaluation step fine-tunes a classifier on an MLM encoder; a translation sweep (base.task "translation") has none (its BLEU per size is in pretraining.json and translation.csv; compress its members with `ttc translation-compress`)');
  if (errors.length > 0) throw new ConfigError(`invalid ${source}:\n  ${errors.join('\n  ')}`);
  return { sweepId: sweepId as string, outputDir: outputDir as string, workers: workers as number, base: base!, sizes, budgets, seeds, ...(evaluation ? { evaluation } : {}) };
}

/** `seeds: n` (n ≥ 1) → training seeds 1…n (n = 1: the base's own, no suffix); or an explicit list of distinct positive integers ([] = none). */
function parseSeeds(raw: unknown, errors: string[]): number[] {
  // [] is how a resolved config (sweep.json in a sweep directory) says "no repeats".
  if (raw === undefined || raw === 1 || (Array.isArray(raw) && raw.length === 0)) return [];
  if (posInt(raw) && (raw as number) <= 100) return Array.from({ length: raw as number }, (_, i) => i + 1);
  if (Array.isArray(raw) && raw.length > 0 && raw.every(posInt) && new Set(raw).size === raw.length) return raw.length === 1 ? [raw[0] as number] : (raw as number[]);
  errors.push(`seeds: expected a number of seeds 1..100 or a list of distinct positive integers, got ${JSON.stringify(raw)}`);
  return [];
}

export function loadSweepConfig(path: string): SweepConfig {
  return resolveSweepConfig(readConfigFile(path), path);
}

/** The resolved sweep config stored in a sweep directory (its sweep.json). */
export function readSweepDir(dir: string): SweepConfig {
  const stored = join(dir, 'sweep.json');
  if (!existsSync(stored)) throw new RunDirError(`${dir} is not a sweep directory (no sweep.json)`);
  return resolveSweepConfig(readConfigFile(stored), stored);
}

/** The early-stopping settings of the members' fine-tuning (undefined = off: evalEvery 0). */
export function finetuneEarlyStopping(e: SweepEvaluation): { evalEvery: number; patience: number } | undefined {
  return e.finetune.evalEvery > 0 ? { evalEvery: e.finetune.evalEvery, patience: e.finetune.patience } : undefined;
}

/** Training examples held out as the early-stopping split (0 when early stopping is off: the training set stays whole). */
export function stopExamplesOf(e: SweepEvaluation): number {
  return e.finetune.evalEvery > 0 ? e.finetune.stopExamples : 0;
}

/**
 * The seed of a member's fine-tuning (classifier head initialisation, batch order; the model has no
 * dropout): a repeated member's own training seed, so every repeat also fine-tunes differently, else
 * the base seed. The classification split stays the base seed's for every repeat.
 */
export function finetuneSeed(s: SweepConfig, memberSeed: number | undefined): number {
  return memberSeed ?? s.base.seed;
}

/** The seeds a sweep trains every member with: its list, or the base's own (undefined = no trainSeed override). */
export function memberSeeds(s: SweepConfig): Array<number | undefined> {
  return s.seeds.length > 0 ? s.seeds : [undefined];
}

/** The run config of one sweep member (with a training seed: one repeat of it, id suffixed _s<seed>). */
export function memberConfig(s: SweepConfig, size: SweepSize, budget: SweepBudget, outputDir: string, seed?: number): Config {
  return resolveConfig(s.base, {
    runId: `${size.id}_${budget.id}${seed !== undefined ? `_s${seed}` : ''}`,
    ...(seed !== undefined ? { trainSeed: seed } : {}),
    outputDir,
    model: { layers: size.layers, hidden: size.hidden, heads: size.heads, ffn: size.ffn },
    budget: budget.kind === 'flops' ? { kind: 'flops', flops: budget.value } : { kind: 'seconds', seconds: budget.value },
  });
}

/** Refuses, before the sweep's directory exists, a sweep with a member whose run cannot fit what this machine holds of it (ml/loop/memory-check.ts). */
export function checkSweepFits(s: SweepConfig, place: Omit<RunPlace, 'label'>, host?: HostMemory): void {
  for (const size of s.sizes) {
    for (const budget of s.budgets) {
      const config = memberConfig(s, size, budget, s.outputDir);
      checkRunFits(config, { ...place, label: `sweep member ${config.runId}` }, host);
    }
  }
}
