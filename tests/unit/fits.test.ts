/**
 * Compute-optimal size per budget (report/fits.ts) on synthetic data whose answer is known: losses
 * from an exact parabola in ln N recover its vertex to 1e-9; with seeded noise the reported ±2 se
 * covers the true optimum about as often as it should; exact optima N_opt = k·C^a give back k and
 * a; the budget at which a larger size starts to win is where the two sizes' losses cross.
 */
import test from 'ava';
import { Rng } from '../../core/rng.ts';
import {
  bootstrapIsoFlop,
  budgetForOptimum,
  fitIsoFlop,
  fitPowerLaw,
  fitReportData,
  invert,
  largerWinsAt,
  parabolaAt,
  powerLawAt,
  type IsoFlopFit,
  type IsoFlopPoint,
} from '../../report/fits.ts';
import { syntheticReportData } from '../../report/synthetic.ts';
import type { Final, ReportData, Size } from '../../report/types.ts';

const close = (t: { true(v: boolean, m?: string): void }, actual: number, expected: number, tol: number, what: string): void =>
  t.true(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

const SIZES = [1e6, 2e6, 4e6, 8e6, 16e6, 32e6];

/** loss = A·(ln N − ln N*)² + E */
function parabolaLoss(nOpt: number, A = 0.05, E = 3) {
  return (n: number): number => A * (Math.log(n) - Math.log(nOpt)) ** 2 + E;
}

function exactPoints(loss: (n: number) => number, sizes = SIZES, repeats = 1): IsoFlopPoint[] {
  return sizes.map((params) => ({ params, losses: Array.from({ length: repeats }, () => loss(params)) }));
}

type WithOptimum = Extract<IsoFlopFit, { status: 'optimum' }>;

function withOptimum(f: IsoFlopFit): WithOptimum {
  if (f.status !== 'optimum') throw new Error(`expected an optimum, got ${f.status}: ${f.reason}`);
  return f;
}

function optimumOf(f: IsoFlopFit) {
  return withOptimum(f).optimum;
}

test('invert: a 3×3 inverse, and null for a singular matrix', (t) => {
  const m = [
    [4, 2, 1],
    [2, 5, 3],
    [1, 3, 6],
  ];
  const inv = invert(m)!;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) close(t, m[i]!.reduce((s, v, k) => s + v * inv[k]![j]!, 0), i === j ? 1 : 0, 1e-12, `(m·m⁻¹)[${i}][${j}]`);
  t.is(invert([[1, 2], [2, 4]]), null);
  t.is(invert([[0, 0], [0, 0]]), null);
});

test('an exact parabola in ln N: the vertex, the minimum loss and the coefficients are recovered to 1e-9', (t) => {
  const loss = parabolaLoss(5e6, 0.05, 3);
  const f = withOptimum(fitIsoFlop(exactPoints(loss)));
  const o = f.optimum;
  close(t, o.logParams, Math.log(5e6), 1e-9, 'ln N_opt');
  close(t, o.params, 5e6, 1e-9, 'N_opt');
  close(t, o.loss, 3, 1e-9, 'loss at N_opt');
  close(t, f.parabola.a, 0.05, 1e-9, 'a');
  close(t, f.parabola.b, -2 * 0.05 * Math.log(5e6), 1e-9, 'b');
  for (const n of SIZES) close(t, parabolaAt(f.parabola, n), loss(n), 1e-9, `fitted loss at ${n}`);
  t.is(o.position, 'inside');
  t.false(o.extrapolated);
  // one run per size and 6 sizes: the noise comes from the residuals, which are 0 here
  t.is(f.parabola.weighting, 'none');
  t.is(f.parabola.sigmaSource, 'residuals');
  t.is(f.parabola.dof, 3);
  t.true(o.logParamsSe! < 1e-6);
  t.is(f.distinctSizes, 6);
  t.deepEqual(f.range, [1e6, 32e6]);
  t.regex(f.reason, /inside the measured sizes/);
});

test('three sizes and one run each: an exact fit with unknown uncertainty (no NaN)', (t) => {
  const f = withOptimum(fitIsoFlop(exactPoints(parabolaLoss(3e6), [1e6, 4e6, 16e6])));
  const o = f.optimum;
  close(t, o.params, 3e6, 1e-9, 'N_opt');
  t.is(o.logParamsSe, null);
  t.is(o.interval, null);
  t.is(o.curvatureSignificant, null);
  t.is(f.parabola.covariance, null);
  t.is(f.parabola.sigmaSource, 'none');
  t.is(f.parabola.dof, 0);
});

