/**
 * The report's plots: Vega-Lite specs built from ReportData, rendered headless to standalone SVG
 * strings (no canvas package, no DOM, no network: the data is inlined in each spec).
 *
 *   accuracy-vs-bytes                                 the headline: dev accuracy vs total and non-embedding bytes, a line per size
 *   loss-vs-flops / loss-vs-seconds / loss-vs-steps   pretraining curves, one line per size, a panel per budget
 *   isoflop                                           final validation loss vs parameters, a line per budget, best size marked
 *   quant                                             dev accuracy vs total bytes under quantization, a line per size
 *   prune                                             the same under pruning, one-shot and iterative side by side
 *   prune-quant                                       the same for pruning + quantization, dashed by bit width
 *   frontier-total / frontier-nonembedding           every cell and the accuracy-vs-memory Pareto front
 *
 *   robustness-quant / robustness-prune               accuracy drop vs compression level (bits; sparsity), a line per size
 *   isoflop-fit, nopt-vs-flops / nopt-vs-seconds      the compute-optimal fits (fit-plots.ts), added by writeReport
 *
 * With several seeds, lines are means and a band (curves, robustness) or error bars (the rest) span
 * the spread interval of stats.ts (min–max with 2 seeds, mean ± 1 sd with 3 or more): the same
 * interval the conclusion's "not distinguishable" rule uses.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import {
  budgetLabel,
  bytesOf,
  groupCells,
  groupCurves,
  groupFinals,
  methodName,
  paretoFront,
  sizeLabel,
  sortedBudgets,
  sortedSizes,
  type CellGroup,
} from './aggregate.ts';
import { bestSizePerBudget, VIEW_NAMES } from './conclusion.ts';
import { FAMILIES, dropPoints } from './robustness.ts';
import { SPREAD_NOTE, spreadInterval } from './stats.ts';
import { BYTES_VIEWS, type BytesView, type ReportData } from './types.ts';
import { codedError } from '../core/errors.ts';

export interface PlotSpec {
  /** file stem: plots/<name>.svg */
  name: string;
  title: string;
  /** what the plot shows, one sentence (used in report.md/html and docs) */
  description: string;
  xTitle: string;
  yTitle: string;
  spec: TopLevelSpec;
}

export interface RenderedPlot extends PlotSpec {
  svg: string;
}

type Json = Record<string, unknown>;

const PANEL = { width: 320, height: 220 };
const BYTES_TITLE: Record<BytesView, string> = { total: 'total bytes (log scale)', nonEmbedding: 'non-embedding bytes (log scale)' };
const DEV_TITLE = 'dev accuracy';
/** what a band or error bar spans (stats.ts spreadInterval) */

// ---------------------------------------------------------------------------------------------
// spec helpers

interface Layout {
  column?: { field: string; sort: string[] };
  row?: { field: string; sort: string[] };
  independentX?: boolean;
  /** the size of each panel (default PANEL) */
  panel?: { width: number; height: number };
}

/** A (possibly faceted) layered chart over one inline data set. */
export function chart(title: string, description: string, values: Json[], layers: Json[], layout: Layout = {}): TopLevelSpec {
  const base: Json = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    description,
    data: { values },
    config: { font: 'sans-serif', axis: { labelFontSize: 10, titleFontSize: 11 }, legend: { labelLimit: 260 } },
  };
  const panel = layout.panel ?? PANEL;
  if (!layout.column && !layout.row) return { ...base, ...panel, layer: layers } as unknown as TopLevelSpec;
  const facet: Json = {};
  if (layout.column) facet.column = { field: layout.column.field, type: 'nominal', sort: layout.column.sort, title: null, header: { labelFontSize: 12, labelFontWeight: 'bold' } };
  if (layout.row) facet.row = { field: layout.row.field, type: 'nominal', sort: layout.row.sort, title: null, header: { labelFontSize: 11 } };
  return {
    ...base,
    facet,
    spec: { ...panel, layer: layers },
    ...(layout.independentX ? { resolve: { scale: { x: 'independent' } } } : {}),
  } as unknown as TopLevelSpec;
}

