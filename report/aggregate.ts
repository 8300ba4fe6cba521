/**
 * Shared bookkeeping for the report: validating ReportData, ordering sizes and budgets, labels and
 * number formats, averaging over seeds, and the Pareto front. Plots, tables and the conclusion all
 * read the data through these functions so they agree on what a "cell" and its numbers are.
 */
import { METHODS, type Method } from '../compression/grid.ts';
import type { Budget, BytesView, Cell, Final, ReportData, Size } from './types.ts';

// ---------------------------------------------------------------------------------------------
// validation

/** Throws one error listing every problem found (unknown ids, duplicates, impossible numbers). */
export function validateReportData(data: ReportData): void {
  const problems: string[] = [];
  const budgetIds = new Set<string>();
  for (const b of data.budgets) {
    if (budgetIds.has(b.id)) problems.push(`budgets: duplicate id "${b.id}"`);
    budgetIds.add(b.id);
    if (b.kind !== 'flops' && b.kind !== 'seconds') problems.push(`budgets.${b.id}.kind: expected "flops" or "seconds", got ${JSON.stringify(b.kind)}`);
    if (!(b.value > 0)) problems.push(`budgets.${b.id}.value: expected a positive number, got ${b.value}`);
  }
  const sizeIds = new Set<string>();
  for (const s of data.sizes) {
    if (sizeIds.has(s.id)) problems.push(`sizes: duplicate id "${s.id}"`);
    sizeIds.add(s.id);
    if (!(s.parameters > 0)) problems.push(`sizes.${s.id}.parameters: expected a positive number, got ${s.parameters}`);
  }
  const ref = (where: string, sizeId: string, budgetId: string): void => {
    if (!sizeIds.has(sizeId)) problems.push(`${where}: unknown sizeId "${sizeId}"`);
    if (!budgetIds.has(budgetId)) problems.push(`${where}: unknown budgetId "${budgetId}"`);
  };
  data.curves.forEach((c, i) => ref(`curves[${i}]`, c.sizeId, c.budgetId));
  const finalKeys = new Set<string>();
  data.finals.forEach((f, i) => {
    ref(`finals[${i}]`, f.sizeId, f.budgetId);
    const k = `${f.sizeId}\u0000${f.budgetId}\u0000${f.seed ?? ''}`;
    if (finalKeys.has(k)) problems.push(`finals[${i}]: duplicate (size ${f.sizeId}, budget ${f.budgetId}, seed ${f.seed ?? '-'})`);
    finalKeys.add(k);
  });
  const cellKeys = new Set<string>();
  data.cells.forEach((c, i) => {
    const where = `cells[${i}]`;
    ref(where, c.sizeId, c.budgetId);
    if (!(METHODS as readonly string[]).includes(c.method)) problems.push(`${where}.method: expected one of ${METHODS.join(', ')}, got ${JSON.stringify(c.method)}`);
    if (!(c.bytesTotal > 0)) problems.push(`${where}.bytesTotal: expected a positive number, got ${c.bytesTotal}`);
    if (!(c.bytesNonEmbedding > 0)) problems.push(`${where}.bytesNonEmbedding: expected a positive number, got ${c.bytesNonEmbedding}`);
    for (const f of ['devAccuracy', 'testAccuracy'] as const) {
      if (!(c[f] >= 0 && c[f] <= 1)) problems.push(`${where}.${f}: expected a fraction in [0, 1], got ${c[f]}`);
    }
    const k = `${cellKey(c)}\u0000${c.seed ?? ''}`;
    if (cellKeys.has(k)) problems.push(`${where}: duplicate cell (size ${c.sizeId}, budget ${c.budgetId}, ${c.method} "${c.level}", seed ${c.seed ?? '-'})`);
    cellKeys.add(k);
  });
  if (problems.length > 0) throw new Error(`invalid report data:\n  ${problems.join('\n  ')}`);
}

// ---------------------------------------------------------------------------------------------
// order and labels

/** Sizes from smallest to largest (parameters, then non-embedding parameters, then id). */
export function sortedSizes(data: ReportData): Size[] {
  return [...data.sizes].sort((a, b) => a.parameters - b.parameters || a.nonEmbeddingParameters - b.nonEmbeddingParameters || a.id.localeCompare(b.id));
}

/** Budgets by kind (FLOPs first), then value. */
export function sortedBudgets(data: ReportData): Budget[] {
  return [...data.budgets].sort((a, b) => (a.kind === b.kind ? a.value - b.value : a.kind === 'flops' ? -1 : 1) || a.id.localeCompare(b.id));
}

/** 940000 → "940k", 1.2e9 → "1.2G", with 3 significant digits and SI prefixes. */
export function fmtSI(n: number, digits = 3): string {
  if (n === 0 || !Number.isFinite(n)) return String(n);
  const prefixes: Array<[number, string]> = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [f, p] of prefixes) if (Math.abs(n) >= f) return `${trimNum(n / f, digits)}${p}`;
  return trimNum(n, digits);
}