test('an optimum beyond the measured sizes is recovered and flagged as extrapolated (above and below)', (t) => {
  const above = optimumOf(fitIsoFlop(exactPoints(parabolaLoss(2e8))));
  close(t, above.params, 2e8, 1e-9, 'N_opt above');
  t.is(above.position, 'above');
  t.true(above.extrapolated);
  const below = optimumOf(fitIsoFlop(exactPoints(parabolaLoss(3e5))));
  close(t, below.params, 3e5, 1e-9, 'N_opt below');
  t.is(below.position, 'below');
  t.true(below.extrapolated);
  const f = fitIsoFlop(exactPoints(parabolaLoss(2e8)));
  t.regex(f.reason, /above the largest size measured \(extrapolated\)/);
});

test('a ≤ 0: no interior minimum, with the side the optimum is at or beyond', (t) => {
  const falling = fitIsoFlop(exactPoints((n) => 4 - 0.1 * Math.log(n)));
  t.is(falling.status, 'edge');
  if (falling.status !== 'edge') return;
  t.is(falling.side, 'largest');
  t.is(falling.reason, 'no interior minimum: the optimum is at or beyond the largest size measured');
  t.true(Math.abs(falling.parabola.a) < 1e-9);
  const rising = fitIsoFlop(exactPoints((n) => 2 + 0.1 * Math.log(n)));
  t.is(rising.status === 'edge' && rising.side, 'smallest');
  // concave (a < 0) with its maximum left of centre: the lowest fitted loss is at the largest size
  const concave = fitIsoFlop(exactPoints((n) => 3 - 0.05 * (Math.log(n) - Math.log(3e6)) ** 2));
  t.is(concave.status, 'edge');
  if (concave.status === 'edge') {
    t.is(concave.side, 'largest');
    t.true(concave.parabola.a < 0);
  }
  const concaveRight = fitIsoFlop(exactPoints((n) => 3 - 0.05 * (Math.log(n) - Math.log(20e6)) ** 2));
  t.is(concaveRight.status === 'edge' && concaveRight.side, 'smallest');
});

test('a minimum far beyond the sizes (more than the measured range again) is no optimum: edge, with the vertex kept', (t) => {
  const far = fitIsoFlop(exactPoints(parabolaLoss(1e12)));
  t.is(far.status, 'edge');
  if (far.status !== 'edge') return;
  t.is(far.side, 'largest');
  close(t, far.vertexLogParams!, Math.log(1e12), 1e-9, 'the vertex');
  t.regex(far.reason, /^no minimum within reach: .* the optimum is at or beyond the largest size measured$/);
  const farBelow = fitIsoFlop(exactPoints(parabolaLoss(1e2)));
  t.is(farBelow.status === 'edge' && farBelow.side, 'smallest');
  // just inside the reach: still an (extrapolated) optimum
  const reachable = Math.exp((Math.log(1e6) + Math.log(32e6)) / 2 + 2.9 * (Math.log(32e6) - Math.log(1e6)) / 2);
  t.is(optimumOf(fitIsoFlop(exactPoints(parabolaLoss(reachable)))).position, 'above');
});