function sizeColor(data: ReportData): Json {
  return { field: 'size', type: 'nominal', title: 'size', scale: { domain: sortedSizes(data).map(sizeLabel) } };
}

/** A log axis whose domain leaves room around the data (points and labels at the edge stay whole). */
function logX(field: string, title: string, values: Json[]): Json {
  const xs = values.map((v) => v[field] as number).filter((x) => x > 0);
  const domain = xs.length ? [Math.min(...xs) / 1.25, Math.max(...xs) * 1.25] : undefined;
  return {
    field,
    type: 'quantitative',
    title,
    scale: { type: 'log', nice: false, ...(domain ? { domain } : {}) },
    axis: { format: '.3~s', labelOverlap: 'greedy', labelSeparation: 6 },
  };
}

function logBytesX(view: BytesView, values: Json[]): Json {
  return logX('bytes', BYTES_TITLE[view], values);
}

const accY: Json = { field: 'acc', type: 'quantitative', title: DEV_TITLE, scale: { zero: false }, axis: { format: '.0%' } };

function errorBars(x: Json, color: Json | null): Json {
  return {
    mark: { type: 'rule', strokeWidth: 1.5 },
    encoding: { x, y: { field: 'accMin', type: 'quantitative', title: DEV_TITLE }, y2: { field: 'accMax' }, ...(color ? { stroke: bandColor(color) } : {}) },
  };
}

/**
 * The color of a band or error bar, without a legend of its own. It reads a copy of the field
 * (`<field>Band`, same values, same domain): with the same field Vega-Lite merges the two legends
 * and `legend: null` would then hide the line's legend too.
 */
function bandColor(color: Json): Json {
  return { ...color, field: `${color.field as string}Band`, legend: null };
}

function multiSeed(groups: CellGroup[]): boolean {
  return groups.some((g) => g.dev.n > 1);
}

function cellRow(data: ReportData, g: CellGroup, view: BytesView): Json {
  const size = data.sizes.find((s) => s.id === g.sizeId)!;
  const budget = data.budgets.find((b) => b.id === g.budgetId)!;
  return {
    size: sizeLabel(size),
    sizeBand: sizeLabel(size),
    budget: budgetLabel(budget),
    method: methodName(g.method),
    level: g.level,
    bytes: bytesOf(g, view),
    acc: g.dev.mean,
    accMin: spreadInterval(g.dev).lo,
    accMax: spreadInterval(g.dev).hi,
    test: g.test.mean,
  };
}

// ---------------------------------------------------------------------------------------------
// the plots

function curvePlots(data: ReportData): PlotSpec[] {
  const points = groupCurves(data);
  if (points.length === 0) return [];
  const sizes = new Map(data.sizes.map((s) => [s.id, s]));
  const budgets = new Map(data.budgets.map((b) => [b.id, b]));
  const budgetSort = sortedBudgets(data).map(budgetLabel);
  const values = points.map((p) => ({
    size: sizeLabel(sizes.get(p.sizeId)!),
    sizeBand: sizeLabel(sizes.get(p.sizeId)!),
    budget: budgetLabel(budgets.get(p.budgetId)!),
    step: p.step,
    flops: p.flops,
    seconds: p.seconds,
    loss: p.valLoss.mean,
    lossMin: spreadInterval(p.valLoss).lo,
    lossMax: spreadInterval(p.valLoss).hi,
  }));
  const several = new Set(values.map((v) => v.budget)).size > 1;
  const band = points.some((p) => p.valLoss.n > 1);
  const color = sizeColor(data);
  const yTitle = 'validation loss (MLM)';
  const y: Json = { field: 'loss', type: 'quantitative', title: yTitle, scale: { zero: false } };
  const axes: Array<{ name: string; field: string; xTitle: string; format: string; what: string }> = [
    { name: 'loss-vs-flops', field: 'flops', xTitle: 'training FLOPs', format: '~s', what: 'training FLOPs' },
    { name: 'loss-vs-seconds', field: 'seconds', xTitle: 'training seconds', format: '~s', what: 'training wall-clock seconds' },
    { name: 'loss-vs-steps', field: 'step', xTitle: 'optimizer steps', format: '~s', what: 'optimizer steps' },
  ];
  return axes.map((a) => {
    const x: Json = { field: a.field, type: 'quantitative', title: a.xTitle, axis: { format: a.format } };
    const layers: Json[] = [];
    if (band) layers.push({ mark: { type: 'area', opacity: 0.2 }, encoding: { x, y: { field: 'lossMin', type: 'quantitative', title: yTitle }, y2: { field: 'lossMax' }, fill: bandColor(color) } });
    layers.push({ mark: { type: 'line', strokeWidth: 1.8 }, encoding: { x, y, color } });
    const title = `Validation loss vs ${a.what}`;
    const description = `Pretraining validation loss against ${a.what}, one line per model size${several ? ', one panel per budget' : ''}${band ? `; mean over seeds with a band over the seeds' spread (${SPREAD_NOTE})` : ''}.`;
    return {
      name: a.name,
      title,
      description,
      xTitle: a.xTitle,
      yTitle,
      spec: chart(title, description, values, layers, several ? { column: { field: 'budget', sort: budgetSort }, independentX: true } : {}),
    };
  });
}

