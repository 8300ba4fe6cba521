/**
 * The fits in the report, on synthetic data with a known answer: the Vega-Lite specs of
 * report/fit-plots.ts have the expected layers and fields, compile without a warning and render
 * to SVG with their titles; the sentences of report/fit-conclusion.ts state the known optimum,
 * label extrapolations, tie what the spread cannot tell apart and label single runs.
 */
import test from 'ava';
import * as vl from 'vega-lite';
import { Rng } from '../../core/rng.ts';
import { fitConclusion, isoflopSentence, largerWinsSentence, powerLawSentence, rankingSentence } from '../../report/fit-conclusion.ts';
import { fitPlotSpecs, isoflopFitPlot, nOptPlot } from '../../report/fit-plots.ts';
import { fitReportData, largerWinsAt, type ReportFits } from '../../report/fits.ts';
import { renderSvgSync } from '../../report/plots.ts';
import { spreadInterval } from '../../report/stats.ts';
import type { Budget, Final, ReportData, Size } from '../../report/types.ts';

type Json = Record<string, unknown>;

/** loss(N, C) = 0.06·(ln N − ln N_opt(C))² + E(C), N_opt(C) = 0.02·√C: an exact IsoFLOP parabola per budget */
const nOptAt = (C: number): number => 2e-2 * Math.sqrt(C);
const lossAt = (n: number, C: number): number => 0.06 * (Math.log(n) - Math.log(nOptAt(C))) ** 2 + 2 + 50 / Math.log(C);

const SIZES: Size[] = [4e6, 8e6, 16e6, 32e6, 64e6].map((p, i) => ({ id: `s${i}`, layers: 2 + 2 * i, hidden: 128, heads: 2, ffn: 512, parameters: p, nonEmbeddingParameters: p / 2 }));

function report(budgets: Budget[], seeds = 1, noise = 0, loss: (n: number, b: Budget) => number = (n, b) => lossAt(n, b.value)): ReportData {
  const rng = new Rng(17);
  const finals: Final[] = [];
  for (const b of budgets) {
    for (const s of SIZES) {
      for (let seed = 1; seed <= seeds; seed++) {
        finals.push({ sizeId: s.id, budgetId: b.id, ...(seeds > 1 ? { seed } : {}), steps: 100, flops: b.value, seconds: 1, valLoss: loss(s.parameters, b) + noise * rng.normal() });
      }
    }
  }
  return { runId: 'fits', createdAt: '2025-01-01T00:00:00.000Z', budgets, sizes: SIZES, curves: [], finals, cells: [] };
}

const flops = (...values: number[]): Budget[] => values.map((value, i) => ({ id: `F${i + 1}`, kind: 'flops', value }));

function layersOf(spec: unknown): Json[] {
  return (spec as { layer: Json[] }).layer;
}
function valuesOf(spec: unknown): Json[] {
  return (spec as { data: { values: Json[] } }).data.values;
}
/** the layer whose first filter mentions `kind` and whose mark is `mark` */
function layer(spec: unknown, kind: string, mark: string): Json | undefined {
  return layersOf(spec).find((l) => {
    const m = typeof l.mark === 'string' ? l.mark : (l.mark as Json).type;
    const f = ((l.transform as Json[] | undefined) ?? []).map((t) => String(t.filter)).join(' ');
    return m === mark && f.includes(`'${kind}'`);
  });
}

function compileQuietly(spec: unknown): string[] {
  const messages: string[] = [];
  const logger = {
    level: function (this: unknown, l?: number) {
      return l === undefined ? 0 : this;
    },
    error: (...a: unknown[]) => messages.push(`error: ${a.join(' ')}`),
    warn: (...a: unknown[]) => messages.push(`warn: ${a.join(' ')}`),
    info: () => undefined,
    debug: () => undefined,
  };
  vl.compile(spec as vl.TopLevelSpec, { logger: logger as never });
  return messages;
}

