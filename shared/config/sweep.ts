/**
 * A sweep config: one base run config, a list (or depth × width grid) of model sizes and one or
 * more total budgets. Every (size, budget) member is the base config with that size and budget.
 * Validated with the same clear errors as run configs (field, value, expectation).
 */
import { ConfigError, readConfigFile, resolveConfig } from './load.ts';
import type { Config } from './schema.ts';

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

export interface SweepConfig {
  sweepId: string;
  outputDir: string;
  workers: number;
  base: Config;
  sizes: SweepSize[];
  budgets: SweepBudget[];
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
  const errors: string[] = [];
  for (const k of Object.keys(raw)) if (!['sweepId', 'outputDir', 'workers', 'base', 'sizes', 'grid', 'budgets'].includes(k)) errors.push(`${k}: unknown field`);
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
  const workers = raw.workers ?? 2;
  if (!posInt(workers)) errors.push(`workers: expected a positive integer, got ${JSON.stringify(workers)}`);
  const sweepId = raw.sweepId ?? '';
  if (typeof sweepId !== 'string') errors.push(`sweepId: expected a string, got ${JSON.stringify(sweepId)}`);
  const outputDir = raw.outputDir ?? 'runs';
  if (typeof outputDir !== 'string') errors.push(`outputDir: expected a string, got ${JSON.stringify(outputDir)}`);
  if (errors.length > 0) throw new ConfigError(`invalid ${source}:\n  ${errors.join('\n  ')}`);
  return { sweepId: sweepId as string, outputDir: outputDir as string, workers: workers as number, base: base!, sizes, budgets };
}

export function loadSweepConfig(path: string): SweepConfig {
  return resolveSweepConfig(readConfigFile(path), path);
}

/** The run config of one sweep member. */
export function memberConfig(s: SweepConfig, size: SweepSize, budget: SweepBudget, outputDir: string): Config {
  return resolveConfig(s.base, {
    runId: `${size.id}_${budget.id}`,
    outputDir,
    model: { layers: size.layers, hidden: size.hidden, heads: size.heads, ffn: size.ffn },
    budget: budget.kind === 'flops' ? { kind: 'flops', flops: budget.value } : { kind: 'seconds', seconds: budget.value },
  });
}