function isoflopPlot(data: ReportData): PlotSpec[] {
  const finals = groupFinals(data);
  if (finals.length === 0) return [];
  const best = new Map(bestSizePerBudget(data).map((b) => [b.budgetId, b.sizeId]));
  const sizes = new Map(data.sizes.map((s) => [s.id, s]));
  const budgets = new Map(data.budgets.map((b) => [b.id, b]));
  const values = finals.map((f) => {
    const s = sizes.get(f.sizeId)!;
    return {
      budget: budgetLabel(budgets.get(f.budgetId)!),
      budgetBand: budgetLabel(budgets.get(f.budgetId)!),
      size: s.id,
      params: s.parameters,
      loss: f.valLoss.mean,
      lossMin: spreadInterval(f.valLoss).lo,
      lossMax: spreadInterval(f.valLoss).hi,
      best: best.get(f.budgetId) === f.sizeId,
    };
  });
  const xTitle = 'parameters (log scale)';
  const yTitle = 'final validation loss';
  const x = logX('params', xTitle, values);
  const y: Json = { field: 'loss', type: 'quantitative', title: yTitle, scale: { zero: false } };
  const color: Json = { field: 'budget', type: 'nominal', title: 'budget', scale: { domain: sortedBudgets(data).map(budgetLabel) } };
  const layers: Json[] = [];
  if (finals.some((f) => f.valLoss.n > 1)) {
    layers.push({ mark: { type: 'rule', strokeWidth: 1.5 }, encoding: { x, y: { field: 'lossMin', type: 'quantitative', title: yTitle }, y2: { field: 'lossMax' }, stroke: bandColor(color) } });
  }
  layers.push({ mark: { type: 'line', point: { filled: true, size: 40 } }, encoding: { x, y, color } });
  layers.push({
    transform: [{ filter: 'datum.best' }],
    mark: { type: 'point', shape: 'diamond', size: 260, filled: false, strokeWidth: 2.5 },
    encoding: { x, y, color: { ...color, legend: null } },
  });
  layers.push({
    transform: [{ filter: 'datum.best' }, { calculate: "'best: ' + datum.size", as: 'label' }],
    mark: { type: 'text', dy: -14, fontSize: 10, fontWeight: 'bold' },
    encoding: { x, y, text: { field: 'label' }, color: { ...color, legend: null } },
  });
  const title = 'IsoFLOP view: final validation loss vs model size';
  const description = 'Final pretraining validation loss against parameter count (log scale), one line per budget; the diamond marks the best size of each budget.';
  return [{ name: 'isoflop', title, description, xTitle, yTitle, spec: chart(title, description, values, layers) }];
}