function checkRenders(t: { true(v: boolean, m?: string): void; deepEqual(a: unknown, b: unknown, m?: string): void }, fits: ReportFits): void {
  for (const p of fitPlotSpecs(fits)) {
    t.deepEqual(compileQuietly(p.spec), [], `${p.name} compiles without a warning`);
    const svg = renderSvgSync(p.spec, p.name); // throws on any Vega-Lite or Vega warning
    t.true(svg.startsWith('<svg'), `${p.name} is an SVG`);
    for (const text of [p.title, p.xTitle, p.yTitle]) t.true(svg.includes(`>${text}</text>`), `${p.name}.svg shows "${text}"`);
  }
}

test('isoflop-fit: measured points with seed error bars, the fitted parabola, and N_opt with its interval at the known optimum', (t) => {
  const budgets = flops(1e16, 1e17, 1e18);
  const fits = fitReportData(report(budgets, 3, 0.004));
  const specs = fitPlotSpecs(fits);
  t.deepEqual(
    specs.map((p) => p.name),
    ['isoflop-fit', 'nopt-vs-flops'],
  );
  const iso = specs[0]!;
  t.is(iso.xTitle, 'parameters (log scale)');
  t.is(iso.yTitle, 'final validation loss');
  const values = valuesOf(iso.spec);
  // every measured (size, budget) is a point whose error bar is the stats.ts spread interval
  const points = values.filter((v) => v.kind === 'point');
  t.is(points.length, budgets.length * SIZES.length);
  for (const b of fits.perBudget) {
    for (const p of b.fit.points) {
      const v = points.find((x) => x.params === p.params && String(x.budget).startsWith(b.budget.id))!;
      const iv = spreadInterval(p.loss);
      t.deepEqual([v.loss, v.lossLo, v.lossHi, v.n], [p.loss.mean, iv.lo, iv.hi, 3]);
    }
  }
  // one fitted curve per budget, and one N_opt per budget near the true optimum (the first one extrapolated: 2M < 4M)
  t.is(new Set(values.filter((v) => v.kind === 'fit').map((v) => v.budget)).size, 3);
  const opts = values.filter((v) => v.kind === 'opt');
  t.is(opts.length, 3);
  budgets.forEach((b, i) => {
    const o = opts[i]!;
    t.true(Math.abs(Math.log(o.params as number) - Math.log(nOptAt(b.value))) < 0.15, `N_opt at ${b.id}: ${o.params}`);
    t.true((o.optLo as number) < (o.params as number) && (o.params as number) < (o.optHi as number));
  });
  t.deepEqual(
    opts.map((o) => o.extrapolated),
    [true, false, false],
  );
  t.regex(String(opts[0]!.label), /\(extrapolated\)$/);
  // the layers: error bars, fitted line, points, N_opt interval, N_opt diamond, label
  const bars = layer(iso.spec, 'point', 'rule')!;
  t.deepEqual([(bars.encoding as Json).y, (bars.encoding as Json).y2].map((e) => (e as Json).field), ['lossLo', 'lossHi']);
  t.truthy(layer(iso.spec, 'fit', 'line'));
  t.truthy(layer(iso.spec, 'point', 'point'));
  const interval = layer(iso.spec, 'opt', 'rule')!;
  t.deepEqual([(interval.encoding as Json).x, (interval.encoding as Json).x2].map((e) => (e as Json).field), ['optLo', 'optHi']);
  const diamond = layer(iso.spec, 'opt', 'point')!;
  t.is((diamond.mark as Json).shape, 'diamond');
  t.truthy(layer(iso.spec, 'opt', 'text'));
  t.is(((layersOf(iso.spec)[0]!.encoding as Json).x as Json & { scale: Json }).scale.type, 'log');
  checkRenders(t, fits);
  const svg = renderSvgSync(iso.spec, 'iso');
  t.true(svg.includes('role-legend'), 'the budget legend survives');
});

test('isoflop-fit without seeds: no error bars; N_opt without a known interval has no interval layer', (t) => {
  const fits = fitReportData(report(flops(1e17, 1e18)));
  const iso = isoflopFitPlot(fits)!;
  t.is(layer(iso.spec, 'point', 'rule'), undefined);
  t.truthy(layer(iso.spec, 'opt', 'point'));
  checkRenders(t, fits);
  // three sizes, one run each: the optimum is exact and its uncertainty unknown
  const three = report(flops(1e17));
  three.finals = three.finals.filter((f) => ['s0', 's2', 's4'].includes(f.sizeId));
  const f3 = fitReportData(three);
  const spec = isoflopFitPlot(f3)!;
  t.is(layer(spec.spec, 'opt', 'rule'), undefined);
  t.deepEqual(fitPlotSpecs(f3).map((p) => p.name), ['isoflop-fit', 'nopt-vs-flops']);
  checkRenders(t, f3);
});