test('degenerate inputs: too few sizes, all the same loss, diverged runs, non-positive sizes', (t) => {
  const two = fitIsoFlop(exactPoints(parabolaLoss(5e6), [1e6, 2e6], 3));
  t.is(two.status, 'insufficient');
  t.is(two.reason, 'a parabola needs at least 3 distinct sizes with a finite loss, got 2');
  t.is(two.points.length, 2);
  // repeated parameter counts do not count as distinct sizes
  t.is(fitIsoFlop([{ params: 1e6, losses: [3] }, { params: 1e6, losses: [3.1] }, { params: 2e6, losses: [3] }]).status, 'insufficient');
  t.is(fitIsoFlop([]).status, 'insufficient');
  const flat = fitIsoFlop(exactPoints(() => 2.5, SIZES, 2));
  t.is(flat.status, 'flat');
  t.regex(flat.reason, /same mean loss/);
  // a diverged run (NaN, Infinity) is left out and counted; a size with only diverged runs drops out
  const loss = parabolaLoss(5e6);
  const pts = exactPoints(loss);
  pts[0] = { params: SIZES[0]!, losses: [Number.NaN] };
  pts[1] = { params: SIZES[1]!, losses: [loss(SIZES[1]!), Infinity] };
  pts.push({ params: 0, losses: [1] });
  const f = fitIsoFlop(pts);
  t.is(f.dropped, 3);
  t.is(f.points.length, 5);
  close(t, optimumOf(f).params, 5e6, 1e-9, 'N_opt without the diverged runs');
  // identical repeats: no noise to pool, so unweighted with residual noise
  const same = fitIsoFlop(exactPoints(loss, SIZES, 3));
  t.is(same.parabola?.weighting, 'none');
  // nothing in any result is NaN
  for (const r of [two, flat, f, same, fitIsoFlop(exactPoints((n) => 4 - 0.1 * Math.log(n)))]) t.notRegex(JSON.stringify(r, (_k, v) => (typeof v === 'number' && Number.isNaN(v) ? 'NaN!' : v)), /NaN!/);
});

/** 200 seeded noisy IsoFLOP data sets; how often ±2 se covers the true optimum. */
function coverage(repeats: number, sd: number, seed: number): { coverage: number; fits: number; inflated: number } {
  const rng = new Rng(seed);
  const truth = 5e6;
  const loss = parabolaLoss(truth, 0.05, 3);
  let covered = 0;
  let fits = 0;
  let inflated = 0;
  for (let trial = 0; trial < 200; trial++) {
    const pts = SIZES.map((params) => ({ params, losses: Array.from({ length: repeats }, () => loss(params) + sd * rng.normal()) }));
    const f = fitIsoFlop(pts);
    if (f.status !== 'optimum' || f.optimum.logParamsSe === null) continue;
    fits++;
    if (f.parabola.inflated) inflated++;
    if (Math.abs(f.optimum.logParams - Math.log(truth)) <= 2 * f.optimum.logParamsSe) covered++;
  }
  return { coverage: covered / fits, fits, inflated };
}

test('with seeded noise, ±2 delta-method standard errors cover the true optimum in 85–99% of 200 trials', (t) => {
  for (const [repeats, sd, seed] of [
    [3, 0.01, 42],
    [2, 0.01, 7],
    [5, 0.02, 99],
  ] as const) {
    const c = coverage(repeats, sd, seed);
    t.log(`${repeats} repeats, noise sd ${sd}: ${(c.coverage * 100).toFixed(1)}% of ${c.fits} fits (${c.inflated} inflated by the reduced χ²)`);
    t.true(c.fits >= 195, 'nearly every noisy data set has a minimum');
    t.true(c.coverage >= 0.85 && c.coverage <= 0.99, `coverage ${c.coverage}`);
  }
});

test('weighting: sizes with more repeats count more; per-size weights fall back to pooled when a size has one run', (t) => {
  const loss = parabolaLoss(5e6);
  const pts: IsoFlopPoint[] = SIZES.map((params, i) => ({ params, losses: [loss(params) + 0.01, loss(params) - 0.01, ...(i === 0 ? [loss(params) + 0.3] : [])] }));
  const pooled = fitIsoFlop(pts);
  t.is(pooled.parabola?.weighting, 'pooled');
  t.is(pooled.parabola?.sigmaSource, 'repeats');
  const perSize = fitIsoFlop(pts, { weighting: 'per-size' });
  t.is(perSize.parabola?.weighting, 'per-size');
  const onlyOne = fitIsoFlop([{ params: 1e6, losses: [3.2] }, ...pts.slice(1)], { weighting: 'per-size' });
  t.is(onlyOne.parabola?.weighting, 'pooled');
  const none = fitIsoFlop(pts, { weighting: 'none' });
  t.is(none.parabola?.weighting, 'none');
  // a systematic misfit (a quartic, not a parabola) scatters the means beyond the repeat noise: the covariance is inflated
  const quartic = (n: number): number => 3 + 0.02 * (Math.log(n) - Math.log(5e6)) ** 4;
  const bad = fitIsoFlop(SIZES.map((params) => ({ params, losses: [quartic(params) + 0.001, quartic(params) - 0.001] })));
  t.true(bad.parabola!.inflated);
  t.true(bad.parabola!.reducedChi2! > 1);
});