function quantPlot(data: ReportData, groups: CellGroup[]): PlotSpec[] {
  const quant = groups.filter((g) => g.method === 'quant');
  if (quant.length === 0) return [];
  const gran = (g: CellGroup): string => (g.granularity ? `per ${g.granularity}` : 'quantized');
  const granularities = [...new Set(quant.map(gran))];
  const values: Json[] = [];
  for (const g of quant) values.push({ ...cellRow(data, g, 'total'), granularity: gran(g) });
  // the uncompressed cell starts every line
  for (const g of groups.filter((x) => x.method === 'none' && quant.some((q) => q.sizeId === x.sizeId && q.budgetId === x.budgetId))) {
    for (const gr of granularities) values.push({ ...cellRow(data, g, 'total'), granularity: gr });
  }
  const several = new Set(quant.map((g) => g.budgetId)).size > 1;
  const x = logBytesX('total', values);
  const color = sizeColor(data);
  const dash: Json = { field: 'granularity', type: 'nominal', title: 'granularity', sort: granularities };
  const layers: Json[] = [];
  if (multiSeed(groups)) layers.push(errorBars(x, color));
  layers.push({ mark: { type: 'line' }, encoding: { x, y: accY, color, strokeDash: dash } });
  layers.push({ mark: { type: 'point', filled: true, size: 30 }, encoding: { x, y: accY, color, detail: { field: 'granularity' } } });
  const title = 'Quantization: dev accuracy vs total bytes';
  const description = `Dev accuracy after fine-tuning and quantization against the real bytes of the compressed file (log scale), one line per size (dashes: granularity), starting at the uncompressed model${several ? '; one panel per budget' : ''}.`;
  return [
    {
      name: 'quant',
      title,
      description,
      xTitle: BYTES_TITLE.total,
      yTitle: DEV_TITLE,
      spec: chart(title, description, values, layers, several ? { column: { field: 'budget', sort: sortedBudgets(data).map(budgetLabel) } } : {}),
    },
  ];
}

function prunePlot(data: ReportData, groups: CellGroup[]): PlotSpec[] {
  const methods = (['prune-oneshot', 'prune-iterative'] as const).filter((m) => groups.some((g) => g.method === m));
  if (methods.length === 0) return [];
  const values: Json[] = [];
  for (const m of methods) {
    const pruned = groups.filter((g) => g.method === m);
    for (const g of pruned) values.push(cellRow(data, g, 'total'));
    for (const g of groups.filter((x) => x.method === 'none' && pruned.some((p) => p.sizeId === x.sizeId && p.budgetId === x.budgetId))) {
      values.push({ ...cellRow(data, g, 'total'), method: methodName(m) });
    }
  }
  const several = new Set(groups.filter((g) => g.method.startsWith('prune-')).map((g) => g.budgetId)).size > 1;
  const x = logBytesX('total', values);
  const color = sizeColor(data);
  const layers: Json[] = [];
  if (multiSeed(groups)) layers.push(errorBars(x, color));
  layers.push({ mark: { type: 'line', point: { filled: true, size: 30 } }, encoding: { x, y: accY, color } });
  const title = 'Pruning: dev accuracy vs total bytes';
  const description = `Dev accuracy after magnitude pruning against the real bytes of the sparse file (log scale), one line per size starting at the uncompressed model; one-shot and iterative pruning side by side${several ? ', one row per budget' : ''}.`;
  return [
    {
      name: 'prune',
      title,
      description,
      xTitle: BYTES_TITLE.total,
      yTitle: DEV_TITLE,
      spec: chart(title, description, values, layers, {
        column: { field: 'method', sort: methods.map(methodName) },
        ...(several ? { row: { field: 'budget', sort: sortedBudgets(data).map(budgetLabel) } } : {}),
      }),
    },
  ];
}