test('nopt-vs-flops: fitted optima with intervals, the power law solid within the budgets and dashed beyond, sizes as rules, the crossover marked', (t) => {
  const budgets = flops(1e16, 1e17, 1e18);
  const fits = fitReportData(report(budgets, 3, 0.004));
  const kf = fits.perKind[0]!;
  const p = nOptPlot(kf, fits)!;
  t.is(p.name, 'nopt-vs-flops');
  t.is(p.xTitle, 'training FLOPs (log scale)');
  t.is(p.yTitle, 'compute-optimal parameters N_opt (log scale)');
  const values = valuesOf(p.spec);
  const opts = values.filter((v) => v.kind === 'opt');
  t.deepEqual(
    opts.map((v) => v.budget),
    [1e16, 1e17, 1e18],
  );
  t.deepEqual(
    opts.map((v) => v.what),
    ['fitted N_opt (extrapolated)', 'fitted N_opt', 'fitted N_opt'],
  );
  for (const o of opts) t.true((o.lo as number) < (o.nopt as number) && (o.nopt as number) < (o.hi as number));
  const law = values.filter((v) => v.kind === 'law');
  t.deepEqual([...new Set(law.map((v) => v.segment))].sort(), ['fit, extrapolated', 'fit, within the budgets run']);
  const within = law.filter((v) => v.segment === 'fit, within the budgets run');
  t.deepEqual(
    within.map((v) => v.budget),
    [1e16, 1e18],
  );
  t.deepEqual(
    values.filter((v) => v.kind === 'size').map((v) => v.label),
    ['s0', 's1', 's2', 's3', 's4'],
  );
  const cross = values.filter((v) => v.kind === 'cross');
  t.is(cross.length, 1);
  t.is(cross[0]!.budget, kf.largerWins!.estimate.budget);
  t.regex(String(cross[0]!.label), /^s3 beats s2 from here \(extrapolated\)$/);
  const line = layer(p.spec, 'law', 'line')!;
  t.is(((line.encoding as Json).strokeDash as Json).field, 'segment');
  t.truthy(layer(p.spec, 'opt', 'rule'), 'error bars on N_opt');
  t.truthy(layer(p.spec, 'size', 'rule'));
  t.truthy(layer(p.spec, 'cross', 'point'));
  const x = (line.encoding as Json).x as Json & { scale: Json };
  const y = (line.encoding as Json).y as Json & { scale: Json };
  t.deepEqual([x.scale.type, y.scale.type], ['log', 'log']);
  checkRenders(t, fits);
});

test('nopt plots: an edge budget is a triangle at the end size; FLOP and seconds budgets get a plot each; no data, no plot', (t) => {
  const budgets: Budget[] = [...flops(1e16, 1e17, 1e18), { id: 'S1', kind: 'seconds', value: 60 }, { id: 'S2', kind: 'seconds', value: 600 }, { id: 'S3', kind: 'seconds', value: 6000 }];
  // F3's losses fall straight in ln N: no interior minimum, the optimum at or beyond the largest size
  const data = report(budgets, 1, 0, (n, b) => (b.id === 'F3' ? 4 - 0.1 * Math.log(n) : b.kind === 'seconds' ? lossAt(n, b.value * 1e14) : lossAt(n, b.value)));
  const fits = fitReportData(data);
  t.is(fits.perBudget.find((b) => b.budget.id === 'F3')!.fit.status, 'edge');
  const specs = fitPlotSpecs(fits);
  t.deepEqual(
    specs.map((p) => p.name),
    ['isoflop-fit', 'nopt-vs-flops', 'nopt-vs-seconds'],
  );
  const edge = valuesOf(specs[1]!.spec).filter((v) => v.kind === 'edge');
  t.deepEqual(edge, [{ kind: 'edge', budgetId: 'F3', budget: 1e18, nopt: 64e6, what: 'N_opt ≥ largest size' }]);
  t.is(specs[2]!.xTitle, 'training seconds (log scale)');
  checkRenders(t, fits);
  t.deepEqual(fitPlotSpecs(fitReportData({ ...data, finals: [] })), []);
});

