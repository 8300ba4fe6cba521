/**
 * Plots of the compute-optimal fits (fits.ts), as Vega-Lite specs in the conventions of plots.ts
 * (one inline data set per spec, layers that filter it, PlotSpec with name, title, description and
 * axis titles; render them with plots.ts's renderSvg / renderSvgSync):
 *
 *   isoflop-fit              final loss vs parameters (log x), per budget: the measured means with
 *                            their spread (error bars: stats.ts spreadInterval), the fitted parabola,
 *                            and N_opt as a diamond with its ±z se interval (open when extrapolated)
 *   nopt-vs-flops / -seconds N_opt vs budget (log–log): the fitted optima with their intervals, the
 *                            budgets whose optimum lies at or beyond an end of the sizes (triangles),
 *                            the fitted power law (solid within the budgets run, dashed beyond), the
 *                            measured sizes as dotted rules, and where a larger size starts to win
 *
 * Pure functions of the fits; nothing here renders.
 */
import type { TopLevelSpec } from 'vega-lite';
import { budgetLabel, fmtParams } from './aggregate.ts';
import { parabolaAt, powerLawAt, type KindFit, type ReportFits } from './fits.ts';
import { chart, type PlotSpec } from './plots.ts';
import { spreadInterval } from './stats.ts';

type Json = Record<string, unknown>;

/** The fit plots' panels are a little larger than the measured plots' (their labels need room). */
const FIT_PANEL = { panel: { width: 360, height: 240 } };

function logAxis(field: string, title: string, domain: [number, number]): Json {
  return { field, type: 'quantitative', title, scale: { type: 'log', nice: false, domain }, axis: { format: '~s', labelOverlap: 'greedy', labelSeparation: 6 } };
}

const clampTo = (v: number, [lo, hi]: [number, number]): number => Math.min(hi, Math.max(lo, v));

/** [min/pad, max·pad] of the positive values */
function paddedDomain(xs: number[], pad: number): [number, number] {
  const pos = xs.filter((x) => x > 0 && Number.isFinite(x));
  if (pos.length === 0) return [1, 10];
  return [Math.min(...pos) / pad, Math.max(...pos) * pad];
}

/** log-spaced samples over a domain */
function logSpace([lo, hi]: [number, number], n: number): number[] {
  const a = Math.log(lo);
  const b = Math.log(hi);
  return Array.from({ length: n }, (_, i) => Math.exp(a + ((b - a) * i) / (n - 1)));
}

/** an optimum this far beyond the measured sizes is left off the plot's x range (its point is still listed in the description) */
const MAX_REACH = 100;

// ---------------------------------------------------------------------------------------------