function pruneQuantPlot(data: ReportData, groups: CellGroup[]): PlotSpec[] {
  const pq = groups.filter((g) => g.method === 'prune+quant');
  if (pq.length === 0) return [];
  const bitsOf = (g: CellGroup): string => (g.bits !== undefined ? `${g.bits}-bit` : g.level);
  const bitsSort = [...new Set(pq.map(bitsOf))].sort((a, b) => parseFloat(b) - parseFloat(a) || a.localeCompare(b));
  const values = pq.map((g) => ({ ...cellRow(data, g, 'total'), bits: bitsOf(g) }));
  const several = new Set(pq.map((g) => g.budgetId)).size > 1;
  const x = logBytesX('total', values);
  const color = sizeColor(data);
  const layers: Json[] = [];
  if (multiSeed(pq)) layers.push(errorBars(x, color));
  layers.push({
    mark: { type: 'line' },
    encoding: { x, y: accY, color, strokeDash: { field: 'bits', type: 'nominal', title: 'bits', sort: bitsSort } },
  });
  layers.push({ mark: { type: 'point', filled: true, size: 30 }, encoding: { x, y: accY, color, detail: { field: 'bits' } } });
  const title = 'Pruning + quantization: dev accuracy vs total bytes';
  const description = `Dev accuracy of pruned-then-quantized models against the real bytes of the file (log scale), one line per size and bit width (dashes)${several ? '; one panel per budget' : ''}.`;
  return [
    {
      name: 'prune-quant',
      title,
      description,
      xTitle: BYTES_TITLE.total,
      yTitle: DEV_TITLE,
      spec: chart(title, description, values, layers, several ? { column: { field: 'budget', sort: sortedBudgets(data).map(budgetLabel) } } : {}),
    },
  ];
}

function frontierPlot(data: ReportData, groups: CellGroup[], view: BytesView): PlotSpec {
  const budgets = [...new Set(groups.map((g) => g.budgetId))];
  const front = new Set(budgets.flatMap((b) => paretoFront(groups.filter((g) => g.budgetId === b), view)).map((g) => g.key));
  const values = groups.map((g) => ({ ...cellRow(data, g, view), front: front.has(g.key) }));
  const several = budgets.length > 1;
  const x = logBytesX(view, values);
  const color = sizeColor(data);
  const shape: Json = { field: 'method', type: 'nominal', title: 'compression', sort: ['none', 'quant', 'prune-oneshot', 'prune-iterative', 'prune+quant'].map((m) => methodName(m as CellGroup['method'])) };
  const layers: Json[] = [];
  if (multiSeed(groups)) layers.push(errorBars(x, color));
  layers.push({
    transform: [{ filter: 'datum.front' }],
    mark: { type: 'line', interpolate: 'step-after', color: '#444', strokeWidth: 1.5 },
    encoding: { x, y: accY },
  });
  layers.push({
    mark: { type: 'point', filled: true, size: 45 },
    encoding: { x, y: accY, color, shape, opacity: { condition: { test: 'datum.front', value: 1 }, value: 0.35 } },
  });
  layers.push({
    transform: [{ filter: 'datum.front' }],
    mark: { type: 'point', filled: false, size: 140, color: '#222', strokeWidth: 1.2 },
    encoding: { x, y: accY },
  });
  const which = view === 'total' ? 'total' : 'non-embedding';
  const title = `Accuracy vs memory frontier (${which} bytes)`;
  const description = `Every compression cell's dev accuracy against its ${which} bytes (log scale), colored by size and shaped by method; the ringed points joined by the step line are the Pareto front (no other cell has fewer bytes and higher accuracy)${several ? '; one panel per budget' : ''}.`;
  return {
    name: view === 'total' ? 'frontier-total' : 'frontier-nonembedding',
    title,
    description,
    xTitle: BYTES_TITLE[view],
    yTitle: DEV_TITLE,
    spec: chart(title, description, values, layers, several ? { column: { field: 'budget', sort: sortedBudgets(data).map(budgetLabel) } } : {}),
  };
}

/**
 * Robustness to compression by size: the dev-accuracy drop against the uncompressed fine-tuned model
 * of the same size and seed (robustness.ts), against the compression level, a line per size, one
 * panel per variant (granularity; pruning method), one row per budget; with seeds a band over the
 * drops' spread. Quantization: x = bits, harsher (fewer bits) to the right; pruning: x = sparsity,
 * starting at 0 (the uncompressed model, drop 0).
 */