// ---------------------------------------------------------------------------------------------
// the sentences

test('the IsoFLOP sentence states the known optimum, its interval and whether it is extrapolated', (t) => {
  const fits = fitReportData(report(flops(1e16, 1e17), 1));
  const [below, inside] = fits.perBudget.map(isoflopSentence);
  // N_opt = 0.02·√C: 2M (below the smallest size, 4M) and 6.32M (inside)
  t.is(below, 'Budget F1 (1.0e16 FLOPs): the IsoFLOP parabola over 5 sizes puts the compute-optimal size at N_opt ≈ 2M parameters (±2 se: 2M–2M), below the smallest size measured (4M): extrapolated; fitted loss there 3.3572.');
  t.regex(inside!, /N_opt ≈ 6\.32M parameters .*, inside the sizes measured \(4M–64M\)/);
  // a ≤ 0, too few sizes, flat
  const falling = fitReportData(report(flops(1e17), 1, 0, (n) => 4 - 0.1 * Math.log(n)));
  t.is(isoflopSentence(falling.perBudget[0]!), 'Budget F1 (1.0e17 FLOPs): the IsoFLOP parabola over 5 sizes has no interior minimum: the optimum is at or beyond the largest size measured, s4 (64M).');
  const far = fitReportData(report(flops(1e17), 1, 0, (n) => 3 + 0.01 * (Math.log(n) - Math.log(1e13)) ** 2));
  t.is(isoflopSentence(far.perBudget[0]!), 'Budget F1 (1.0e17 FLOPs): the IsoFLOP parabola over 5 sizes bends too little to place a minimum (it would be at ≈ 10T, more than the measured range again beyond the largest size): the optimum is at or beyond the largest size measured, s4 (64M).');
  const two = report(flops(1e17));
  two.finals = two.finals.filter((f) => f.sizeId === 's0' || f.sizeId === 's1');
  t.is(isoflopSentence(fitReportData(two).perBudget[0]!), 'Budget F1 (1.0e17 FLOPs): no IsoFLOP fit (a parabola needs at least 3 distinct sizes with a finite loss, got 2).');
  t.regex(isoflopSentence(fitReportData(report(flops(1e17), 1, 0, () => 3)).perBudget[0]!), /every size reached the same mean final loss \(3\.0000\)/);
  const three = report(flops(1e17));
  three.finals = three.finals.filter((f) => ['s0', 's2', 's4'].includes(f.sizeId));
  t.regex(isoflopSentence(fitReportData(three).perBudget[0]!), /uncertainty unknown: a parabola through 3 sizes with one run each fits exactly/);
});

test('the ranking sentence ties sizes whose spreads overlap and labels single runs', (t) => {
  const b = flops(1e17);
  const vals: Record<string, number[]> = { s0: [3.5, 3.52, 3.54], s1: [3.0, 3.1, 3.2], s2: [3.05, 3.15, 3.25], s3: [3.6, 3.61, 3.62], s4: [4.0, 4.01, 4.02] };
  const data: ReportData = { ...report(b), finals: SIZES.flatMap((s) => vals[s.id]!.map((valLoss, i) => ({ sizeId: s.id, budgetId: 'F1', seed: i + 1, steps: 1, flops: 1, seconds: 1, valLoss }))) };
  const sentence = rankingSentence(fitReportData(data).perBudget[0]!);
  t.is(
    sentence,
    'Budget F1 (1.0e17 FLOPs), by final validation loss over 3 seeds: s1 (3.1000) and s2 (3.1500), not distinguishable; then s0 (3.5200); then s3 (3.6100); then s4 (4.0100). Sizes whose spreads (mean ± 1 sd with 3 or more seeds) overlap are not ranked against each other.',
  );
  const single = rankingSentence(fitReportData(report(b)).perBudget[0]!);
  t.regex(single, /^Budget F1 \(1\.0e17 FLOPs\), by final validation loss: s1 \(\d\.\d{4}\); then s0 \(\d\.\d{4}\); then s2 .* \(single run, spread unknown: the order may be noise\)\.$/);
  const allTied = rankingSentence(fitReportData({ ...data, finals: data.finals.map((f) => ({ ...f, valLoss: 3 + (f.seed! - 2) * 0.5 + (f.sizeId === 's0' ? 0.01 : 0) })) }).perBudget[0]!);
  t.regex(allTied, /s1 \(3\.0000\), s2 \(3\.0000\), s3 \(3\.0000\), s4 \(3\.0000\) and s0 \(3\.0100\) are not distinguishable: their spreads \(mean ± 1 sd with 3 or more seeds\) overlap\.$/);
  const apart = rankingSentence(fitReportData(report(b, 2, 0.0001)).perBudget[0]!);
  t.regex(apart, /over 2 seeds: .*\. No two spreads \(min–max with 2 seeds\) overlap, so the order holds\.$/);
});