/** The IsoFLOP fits of every budget in one panel; null when no budget has a point. */
export function isoflopFitPlot(fits: ReportFits): PlotSpec | null {
  const budgets = fits.perBudget.filter((b) => b.fit.points.length > 0);
  if (budgets.length === 0) return null;
  const measured = budgets.flatMap((b) => b.fit.points.map((p) => p.params));
  const near = paddedDomain(measured, MAX_REACH);
  const optima = budgets.flatMap((b) => (b.fit.status === 'optimum' && b.fit.optimum.params >= near[0] && b.fit.optimum.params <= near[1] ? [b.fit.optimum.params] : []));
  const xDomain = paddedDomain([...measured, ...optima], 1.4);
  const values: Json[] = [];
  const ys: number[] = [];
  for (const b of budgets) {
    const budget = budgetLabel(b.budget);
    for (const p of b.fit.points) {
      const iv = spreadInterval(p.loss);
      values.push({ kind: 'point', budget, budgetBand: budget, size: p.id ?? fmtParams(p.params), params: p.params, loss: p.loss.mean, lossLo: iv.lo, lossHi: iv.hi, n: p.loss.n });
      ys.push(iv.lo, iv.hi);
    }
    if (b.fit.status === 'optimum' || b.fit.status === 'edge') {
      for (const x of logSpace(xDomain, 60)) values.push({ kind: 'fit', budget, budgetBand: budget, params: x, loss: parabolaAt(b.fit.parabola, x) });
    }
    if (b.fit.status === 'optimum' && b.fit.optimum.params >= xDomain[0] && b.fit.optimum.params <= xDomain[1]) {
      const o = b.fit.optimum;
      values.push({
        kind: 'opt',
        budget,
        budgetBand: budget,
        params: o.params,
        loss: o.loss,
        ...(o.interval ? { optLo: clampTo(o.interval[0], xDomain), optHi: clampTo(o.interval[1], xDomain) } : {}),
        extrapolated: o.extrapolated,
        label: `N_opt ${fmtParams(o.params)}${o.extrapolated ? ' (extrapolated)' : ''}`,
      });
      ys.push(o.loss);
    }
  }
  const ySpan = Math.max(...ys) - Math.min(...ys);
  const yPad = ySpan > 0 ? ySpan * 0.15 : Math.max(1e-3, Math.abs(ys[0]!) * 0.05);
  const yDomain = [Math.min(...ys) - yPad, Math.max(...ys) + yPad];
  const xTitle = 'parameters (log scale)';
  const yTitle = 'final validation loss';
  const x = logAxis('params', xTitle, xDomain);
  const y: Json = { field: 'loss', type: 'quantitative', title: yTitle, scale: { zero: false, domain: yDomain } };
  const color: Json = { field: 'budget', type: 'nominal', title: 'budget', scale: { domain: budgets.map((b) => budgetLabel(b.budget)) } };
  const noLegend: Json = { ...color, field: 'budgetBand', legend: null };
  const layers: Json[] = [];
  if (values.some((v) => v.kind === 'point' && (v.n as number) > 1)) {
    layers.push({
      transform: [{ filter: "datum.kind === 'point' && datum.n > 1" }],
      mark: { type: 'rule', strokeWidth: 1.5 },
      encoding: { x, y: { field: 'lossLo', type: 'quantitative', title: yTitle, scale: { zero: false, domain: yDomain } }, y2: { field: 'lossHi' }, stroke: noLegend },
    });
  }
  layers.push({ transform: [{ filter: "datum.kind === 'fit'" }], mark: { type: 'line', clip: true, strokeWidth: 1.5, opacity: 0.8 }, encoding: { x, y, color } });
  layers.push({ transform: [{ filter: "datum.kind === 'point'" }], mark: { type: 'point', filled: true, size: 40 }, encoding: { x, y, color } });
  if (values.some((v) => v.kind === 'opt' && v.optLo !== undefined)) {
    layers.push({
      transform: [{ filter: "datum.kind === 'opt' && isValid(datum.optLo)" }],
      mark: { type: 'rule', strokeWidth: 2.5, opacity: 0.6 },
      encoding: { x: { ...x, field: 'optLo' }, x2: { field: 'optHi' }, y, stroke: noLegend },
    });
  }
  if (values.some((v) => v.kind === 'opt')) {
    layers.push({
      transform: [{ filter: "datum.kind === 'opt'" }],
      mark: { type: 'point', shape: 'diamond', size: 220, strokeWidth: 2.5 },
      encoding: { x, y, stroke: noLegend, fill: { condition: { test: 'datum.extrapolated', value: 'white' }, ...noLegend } },
    });
    layers.push({
      transform: [{ filter: "datum.kind === 'opt'" }],
      mark: { type: 'text', dy: -14, fontSize: 10, fontWeight: 'bold' },
      // the same field as the points' color: one scale and one legend (legend: null here would hide it)
      encoding: { x, y, text: { field: 'label' }, color },
    });
  }
  const z = budgets.find((b) => b.fit.status === 'optimum')?.fit;
  const zText = z && z.status === 'optimum' ? `±${z.optimum.z} standard errors` : 'its interval';
  const title = 'Compute-optimal size per budget: IsoFLOP fits';
  const description = `Final validation loss against parameter count (log scale) per budget: measured means${values.some((v) => (v.n as number) > 1) ? ' with their spread over seeds' : ''}, the fitted parabola in log N, and the fitted optimum N_opt (diamond, open when extrapolated beyond the sizes measured) with ${zText}.`;
  return { name: 'isoflop-fit', title, description, xTitle, yTitle, spec: chart(title, description, values, layers) };
}