function robustnessPlots(data: ReportData): PlotSpec[] {
  const points = dropPoints(data);
  if (points.length === 0) return [];
  const sizes = new Map(data.sizes.map((s) => [s.id, s]));
  const budgets = new Map(data.budgets.map((b) => [b.id, b]));
  const budgetSort = sortedBudgets(data).map(budgetLabel);
  const color = sizeColor(data);
  const yTitle = 'dev accuracy drop (points)';
  const out: PlotSpec[] = [];
  for (const axis of ['bits', 'sparsity'] as const) {
    const fams = FAMILIES.filter((f) => f.axis === axis && points.some((p) => p.family === f.id));
    if (fams.length === 0) continue;
    const values: Json[] = [];
    for (const f of fams) {
      const mine = points.filter((p) => p.family === f.id);
      for (const p of mine) {
        const iv = spreadInterval(p.drop);
        const size = sizeLabel(sizes.get(p.sizeId)!);
        values.push({ size, sizeBand: size, budget: budgetLabel(budgets.get(p.budgetId)!), variant: f.label, level: p.level, drop: p.drop.mean * 100, dropLo: iv.lo * 100, dropHi: iv.hi * 100, n: p.drop.n });
      }
      if (axis === 'sparsity') {
        // sparsity 0: the uncompressed model itself, drop 0
        for (const key of new Set(mine.map((p) => `${p.budgetId}\u0000${p.sizeId}`))) {
          const [budgetId, sizeId] = key.split('\u0000') as [string, string];
          const size = sizeLabel(sizes.get(sizeId)!);
          values.push({ size, sizeBand: size, budget: budgetLabel(budgets.get(budgetId)!), variant: f.label, level: 0, drop: 0, dropLo: 0, dropHi: 0, n: 1 });
        }
      }
    }
    const several = new Set(values.map((v) => v.budget)).size > 1;
    const xTitle = axis === 'bits' ? 'bits per weight (fewer = harsher)' : 'sparsity (fraction of weights pruned)';
    const levels = [...new Set(values.map((v) => v.level as number))].sort((a, b) => a - b);
    const x: Json =
      axis === 'bits'
        ? { field: 'level', type: 'quantitative', title: xTitle, scale: { reverse: true, zero: false, domain: [Math.max(...levels) + 0.5, Math.min(...levels) - 0.5] }, axis: { values: levels, format: 'd' } }
        : { field: 'level', type: 'quantitative', title: xTitle, scale: { domain: [0, 1] }, axis: { values: levels, format: '.2~f' } };
    const y: Json = { field: 'drop', type: 'quantitative', title: yTitle, scale: { zero: true } };
    const layers: Json[] = [];
    const band = points.some((p) => p.drop.n > 1);
    if (band) layers.push({ mark: { type: 'area', opacity: 0.2 }, encoding: { x, y: { field: 'dropLo', type: 'quantitative', title: yTitle }, y2: { field: 'dropHi' }, fill: bandColor(color) } });
    layers.push({ mark: { type: 'line', point: { filled: true, size: 30 } }, encoding: { x, y, color } });
    const what = axis === 'bits' ? 'quantization' : 'pruning';
    const title = `Robustness to ${what}: accuracy drop by model size`;
    const description = `Dev accuracy lost by ${what} against the uncompressed fine-tuned model of the same size${band ? ' and seed' : ''} (percentage points), against ${axis === 'bits' ? 'the bits per weight (harsher to the right)' : 'the sparsity'}, one line per size, one panel per ${axis === 'bits' ? 'granularity' : 'pruning method'}${several ? ', one row per budget' : ''}${band ? `; mean over seeds with a band over the spread (${SPREAD_NOTE})` : ''}. A lower line is a more robust size.`;
    out.push({
      name: axis === 'bits' ? 'robustness-quant' : 'robustness-prune',
      title,
      description,
      xTitle,
      yTitle,
      spec: chart(title, description, values, layers, {
        column: { field: 'variant', sort: fams.map((f) => f.label) },
        ...(several ? { row: { field: 'budget', sort: budgetSort } } : {}),
      }),
    });
  }
  return out;
}

export const HEADLINE_PLOT = 'accuracy-vs-bytes';