test('the power-law and larger-size sentences: the exponent, and the crossover budget labelled measured or extrapolated', (t) => {
  const fits = fitReportData(report(flops(1e16, 1e17, 1e18)));
  const kf = fits.perKind[0]!;
  t.regex(powerLawSentence(kf, fits), /^Across the 3 FLOP budgets with a fitted optimum, N_opt ∝ C\^0\.500 ± [\d.e-]+ \(1 se, from the (residuals|N_opt uncertainties)\): from 2M at 1\.0e16 FLOPs to 20M at 1\.0e18 FLOPs; the compute-optimal size grows with the budget\.$/);
  // at 1e18 N_opt = 20M: s2 (16M) is best, s3 (32M) wins once N_opt passes √(16M·32M) = 22.6M, at 1.28e18: beyond the budgets run
  const lw = largerWinsSentence(kf, fits)!;
  t.regex(lw, /^At the largest FLOP budget run \(1\.0e18 FLOPs\) s2 \(16M\) reached the lowest mean loss; the next larger size, s3 \(32M\), would start to reach a lower loss from about 1\.3e18 FLOPs/);
  t.regex(lw, /passes 22\.6M, midway between the two in log N \(beyond the largest budget run: extrapolated\)\.$/);
  // the same law asked about s0 → s1 (crossover at N_opt = 5.66M, C = 8e16): within the budgets run
  const measured = { ...kf, largerWins: largerWinsAt(kf.law, { params: 4e6, id: 's0' }, { params: 8e6, id: 's1' }) };
  t.regex(largerWinsSentence(measured, fits)!, /from about 8\.0e16 FLOPs.*\(measured: within the budgets run\); yet at 1\.0e18 FLOPs the smaller one still reached the lower mean loss/);
  // a shrinking optimum: never
  const shrinking = fitReportData(report(flops(1e16, 1e17), 1, 0, (n, b) => lossAt(n, 1e34 / b.value)));
  const never = largerWinsSentence(shrinking.perKind[0]!, shrinking)!;
  t.regex(never, /would not overtake it on this trend \(N_opt does not grow with the budget on this fit/);
  t.regex(powerLawSentence(shrinking.perKind[0]!, shrinking), /does not grow with the budget on this data/);
  // one budget: no law, and it says why; excluded budgets are named
  const one = fitReportData(report(flops(1e17)));
  t.is(powerLawSentence(one.perKind[0]!, one), 'Across the FLOP budgets: no power law for N_opt (a power law needs optima at 2 or more distinct budgets, got 1).');
  t.is(largerWinsSentence(one.perKind[0]!, one), null);
  const withEdge = fitReportData(report(flops(1e16, 1e17, 1e18), 1, 0, (n, b) => (b.id === 'F3' ? 4 - 0.1 * Math.log(n) : lossAt(n, b.value))));
  t.regex(powerLawSentence(withEdge.perKind[0]!, withEdge), /Across the 2 FLOP budgets .* \(an exact line through 2 budgets: no uncertainty\)|Left out: F3 \(no interior minimum: the optimum is at or beyond the largest size measured\)\./);
  t.regex(powerLawSentence(withEdge.perKind[0]!, withEdge), /Left out: F3 \(no interior minimum: the optimum is at or beyond the largest size measured\)\.$/);
  // the whole list: per budget the fit and the ranking, then the law and the crossover
  t.is(fitConclusion(fits).length, 3 * 2 + 2);
});