test('bootstrapIsoFlop: deterministic for a seed, brackets the true optimum, refuses data without repeats', (t) => {
  const rng = new Rng(5);
  const loss = parabolaLoss(5e6);
  const pts = SIZES.map((params) => ({ params, losses: Array.from({ length: 4 }, () => loss(params) + 0.01 * rng.normal()) }));
  const a = bootstrapIsoFlop(pts, { draws: 300, seed: 11 });
  const b = bootstrapIsoFlop(pts, { draws: 300, seed: 11 });
  const c = bootstrapIsoFlop(pts, { draws: 300, seed: 12 });
  t.deepEqual(a, b);
  t.notDeepEqual(a.interval, c.interval);
  t.true(a.optimumFraction > 0.95);
  t.true(a.interval![0] < 5e6 && 5e6 < a.interval![1], `interval ${a.interval}`);
  // same order of magnitude as the delta method
  const se = optimumOf(fitIsoFlop(pts)).logParamsSe!;
  t.true(a.logParamsSd! > se / 3 && a.logParamsSd! < se * 3, `bootstrap sd ${a.logParamsSd} vs se ${se}`);
  const single = bootstrapIsoFlop(exactPoints(loss));
  t.is(single.interval, null);
  t.is(single.reason, 'no size has repeats to resample');
});

test('fitPowerLaw: exact optima N_opt = k·C^a give back k and a; 2 budgets give an exact line without error', (t) => {
  const k = 0.3;
  const a = 0.49;
  const budgets = [1e15, 1e16, 1e17, 1e18];
  const law = fitPowerLaw(budgets.map((C) => ({ budget: C, params: k * C ** a })));
  t.is(law.status, 'fit');
  close(t, law.exponent!, a, 1e-9, 'a');
  close(t, Math.exp(law.logK!), k, 1e-9, 'k');
  t.is(law.seSource, 'residuals');
  t.true(law.exponentSe! < 1e-9);
  close(t, powerLawAt(law, 1e20)!, k * 1e20 ** a, 1e-9, 'N_opt at 1e20');
  const two = fitPowerLaw(budgets.slice(0, 2).map((C) => ({ budget: C, params: k * C ** a })));
  close(t, two.exponent!, a, 1e-9, 'a from 2 budgets');
  t.is(two.exponentSe, null);
  t.is(two.seSource, 'none');
  t.is(two.reason, 'an exact line through 2 budgets: no uncertainty');
  // with N_opt errors: weighted, and the error propagated even with 2 budgets
  const withSe = fitPowerLaw(budgets.slice(0, 2).map((C) => ({ budget: C, params: k * C ** a, logParamsSe: 0.1 })));
  t.is(withSe.seSource, 'inputs');
  close(t, withSe.exponentSe!, Math.sqrt(0.1 ** 2 + 0.1 ** 2) / Math.log(10), 1e-9, 'se of a from 2 budgets');
  // degenerate
  const one = fitPowerLaw([{ budget: 1e15, params: 1e6 }, { budget: 1e15, params: 2e6 }]);
  t.is(one.status, 'insufficient');
  t.is(one.exponent, null);
  t.is(one.reason, 'a power law needs optima at 2 or more distinct budgets, got 1');
});