/**
 * The report's headline: dev accuracy against bytes, one line per size, in both bytes views side by
 * side (a row per budget). Each size's line is its own accuracy-vs-memory front (the cells of that
 * size that no other cell of the size beats with fewer bytes), drawn as a step: read at x, it is the
 * best dev accuracy the size reaches within x bytes. Where the lines cross, the winning size changes.
 */
function headlinePlot(data: ReportData, groups: CellGroup[]): PlotSpec[] {
  if (groups.length === 0) return [];
  const values: Json[] = [];
  const budgetIds = sortedBudgets(data).map((b) => b.id).filter((id) => groups.some((g) => g.budgetId === id));
  for (const view of BYTES_VIEWS) {
    for (const b of budgetIds) {
      for (const s of sortedSizes(data)) {
        const own = groups.filter((g) => g.budgetId === b && g.sizeId === s.id);
        for (const g of paretoFront(own, view)) values.push({ ...cellRow(data, g, view), view: VIEW_NAMES[view] });
      }
    }
  }
  const several = budgetIds.length > 1;
  const xTitle = 'bytes (log scale)';
  // one x scale per bytes view: padding (in pixels) instead of a fixed domain keeps the panels independent
  const x: Json = { field: 'bytes', type: 'quantitative', title: xTitle, scale: { type: 'log', nice: false, padding: 14 }, axis: { format: '.3~s', labelOverlap: 'greedy', labelSeparation: 6 } };
  const color = sizeColor(data);
  const layers: Json[] = [];
  if (multiSeed(groups)) layers.push(errorBars(x, color));
  layers.push({ mark: { type: 'line', interpolate: 'step-after', strokeWidth: 2 }, encoding: { x, y: accY, color } });
  layers.push({ mark: { type: 'point', filled: true, size: 36 }, encoding: { x, y: accY, color } });
  const title = 'Dev accuracy vs memory: the best each size reaches within a memory budget';
  const description = `Dev accuracy against bytes (log scale), one line per model size, in total bytes (left) and non-embedding bytes (right)${several ? ', one row per budget' : ''}: each line is that size’s best cells (none of its other cells is smaller and more accurate), so read at x it is the best the size reaches within x bytes; where the lines cross, the winning size changes.`;
  const spec = chart(title, description, values, layers, {
    column: { field: 'view', sort: BYTES_VIEWS.map((v) => VIEW_NAMES[v]) },
    ...(several ? { row: { field: 'budget', sort: sortedBudgets(data).filter((b) => budgetIds.includes(b.id)).map(budgetLabel) } } : {}),
    independentX: true,
    panel: { width: 340, height: several ? 170 : 230 },
  });
  return [{ name: HEADLINE_PLOT, title, description, xTitle, yTitle: DEV_TITLE, spec }];
}

/** Every plot the data allows, in report order (plots without data are left out); the headline first. */
export function plotSpecs(data: ReportData): PlotSpec[] {
  const groups = groupCells(data);
  return [
    ...headlinePlot(data, groups),
    ...curvePlots(data),
    ...isoflopPlot(data),
    ...quantPlot(data, groups),
    ...prunePlot(data, groups),
    ...pruneQuantPlot(data, groups),
    ...robustnessPlots(data),
    ...(groups.length ? [frontierPlot(data, groups, 'total'), frontierPlot(data, groups, 'nonEmbedding')] : []),
  ];
}

// ---------------------------------------------------------------------------------------------
// rendering

/** Collects Vega-Lite and Vega warnings and errors instead of printing them. */
class CollectingLogger {
  messages: string[] = [];
  #level = 0;
  level(): number;
  level(l: number): this;
  level(l?: number): number | this {
    if (l === undefined) return this.#level;
    this.#level = l;
    return this;
  }
  error(...args: unknown[]): this {
    this.messages.push(`error: ${args.map(String).join(' ')}`);
    return this;
  }
  warn(...args: unknown[]): this {
    this.messages.push(`warning: ${args.map(String).join(' ')}`);
    return this;
  }
  info(): this {
    return this;
  }
  debug(): this {
    return this;
  }
}

/** Thrown when Vega-Lite or Vega reports a problem with a spec. */
export const PlotError = codedError('PlotError', 'TTC_ERR_REPORT');
export type PlotError = InstanceType<typeof PlotError>;