/** N_opt against the budget for one budget kind; null when no budget of that kind has a fitted optimum or an edge. */
export function nOptPlot(kf: KindFit, fits: ReportFits): PlotSpec | null {
  const budgets = fits.perBudget.filter((b) => b.budget.kind === kf.kind);
  const withOpt = budgets.filter((b) => b.fit.status === 'optimum');
  const edges = budgets.filter((b) => b.fit.status === 'edge');
  if (withOpt.length + edges.length === 0) return null;
  const sizes = new Map<number, string>();
  for (const b of budgets) for (const p of b.fit.points) sizes.set(p.params, p.id ?? fmtParams(p.params));
  const sizeParams = [...sizes.keys()].sort((a, b) => a - b);
  const lw = kf.largerWins;
  const cross = lw && lw.estimate.budget !== null ? lw.estimate.budget : null;
  const cs = budgets.map((b) => b.budget.value);
  const cReach = paddedDomain(cs, 1e4);
  const xDomain = paddedDomain([...cs, ...(cross !== null && cross >= cReach[0] && cross <= cReach[1] ? [cross] : [])], 1.6);
  const yNear = paddedDomain(sizeParams, MAX_REACH);
  const optParams = withOpt.map((b) => (b.fit.status === 'optimum' ? b.fit.optimum.params : 0)).filter((p) => p >= yNear[0] && p <= yNear[1]);
  const yDomain = paddedDomain([...sizeParams, ...optParams, ...(lw ? [lw.crossoverParams, lw.larger.params] : [])], 1.6);
  const values: Json[] = [];
  for (const b of withOpt) {
    if (b.fit.status !== 'optimum') continue;
    const o = b.fit.optimum;
    if (o.params < yDomain[0] || o.params > yDomain[1]) continue;
    values.push({
      kind: 'opt',
      budgetId: b.budget.id,
      budget: b.budget.value,
      nopt: o.params,
      ...(o.interval ? { lo: clampTo(o.interval[0], yDomain), hi: clampTo(o.interval[1], yDomain) } : {}),
      what: o.extrapolated ? 'fitted N_opt (extrapolated)' : 'fitted N_opt',
    });
  }
  for (const b of edges) {
    if (b.fit.status !== 'edge' || !b.fit.range) continue;
    const largest = b.fit.side === 'largest';
    values.push({ kind: 'edge', budgetId: b.budget.id, budget: b.budget.value, nopt: largest ? b.fit.range[1] : b.fit.range[0], what: largest ? 'N_opt ≥ largest size' : 'N_opt ≤ smallest size' });
  }
  const law = kf.law;
  if (law.status === 'fit' && law.range) {
    const [c0, c1] = law.range;
    const seg = (from: number, to: number, segment: string): void => {
      for (const c of [from, to]) values.push({ kind: 'law', budget: c, nopt: powerLawAt(law, c)!, segment, seg: `${segment}:${from}` });
    };
    seg(c0, c1, 'fit, within the budgets run');
    const lo = Math.max(xDomain[0], Math.min(c0 / 3, cross ?? Infinity));
    const hi = Math.min(xDomain[1], Math.max(c1 * 3, cross ?? 0));
    if (lo < c0) seg(lo, c0, 'fit, extrapolated');
    if (hi > c1) seg(c1, hi, 'fit, extrapolated');
  }
  for (const p of sizeParams) if (p >= yDomain[0] && p <= yDomain[1]) values.push({ kind: 'size', nopt: p, label: sizes.get(p)! });
  if (lw && cross !== null && cross >= xDomain[0] && cross <= xDomain[1]) {
    const larger = lw.larger.id ?? `${fmtParams(lw.larger.params)} (hypothetical)`;
    values.push({ kind: 'cross', budget: cross, nopt: lw.crossoverParams, label: `${larger} beats ${lw.smaller.id ?? fmtParams(lw.smaller.params)} from here (${lw.estimate.basis})` });
  }
  const unit = kf.kind === 'flops' ? 'training FLOPs' : 'training seconds';
  const xTitle = `${unit} (log scale)`;
  const yTitle = 'compute-optimal parameters N_opt (log scale)';
  const x = logAxis('budget', xTitle, xDomain);
  const y = logAxis('nopt', yTitle, yDomain);
  const layers: Json[] = [];
  layers.push({ transform: [{ filter: "datum.kind === 'size'" }], mark: { type: 'rule', strokeDash: [2, 3], color: '#999' }, encoding: { y } });
  layers.push({ transform: [{ filter: "datum.kind === 'size'" }], mark: { type: 'text', align: 'left', dx: 3, dy: -6, fontSize: 9, color: '#666' }, encoding: { y, x: { datum: xDomain[0] }, text: { field: 'label' } } });
  if (values.some((v) => v.kind === 'law')) {
    layers.push({
      transform: [{ filter: "datum.kind === 'law'" }],
      mark: { type: 'line', color: '#333', strokeWidth: 1.5 },
      encoding: {
        x,
        y,
        detail: { field: 'seg' },
        strokeDash: { field: 'segment', type: 'nominal', title: 'power law', sort: ['fit, within the budgets run', 'fit, extrapolated'], scale: { domain: ['fit, within the budgets run', 'fit, extrapolated'], range: [[1, 0], [5, 4]] } },
      },
    });
  }
  if (values.some((v) => v.kind === 'opt' && v.lo !== undefined)) {
    layers.push({ transform: [{ filter: "datum.kind === 'opt' && isValid(datum.lo)" }], mark: { type: 'rule', strokeWidth: 1.5, color: '#1f77b4' }, encoding: { x, y: { ...y, field: 'lo' }, y2: { field: 'hi' } } });
  }
  const whatDomain = ['fitted N_opt', 'fitted N_opt (extrapolated)', 'N_opt ≥ largest size', 'N_opt ≤ smallest size'];
  layers.push({
    transform: [{ filter: "datum.kind === 'opt' || datum.kind === 'edge'" }],
    mark: { type: 'point', size: 80, strokeWidth: 2, color: '#1f77b4' },
    encoding: {
      x,
      y,
      shape: { field: 'what', type: 'nominal', title: 'per budget', scale: { domain: whatDomain, range: ['circle', 'circle', 'triangle-up', 'triangle-down'] } },
      // shape and fill on one field make one legend (legend: null on either would hide both)
      fill: { field: 'what', type: 'nominal', scale: { domain: whatDomain, range: ['#1f77b4', 'white', '#1f77b4', '#1f77b4'] } },
    },
  });
  if (values.some((v) => v.kind === 'cross')) {
    layers.push({ transform: [{ filter: "datum.kind === 'cross'" }], mark: { type: 'point', shape: 'cross', size: 160, color: '#d62728', filled: true }, encoding: { x, y } });
    layers.push({ transform: [{ filter: "datum.kind === 'cross'" }], mark: { type: 'text', align: 'right', dx: -8, dy: -10, fontSize: 10, color: '#d62728' }, encoding: { x, y, text: { field: 'label' } } });
  }
  const name = kf.kind === 'flops' ? 'nopt-vs-flops' : 'nopt-vs-seconds';
  const title = `Compute-optimal size against the budget (${kf.kind === 'flops' ? 'FLOPs' : 'seconds'})`;
  const exponent = law.status === 'fit' && law.exponent !== null ? ` N_opt ∝ C^${law.exponent.toPrecision(3)}${law.exponentSe !== null ? ` ± ${law.exponentSe.toPrecision(2)}` : ''}` : '';
  const description = `The fitted compute-optimal parameter count of each budget against the budget (log–log) with its interval; triangles: budgets whose optimum is at or beyond an end of the sizes measured; the line: the fitted power law${exponent} (dashed where extrapolated); dotted: the sizes measured${lw && cross !== null ? '; the cross: where a larger size starts to win' : ''}.`;
  return { name, title, description, xTitle, yTitle, spec: chart(title, description, values, layers) };
}

/** Every fit plot the data allows: the IsoFLOP fits, then N_opt vs budget per budget kind. */
export function fitPlotSpecs(fits: ReportFits): PlotSpec[] {
  const out: PlotSpec[] = [];
  const iso = isoflopFitPlot(fits);
  if (iso) out.push(iso);
  for (const kf of fits.perKind) {
    const p = nOptPlot(kf, fits);
    if (p) out.push(p);
  }
  return out;
}