test('budgetForOptimum: the inverse of the power law, measured within the budgets run, extrapolated outside, never when a ≤ 0', (t) => {
  const k = 0.3;
  const a = 0.5;
  const law = fitPowerLaw([1e15, 1e16, 1e17].map((C) => ({ budget: C, params: k * C ** a })));
  const inside = budgetForOptimum(law, k * 3e16 ** a);
  close(t, inside.budget!, 3e16, 1e-9, 'C*');
  t.is(inside.basis, 'measured');
  t.is(inside.reason, 'within the budgets run');
  const beyond = budgetForOptimum(law, k * 1e19 ** a);
  close(t, beyond.budget!, 1e19, 1e-9, 'C* beyond');
  t.is(beyond.basis, 'extrapolated');
  t.is(beyond.reason, 'beyond the largest budget run (extrapolated)');
  t.is(budgetForOptimum(law, k * 1e14 ** a).basis, 'extrapolated');
  // N_opt shrinking with the budget: never
  const shrinking = fitPowerLaw([1e15, 1e16].map((C) => ({ budget: C, params: 1e12 / C ** 0.2 })));
  const never = budgetForOptimum(shrinking, 1e10);
  t.is(never.basis, 'never');
  t.is(never.budget, null);
  t.regex(never.reason, /does not grow with the budget/);
  t.is(budgetForOptimum(fitPowerLaw([]), 1e6).basis, 'never');
  // an exponent so small that the budget overflows: never, not Infinity
  const flatLaw = fitPowerLaw([1e15, 1e16].map((C) => ({ budget: C, params: 1e6 * C ** 1e-9 })));
  const overflow = budgetForOptimum(flatLaw, 1e9);
  t.is(overflow.basis, 'never');
  t.is(overflow.budget, null);
  t.regex(overflow.reason, /only at a budget of e\^\d+/);
  // with noisy optima the estimate carries an interval around it
  const noisy = fitPowerLaw([1e15, 1e16, 1e17].map((C, i) => ({ budget: C, params: k * C ** a * [1.1, 0.9, 1.05][i]!, logParamsSe: 0.1 })));
  const e = budgetForOptimum(noisy, 1e9);
  t.true(e.interval![0] < e.budget! && e.budget! < e.interval![1]);
});

// ---------------------------------------------------------------------------------------------
// a whole report with a known answer

/** loss(N, C) = A·(ln N − ln N_opt(C))² + E(C) with N_opt(C) = k·C^a: each budget's IsoFLOP curve is a parabola in ln N. */
const K = 2e-2;
const EXP = 0.5;
const nOptAt = (C: number): number => K * C ** EXP;
const lossAt = (n: number, C: number): number => 0.06 * (Math.log(n) - Math.log(nOptAt(C))) ** 2 + 2 + 50 / Math.log(C);

function knownSizes(): Size[] {
  return [4e6, 8e6, 16e6, 32e6, 64e6].map((p, i) => ({ id: `s${i}`, layers: 2 + 2 * i, hidden: 128, heads: 2, ffn: 512, parameters: p, nonEmbeddingParameters: p / 2 }));
}

function knownReport(budgets: number[], seeds = 1, noise = 0): ReportData {
  const sizes = knownSizes();
  const rng = new Rng(3);
  const finals: Final[] = [];
  budgets.forEach((C, b) => {
    for (const s of sizes) {
      for (let seed = 1; seed <= seeds; seed++) {
        finals.push({ sizeId: s.id, budgetId: `B${b + 1}`, ...(seeds > 1 ? { seed } : {}), steps: 100, flops: C, seconds: 1, valLoss: lossAt(s.parameters, C) + noise * rng.normal() });
      }
    }
  });
  return { runId: 'known', createdAt: '2025-01-01T00:00:00.000Z', budgets: budgets.map((value, i) => ({ id: `B${i + 1}`, kind: 'flops', value })), sizes, curves: [], finals, cells: [] };
}

test('fitReportData: exact IsoFLOP parabolas at three budgets give N_opt per budget, the power law, and the budget where the next size wins', (t) => {
  // N_opt: 2e-2·√C = 6.3M, 20M, 63M for C = 1e17, 1e18, 1e19
  const budgets = [1e17, 1e18, 1e19];
  const fits = fitReportData(knownReport(budgets));
  t.is(fits.perBudget.length, 3);
  fits.perBudget.forEach((b, i) => close(t, optimumOf(b.fit).params, nOptAt(budgets[i]!), 1e-9, `N_opt at ${b.budget.id}`));
  t.is(fits.perKind.length, 1);
  const kind = fits.perKind[0]!;
  t.is(kind.kind, 'flops');
  t.deepEqual(kind.used, ['B1', 'B2', 'B3']);
  t.deepEqual(kind.excluded, []);
  close(t, kind.law.exponent!, EXP, 1e-9, 'exponent');
  close(t, Math.exp(kind.law.logK!), K, 1e-9, 'k');
  // at 1e19, N_opt ≈ 63M: the measured best is s4 (64M), the largest: a hypothetical next size (×2) is asked about
  const ranking = fits.perBudget[2]!.ranking;
  t.is(ranking.entries[0]!.item.sizeId, 's4');
  t.is(ranking.basis, 'single-run');
  const lw = kind.largerWins!;
  t.is(lw.largerKind, 'hypothetical');
  t.is(lw.smaller.id, 's4');
  close(t, lw.larger.params, 128e6, 1e-12, 'next grid step');
  // the crossover: both sizes reach the same loss there
  const C = lw.estimate.budget!;
  close(t, lossAt(64e6, C), lossAt(128e6, C), 1e-9, 'equal losses at C*');
  t.true(lossAt(128e6, C * 1.01) < lossAt(64e6, C * 1.01), 'and the larger wins beyond it');
  t.is(lw.estimate.basis, 'extrapolated');
});