function trimNum(n: number, digits: number): string {
  return String(Number(n.toPrecision(digits)));
}

/** Parameter counts: 940000 → "0.94M", 110e6 → "110M". */
export function fmtParams(n: number): string {
  return n >= 1e5 && n < 1e6 ? `${trimNum(n / 1e6, 2)}M` : fmtSI(n, 3);
}

/** Bytes in SI units (1 MB = 10^6 B): 1234567 → "1.23 MB". */
export function fmtBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const s = fmtSI(n, 3);
  return `${s.slice(0, -1)} ${s.slice(-1)}B`;
}

/** 0.8512 → "85.12%". */
/** "a", "a and b", "a, b and c". */
export function listAnd(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

export function fmtPct(x: number, decimals = 2): string {
  return `${(x * 100).toFixed(decimals)}%`;
}

export function fmtLoss(x: number): string {
  return x.toFixed(4);
}

export function budgetLabel(b: Budget): string {
  return b.kind === 'flops' ? `${b.id} (${b.value.toExponential(1).replace('e+', 'e')} FLOPs)` : `${b.id} (${trimNum(b.value, 4)} s)`;
}

export function sizeLabel(s: Size): string {
  return `${s.id} (${fmtParams(s.parameters)})`;
}

const METHOD_NAMES: Record<Method, string> = {
  none: 'uncompressed',
  quant: 'quantization',
  'prune-oneshot': 'one-shot pruning',
  'prune-iterative': 'iterative pruning',
  'prune+quant': 'pruning + quantization',
};

export function methodName(m: Method): string {
  return METHOD_NAMES[m];
}

/** "4-bit/channel quantization", "iterative pruning to sparsity 0.9", "no compression". */
export function compressionLabel(c: Pick<Cell, 'method' | 'level'>): string {
  switch (c.method) {
    case 'none':
      return c.level && c.level !== 'none' ? `no compression (${c.level})` : 'no compression';
    case 'quant':
      return `${c.level} quantization`;
    case 'prune-oneshot':
      return `one-shot pruning (${c.level})`;
    case 'prune-iterative':
      return `iterative pruning (${c.level})`;
    case 'prune+quant':
      return `pruning + quantization (${c.level})`;
  }
}

// ---------------------------------------------------------------------------------------------
// averaging over seeds

export interface Stats {
  mean: number;
  min: number;
  max: number;
  n: number;
  /** sample standard deviation (n − 1); 0 with one value. With 3 or more values the spread interval is mean ± sd (stats.ts). */
  sd: number;
}

export function stats(xs: number[]): Stats {
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of xs) {
    sum += x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const mean = xs.length ? sum / xs.length : NaN;
  const ss = xs.reduce((a, x) => a + (x - mean) ** 2, 0);
  return { mean, min, max, n: xs.length, sd: xs.length > 1 ? Math.sqrt(ss / (xs.length - 1)) : 0 };
}

export function cellKey(c: Pick<Cell, 'sizeId' | 'budgetId' | 'method' | 'level'>): string {
  return `${c.budgetId}\u0000${c.sizeId}\u0000${c.method}\u0000${c.level}`;
}

/** One (size, budget, method, level) configuration, its seeds averaged. */
export interface CellGroup extends Pick<Cell, 'sizeId' | 'budgetId' | 'method' | 'level' | 'bits' | 'granularity' | 'sparsity' | 'embeddingsCompressed'> {
  key: string;
  /** the largest over seeds (they should all be equal): a configuration fits M only if every seed's file does */
  bytesTotal: number;
  bytesNonEmbedding: number;
  dev: Stats;
  test: Stats;
  valPerplexity?: Stats;
  seeds: number[];
  /** the raw rows */
  rows: Cell[];
}

export function bytesOf(g: Pick<CellGroup, 'bytesTotal' | 'bytesNonEmbedding'>, view: BytesView): number {
  return view === 'total' ? g.bytesTotal : g.bytesNonEmbedding;
}

/**
 * The cells grouped by (budget, size, method, level), in report order: budgets, then sizes small to
 * large, then methods in METHODS order, then least compressed (most bytes) first.
 */
export function groupCells(data: ReportData): CellGroup[] {
  const byKey = new Map<string, Cell[]>();
  for (const c of data.cells) {
    const k = cellKey(c);
    const list = byKey.get(k);
    if (list) list.push(c);
    else byKey.set(k, [c]);
  }
  const groups: CellGroup[] = [];
  for (const [key, rows] of byKey) {
    const c0 = rows[0]!;
    const ppl = rows.filter((r) => r.valPerplexity !== undefined).map((r) => r.valPerplexity!);
    groups.push({
      key,
      sizeId: c0.sizeId,
      budgetId: c0.budgetId,
      method: c0.method,
      level: c0.level,
      bits: c0.bits,
      granularity: c0.granularity,
      sparsity: c0.sparsity,
      embeddingsCompressed: c0.embeddingsCompressed,
      bytesTotal: Math.max(...rows.map((r) => r.bytesTotal)),
      bytesNonEmbedding: Math.max(...rows.map((r) => r.bytesNonEmbedding)),
      dev: stats(rows.map((r) => r.devAccuracy)),
      test: stats(rows.map((r) => r.testAccuracy)),
      valPerplexity: ppl.length ? stats(ppl) : undefined,
      seeds: rows.filter((r) => r.seed !== undefined).map((r) => r.seed!).sort((a, b) => a - b),
      rows,
    });
  }
  const bOrder = new Map(sortedBudgets(data).map((b, i) => [b.id, i]));
  const sOrder = new Map(sortedSizes(data).map((s, i) => [s.id, i]));
  const mOrder = new Map(METHODS.map((m, i) => [m, i]));
  return groups.sort(
    (a, b) =>
      bOrder.get(a.budgetId)! - bOrder.get(b.budgetId)! ||
      sOrder.get(a.sizeId)! - sOrder.get(b.sizeId)! ||
      mOrder.get(a.method)! - mOrder.get(b.method)! ||
      b.bytesTotal - a.bytesTotal ||
      a.level.localeCompare(b.level),
  );
}

/** One (size, budget) pretraining result, seeds averaged. */
export interface FinalGroup {
  sizeId: string;
  budgetId: string;
  valLoss: Stats;
  steps: number;
  flops: number;
  seconds: number;
  rows: Final[];
}

export function groupFinals(data: ReportData): FinalGroup[] {
  const byKey = new Map<string, Final[]>();
  for (const f of data.finals) {
    const k = `${f.budgetId}\u0000${f.sizeId}`;
    const list = byKey.get(k);
    if (list) list.push(f);
    else byKey.set(k, [f]);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const out: FinalGroup[] = [];
  for (const rows of byKey.values()) {
    out.push({
      sizeId: rows[0]!.sizeId,
      budgetId: rows[0]!.budgetId,
      valLoss: stats(rows.map((r) => r.valLoss)),
      steps: mean(rows.map((r) => r.steps)),
      flops: mean(rows.map((r) => r.flops)),
      seconds: mean(rows.map((r) => r.seconds)),
      rows,
    });
  }
  const bOrder = new Map(sortedBudgets(data).map((b, i) => [b.id, i]));
  const sOrder = new Map(sortedSizes(data).map((s, i) => [s.id, i]));
  return out.sort((a, b) => bOrder.get(a.budgetId)! - bOrder.get(b.budgetId)! || sOrder.get(a.sizeId)! - sOrder.get(b.sizeId)!);
}

/** Curve points of one (size, budget) averaged over seeds at equal step. */
export interface CurveGroupPoint {
  sizeId: string;
  budgetId: string;
  step: number;
  flops: number;
  seconds: number;
  valLoss: Stats;
}

export function groupCurves(data: ReportData): CurveGroupPoint[] {
  const byKey = new Map<string, Array<{ flops: number; seconds: number; valLoss: number }>>();
  const meta = new Map<string, { sizeId: string; budgetId: string; step: number }>();
  for (const c of data.curves) {
    for (const p of c.points) {
      if (!Number.isFinite(p.valLoss)) continue;
      const k = `${c.budgetId}\u0000${c.sizeId}\u0000${p.step}`;
      const list = byKey.get(k);
      if (list) list.push(p);
      else {
        byKey.set(k, [p]);
        meta.set(k, { sizeId: c.sizeId, budgetId: c.budgetId, step: p.step });
      }
    }
  }
  const out: CurveGroupPoint[] = [];
  for (const [k, pts] of byKey) {
    out.push({
      ...meta.get(k)!,
      flops: pts.reduce((a, p) => a + p.flops, 0) / pts.length,
      seconds: pts.reduce((a, p) => a + p.seconds, 0) / pts.length,
      valLoss: stats(pts.map((p) => p.valLoss)),
    });
  }
  return out.sort((a, b) => a.budgetId.localeCompare(b.budgetId) || a.sizeId.localeCompare(b.sizeId) || a.step - b.step);
}

// ---------------------------------------------------------------------------------------------
// Pareto front

/**
 * The accuracy-vs-memory Pareto front: the groups no other group beats on both counts (fewer or
 * equal bytes and higher or equal mean dev accuracy, one of them strictly). Sorted by bytes.
 */
export function paretoFront(groups: CellGroup[], view: BytesView): CellGroup[] {
  const sorted = [...groups].sort((a, b) => bytesOf(a, view) - bytesOf(b, view) || b.dev.mean - a.dev.mean);
  const front: CellGroup[] = [];
  let best = -Infinity;
  for (const g of sorted) {
    if (g.dev.mean > best) {
      front.push(g);
      best = g.dev.mean;
    }
  }
  return front;
}