/**
 * Makes the SVG's ids unique to this plot (Vega numbers clip paths from a process-wide counter,
 * so two SVGs inlined in one HTML page could otherwise share ids).
 */
function prefixIds(svg: string, prefix: string): string {
  const ids = new Set([...svg.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!));
  let out = svg;
  for (const id of ids) {
    const esc = id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    out = out
      .replace(new RegExp(`(\\sid=")${esc}"`, 'g'), `$1${prefix}-${id}"`)
      .replace(new RegExp(`url\\(#${esc}\\)`, 'g'), `url(#${prefix}-${id})`)
      .replace(new RegExp(`(href=")#${esc}"`, 'g'), `$1#${prefix}-${id}"`);
  }
  return out;
}

function makeView(spec: TopLevelSpec): { view: vega.View; logger: CollectingLogger } {
  const logger = new CollectingLogger();
  const compiled = vl.compile(spec, { logger }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logger: logger as unknown as vega.LoggerInterface });
  return { view, logger };
}

function check(logger: CollectingLogger, what: string): void {
  if (logger.messages.length > 0) throw new PlotError(`${what}: ${logger.messages.join('; ')}`);
}

/** Renders a Vega-Lite spec to a standalone SVG string (Vega's own asynchronous path). */
export async function renderSvg(spec: TopLevelSpec, idPrefix = 'plot'): Promise<string> {
  const { view, logger } = makeView(spec);
  try {
    vega.resetSVGDefIds();
    const svg = await view.toSVG();
    check(logger, `plot ${idPrefix}`);
    return prefixIds(svg, idPrefix);
  } finally {
    view.finalize();
  }
}

/**
 * The same as renderSvg, synchronously. With inline data Vega evaluates the whole dataflow within
 * `run()`, so the scenegraph can be handed to the headless SVG renderer at once; this mirrors what
 * `view.toSVG()` does (tests check that both give byte-identical SVG for every plot).
 */
export function renderSvgSync(spec: TopLevelSpec, idPrefix = 'plot'): string {
  const { view, logger } = makeView(spec);
  try {
    view.run();
    const v = view as unknown as { _pulse: unknown; _pending: unknown; _viewWidth: number; _viewHeight: number; _origin: [number, number]; _scenegraph: { root: unknown } };
    if (v._pulse || v._pending) throw new PlotError(`plot ${idPrefix}: the Vega dataflow did not finish synchronously; use renderSvg`);
    check(logger, `plot ${idPrefix}`);
    const pad = view.padding() as { left: number; right: number; top: number; bottom: number };
    const width = Math.max(0, v._viewWidth + pad.left + pad.right);
    const height = Math.max(0, v._viewHeight + pad.top + pad.bottom);
    const Renderer = (vega.renderModule as unknown as (name: string) => { headless: unknown })('svg').headless as new (loader: unknown) => {
      initialize(el: null, w: number, h: number, origin: [number, number], scaleFactor: number): { background(bg: unknown): { render(root: unknown): { svg(): string } } };
    };
    vega.resetSVGDefIds();
    const svg = new Renderer(view.loader())
      .initialize(null, width, height, [pad.left + v._origin[0], pad.top + v._origin[1]], 1)
      .background(view.background())
      .render(v._scenegraph.root)
      .svg();
    if (!svg.startsWith('<svg')) throw new PlotError(`plot ${idPrefix}: the renderer produced no SVG`);
    return prefixIds(svg, idPrefix);
  } finally {
    view.finalize();
  }
}

/** Every plot of the data, rendered (synchronously). */
export function renderPlots(data: ReportData): RenderedPlot[] {
  return plotSpecs(data).map((p) => ({ ...p, svg: renderSvgSync(p.spec, p.name) }));
}

/** Every plot of the data, rendered with Vega's asynchronous toSVG. */
export async function renderPlotsAsync(data: ReportData): Promise<RenderedPlot[]> {
  const out: RenderedPlot[] = [];
  for (const p of plotSpecs(data)) out.push({ ...p, svg: await renderSvg(p.spec, p.name) });
  return out;
}