test('fitReportData: the next measured size and a crossover within the budgets run ("measured")', (t) => {
  // at 1e16 N_opt = 2M: the best measured size is s0 (4M); s1 (8M) wins from N_opt = √(4M·8M) ≈ 5.66M, i.e. C = 8e16
  const small = fitReportData(knownReport([1e15, 1e16]));
  const lw = small.perKind[0]!.largerWins!;
  t.is(lw.smaller.id, 's0');
  t.is(lw.larger.id, 's1');
  t.is(lw.largerKind, 'measured');
  close(t, lw.crossoverParams, Math.sqrt(4e6 * 8e6), 1e-12, 'geometric mean');
  close(t, lw.estimate.budget!, (Math.sqrt(32e12) / K) ** 2, 1e-9, 'C*');
  t.is(lw.estimate.basis, 'extrapolated');
  // with the budgets 1e15, 1e16 and 1e18, C* = 8e16 lies within the budgets run
  const wide = fitReportData(knownReport([1e15, 1e16, 1e18]));
  const direct = largerWinsAt(wide.perKind[0]!.law, { params: 4e6, id: 's0' }, { params: 8e6, id: 's1' });
  close(t, direct.estimate.budget!, 8e16, 1e-9, 'C* within the range');
  t.is(direct.estimate.basis, 'measured');
  // exact parabolas: each N_opt's se is 0 up to rounding, and so is the exponent's
  t.true(small.perKind[0]!.law.exponentSe === null || small.perKind[0]!.law.exponentSe < 1e-6);
});

test('fitReportData: with 3 seeds the fits are weighted by the repeats and the uncertainty is known; degenerate budgets are excluded with a reason', (t) => {
  const fits = fitReportData(knownReport([1e17, 1e18, 1e19], 3, 0.005));
  for (const b of fits.perBudget) {
    const o = optimumOf(b.fit);
    t.is(b.fit.status === 'optimum' && b.fit.parabola.weighting, 'pooled');
    t.true(o.logParamsSe! > 0);
    t.true(Math.abs(o.logParams - Math.log(nOptAt(b.budget.value))) < 4 * o.logParamsSe!, b.budget.id);
    t.is(b.ranking.basis, 'spread');
  }
  const law = fits.perKind[0]!.law;
  t.is(law.seSource, 'inputs');
  t.true(Math.abs(law.exponent! - EXP) < 4 * law.exponentSe!, `exponent ${law.exponent} ± ${law.exponentSe}`);
  // one budget with only 2 sizes measured: left out of the law, with its reason
  const data = knownReport([1e17, 1e18, 1e19]);
  data.finals = data.finals.filter((f) => f.budgetId !== 'B1' || ['s0', 's1'].includes(f.sizeId));
  const partial = fitReportData(data);
  t.deepEqual(partial.perKind[0]!.used, ['B2', 'B3']);
  t.deepEqual(partial.perKind[0]!.excluded, [{ budgetId: 'B1', reason: 'a parabola needs at least 3 distinct sizes with a finite loss, got 2' }]);
});

test('fitReportData on the synthetic preview data: one result per budget, no NaN anywhere', (t) => {
  for (const seeds of [1, 3]) {
    const fits = fitReportData(syntheticReportData({ seeds, budgets: [1e13, 1e14, 1e15, 1e16] }));
    t.is(fits.perBudget.length, 4);
    t.notRegex(JSON.stringify(fits, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? `BAD:${v}` : v)), /BAD:/);
  }
  const ne = fitReportData(syntheticReportData(), { paramsField: 'nonEmbeddingParameters' });
  t.is(ne.paramsField, 'nonEmbeddingParameters');
  t.is(ne.perBudget[0]!.fit.points[0]!.params, syntheticReportData().sizes[0]!.nonEmbeddingParameters);
});
