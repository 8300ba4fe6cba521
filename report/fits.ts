/**
 * Compute-optimal model size per budget (Hoffmann et al. 2022, "IsoFLOP profiles"), read off this
 * run's numbers:
 *
 *   fitIsoFlop        one budget: final loss against ln(parameters) as a parabola; its vertex is the
 *                     compute-optimal size N_opt, with a delta-method standard error
 *   bootstrapIsoFlop  the same optimum's spread by resampling the repeats (seeded, deterministic)
 *   fitPowerLaw       across budgets: ln N_opt = ln k + a·ln C (N_opt ∝ C^a)
 *   budgetForOptimum  the budget at which N_opt reaches a given size
 *   largerWinsAt      the budget from which a larger size reaches a lower loss than a smaller one
 *   fitReportData     all of it for a ReportData (per budget; one power law per budget kind)
 *
 * Pure and deterministic; degenerate inputs give a status and a reason, never NaN. The decisions
 * (weighting, uncertainty, when an optimum counts as extrapolated) are in docs/report.md, section
 * "Fits, repeats and uncertainty".
 */
import { Rng } from '../core/rng.ts';
import { sortedBudgets, sortedSizes } from './aggregate.ts';
import { rankBySpread, summarize, type Ranking, type Summary } from './stats.ts';
import type { Budget, BudgetKind, ReportData } from './types.ts';

// ---------------------------------------------------------------------------------------------
// small dense linear algebra

/** The inverse of a small square matrix (Gauss–Jordan, partial pivoting); null when it is singular. */
export function invert(m: readonly (readonly number[])[]): number[][] | null {
  const n = m.length;
  const a = m.map((row, i) => [...row, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  const scale = Math.max(...m.flat().map(Math.abs), 0);
  if (!(scale > 0) || !Number.isFinite(scale)) return null;
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[piv]![col]!)) piv = r;
    if (Math.abs(a[piv]![col]!) <= 1e-13 * scale) return null;
    [a[col], a[piv]] = [a[piv]!, a[col]!];
    const p = a[col]![col]!;
    for (let j = 0; j < 2 * n; j++) a[col]![j]! /= p;
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = a[r]![col]!;
      if (f !== 0) for (let j = 0; j < 2 * n; j++) a[r]![j]! -= f * a[col]![j]!;
    }
  }
  return a.map((row) => row.slice(n));
}

interface Wls {
  beta: number[];
  /** (XᵀWX)⁻¹ */
  inv: number[][];
  /** Σ wᵢ rᵢ² */
  rss: number;
}

/** Weighted least squares of y on the columns of X; null when XᵀWX is singular. */
function wls(X: number[][], y: number[], w: number[]): Wls | null {
  const p = X[0]!.length;
  const xtx = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  const xty = new Array<number>(p).fill(0);
  X.forEach((row, i) => {
    for (let j = 0; j < p; j++) {
      xty[j]! += w[i]! * row[j]! * y[i]!;
      for (let k = 0; k < p; k++) xtx[j]![k]! += w[i]! * row[j]! * row[k]!;
    }
  });
  const inv = invert(xtx);
  if (!inv) return null;
  const beta = inv.map((row) => row.reduce((s, v, k) => s + v * xty[k]!, 0));
  const rss = X.reduce((s, row, i) => s + w[i]! * (y[i]! - row.reduce((t, v, k) => t + v * beta[k]!, 0)) ** 2, 0);
  return { beta, inv, rss };
}

/** T · C · Tᵀ */
function transformCov(T: number[][], C: number[][]): number[][] {
  const TC = T.map((row) => C[0]!.map((_, j) => row.reduce((s, v, k) => s + v * C[k]![j]!, 0)));
  return TC.map((row) => T.map((trow) => row.reduce((s, v, k) => s + v * trow[k]!, 0)));
}

// ---------------------------------------------------------------------------------------------
// one budget: the IsoFLOP parabola

/** One size under one budget: its parameter count and the final loss of each repeat. */
export interface IsoFlopPoint {
  params: number;
  losses: readonly number[];
  id?: string;
}

/**
 * How the sizes' mean losses are weighted:
 *  - 'pooled' (default): weight nᵢ/σ² with one noise variance σ² pooled over the repeats of every
 *    size of the budget (so a size with more repeats counts more); unweighted without repeats.
 *  - 'per-size': weight nᵢ/sᵢ² with each size's own sample variance (needs ≥ 2 repeats and a
 *    non-zero spread at every size; otherwise falls back to 'pooled').
 *  - 'none': every size's mean counts the same; the noise comes from the residuals.
 */
export type Weighting = 'pooled' | 'per-size' | 'none';

export interface FitOptions {
  weighting?: Weighting;
  /** the interval is estimate ± z standard errors (default 2) */
  z?: number;
}

export interface ParabolaFit {
  /** loss ≈ a·x² + b·x + c with x = ln(parameters) */
  a: number;
  b: number;
  c: number;
  /** covariance of (a, b, c); null when the uncertainty is unknown (3 sizes and no repeats) */
  covariance: number[][] | null;
  /** the weighting actually used (a requested one falls back when the data cannot support it) */
  weighting: Weighting;
  /** the noise sd of one run and where it comes from: the repeats, the residuals about the fit, or unknown */
  sigma: number | null;
  sigmaSource: 'repeats' | 'residuals' | 'none';
  /** sizes with a value minus 3 */
  dof: number;
  /** with repeats and dof > 0: the weighted residual sum of squares / dof (≈ 1 when the parabola fits within the noise) */
  reducedChi2: number | null;
  /** the covariance was scaled up by reducedChi2 (> 1): the means scatter about the parabola more than the repeats explain */
  inflated: boolean;
}

export interface Optimum {
  /** N_opt = e^logParams */
  params: number;
  /** ln N_opt */
  logParams: number;
  /** standard error of ln N_opt (delta method); null when unknown */
  logParamsSe: number | null;
  /** [e^(ln N_opt − z·se), e^(ln N_opt + z·se)]; null when the se is unknown */
  interval: [number, number] | null;
  z: number;
  /** the fitted loss at N_opt */
  loss: number;
  /** where N_opt lies against the measured sizes */
  position: 'inside' | 'below' | 'above';
  /** N_opt outside [smallest, largest] measured size */
  extrapolated: boolean;
  /** the curvature a is more than z standard errors above 0; null when its se is unknown */
  curvatureSignificant: boolean | null;
}

export interface IsoFlopPointSummary {
  params: number;
  id?: string;
  loss: Summary;
}

interface IsoFlopBase {
  /** the sizes that had at least one finite loss, smallest first */
  points: IsoFlopPointSummary[];
  distinctSizes: number;
  /** [smallest, largest] parameter count with a value; null when none */
  range: [number, number] | null;
  /** losses left out because they were not finite (diverged runs), and sizes with a non-positive parameter count */
  dropped: number;
  /** one plain phrase saying what the fit found */
  reason: string;
}

export type IsoFlopFit =
  | (IsoFlopBase & { status: 'insufficient'; parabola: null })
  | (IsoFlopBase & { status: 'flat'; parabola: null })
  | (IsoFlopBase & {
      status: 'edge';
      parabola: ParabolaFit;
      side: 'smallest' | 'largest';
      /** ln of the vertex when the parabola does have a minimum, but farther out than REACH allows; null when a ≤ 0 */
      vertexLogParams: number | null;
    })
  | (IsoFlopBase & { status: 'optimum'; parabola: ParabolaFit; optimum: Optimum });

/**
 * How far beyond the measured sizes a fitted minimum may lie and still count as an (extrapolated)
 * optimum: in half-widths of the measured ln N range from its centre, so 3 = one whole measured
 * range beyond either end. Farther out the fit is 'edge'.
 */
export const REACH = 3;

/** The fitted loss at a parameter count. */
export function parabolaAt(p: Pick<ParabolaFit, 'a' | 'b' | 'c'>, params: number): number {
  const x = Math.log(params);
  return p.a * x * x + p.b * x + p.c;
}

/**
 * Fits final loss = a·(ln N)² + b·ln N + c to one budget's sizes by weighted least squares (see
 * Weighting), on the sizes' mean losses; needs ≥ 3 distinct sizes. With a > 0 the vertex
 * N_opt = exp(−b / 2a) is the compute-optimal size; its standard error is the delta method's from
 * the coefficients' covariance. With a ≤ 0 there is no interior minimum, and with a vertex more than
 * the measured range again beyond an end (REACH) none within reach: status 'edge', and `side` says
 * which end of the measured sizes the optimum is at or beyond.
 */
export function fitIsoFlop(input: readonly IsoFlopPoint[], options: FitOptions = {}): IsoFlopFit {
  const z = options.z ?? 2;
  let dropped = 0;
  const points: IsoFlopPointSummary[] = [];
  for (const p of input) {
    const finite = p.losses.filter((v) => Number.isFinite(v));
    if (!(p.params > 0) || !Number.isFinite(p.params)) {
      dropped += p.losses.length;
      continue;
    }
    dropped += p.losses.length - finite.length;
    if (finite.length === 0) continue;
    points.push({ params: p.params, ...(p.id !== undefined ? { id: p.id } : {}), loss: summarize(finite) });
  }
  points.sort((x, y) => x.params - y.params);
  const distinctSizes = new Set(points.map((p) => p.params)).size;
  const range: [number, number] | null = points.length ? [points[0]!.params, points[points.length - 1]!.params] : null;
  const base = { points, distinctSizes, range, dropped };
  if (distinctSizes < 3) {
    return { ...base, status: 'insufficient', parabola: null, reason: `a parabola needs at least 3 distinct sizes with a finite loss, got ${distinctSizes}` };
  }
  const means = points.map((p) => p.loss.mean);
  const yMin = Math.min(...means);
  const yMax = Math.max(...means);
  const ySpan = yMax - yMin;
  if (ySpan <= 1e-12 * Math.max(1, Math.abs(yMax))) {
    return { ...base, status: 'flat', parabola: null, reason: 'every size reached the same mean loss: no size is better than another' };
  }

  // noise from the repeats
  const repeatDof = points.reduce((s, p) => s + p.loss.n - 1, 0);
  const pooledVar = repeatDof > 0 ? points.reduce((s, p) => s + (p.loss.n - 1) * p.loss.sd ** 2, 0) / repeatDof : 0;
  // a spread below rounding (identical repeats) is no spread
  const tiny = (1e-12 * Math.max(1, Math.abs(yMax))) ** 2;
  let weighting: Weighting = options.weighting ?? 'pooled';
  if (weighting === 'per-size' && !points.every((p) => p.loss.n >= 2 && p.loss.sd ** 2 > tiny)) weighting = 'pooled';
  if (weighting === 'pooled' && !(pooledVar > tiny)) weighting = 'none';
  const w = points.map((p) => (weighting === 'pooled' ? p.loss.n / pooledVar : weighting === 'per-size' ? p.loss.n / p.loss.sd ** 2 : 1));

  // x = ln N, centered and scaled to u ∈ [−1, 1] for a well-conditioned solve
  const xs = points.map((p) => Math.log(p.params));
  const xLo = Math.log(range![0]);
  const xHi = Math.log(range![1]);
  const xc = (xLo + xHi) / 2;
  const xs2 = (xHi - xLo) / 2;
  const us = xs.map((x) => (x - xc) / xs2);
  const fit = wls(
    us.map((u) => [u * u, u, 1]),
    means,
    w,
  );
  if (!fit) return { ...base, status: 'insufficient', parabola: null, reason: 'the sizes do not determine a parabola' };
  const [au, bu, cu] = fit.beta as [number, number, number];
  const m = points.length;
  const dof = m - 3;
  let covU: number[][] | null = null;
  let sigma: number | null = null;
  let sigmaSource: ParabolaFit['sigmaSource'] = 'none';
  let reducedChi2: number | null = null;
  let inflated = false;
  if (weighting !== 'none') {
    // absolute: the weights are inverse variances of the means
    sigmaSource = 'repeats';
    sigma = Math.sqrt(weighting === 'pooled' ? pooledVar : points.reduce((s, p) => s + (p.loss.n - 1) * p.loss.sd ** 2, 0) / repeatDof);
    reducedChi2 = dof > 0 ? fit.rss / dof : null;
    const scale = reducedChi2 !== null && reducedChi2 > 1 ? reducedChi2 : 1;
    inflated = scale > 1;
    covU = fit.inv.map((row) => row.map((v) => v * scale));
  } else if (dof > 0) {
    sigmaSource = 'residuals';
    const s2 = fit.rss / dof;
    sigma = Math.sqrt(s2);
    covU = fit.inv.map((row) => row.map((v) => v * s2));
  }
  // back to x = ln N: a = au/s², b = bu/s − 2·au·xc/s², c = au·xc²/s² − bu·xc/s + cu
  const T = [
    [1 / xs2 ** 2, 0, 0],
    [(-2 * xc) / xs2 ** 2, 1 / xs2, 0],
    [xc ** 2 / xs2 ** 2, -xc / xs2, 1],
  ];
  const parabola: ParabolaFit = {
    a: au / xs2 ** 2,
    b: bu / xs2 - (2 * au * xc) / xs2 ** 2,
    c: (au * xc ** 2) / xs2 ** 2 - (bu * xc) / xs2 + cu,
    covariance: covU ? transformCov(T, covU) : null,
    weighting,
    sigma,
    sigmaSource,
    dof,
    reducedChi2,
    inflated,
  };

  if (!(au > 1e-9 * ySpan)) {
    // concave or straight: the lowest fitted loss over the measured sizes is at one end
    const atLo = au - bu + cu;
    const atHi = au + bu + cu;
    const side = atLo < atHi ? 'smallest' : atHi < atLo ? 'largest' : means[0]! <= means[m - 1]! ? 'smallest' : 'largest';
    return { ...base, status: 'edge', parabola, side, vertexLogParams: null, reason: `no interior minimum: the optimum is at or beyond the ${side} size measured` };
  }
  const uOpt = -bu / (2 * au);
  const logParams = xc + xs2 * uOpt;
  if (Math.abs(uOpt) > REACH) {
    // a minimum so far out that the curvature only barely bends the fit: not a place to extrapolate to
    const side = uOpt > 0 ? 'largest' : 'smallest';
    return {
      ...base,
      status: 'edge',
      parabola,
      side,
      vertexLogParams: logParams,
      reason: `no minimum within reach: the fitted parabola bottoms out more than the measured range again beyond the ${side} size, so the optimum is at or beyond the ${side} size measured`,
    };
  }
  let logParamsSe: number | null = null;
  if (covU) {
    const ga = bu / (2 * au * au);
    const gb = -1 / (2 * au);
    const v = ga * ga * covU[0]![0]! + 2 * ga * gb * covU[0]![1]! + gb * gb * covU[1]![1]!;
    logParamsSe = xs2 * Math.sqrt(Math.max(0, v));
  }
  const tol = 1e-9 * Math.max(1, Math.abs(xHi));
  const position = logParams < xLo - tol ? 'below' : logParams > xHi + tol ? 'above' : 'inside';
  const optimum: Optimum = {
    params: Math.exp(logParams),
    logParams,
    logParamsSe,
    interval: logParamsSe !== null ? [Math.exp(Math.max(-700, logParams - z * logParamsSe)), Math.exp(Math.min(700, logParams + z * logParamsSe))] : null,
    z,
    loss: cu - (bu * bu) / (4 * au),
    position,
    extrapolated: position !== 'inside',
    curvatureSignificant: covU ? au > z * Math.sqrt(covU[0]![0]!) : null,
  };
  const where = position === 'inside' ? 'inside the measured sizes' : position === 'below' ? 'below the smallest size measured (extrapolated)' : 'above the largest size measured (extrapolated)';
  return { ...base, status: 'optimum', parabola, optimum, reason: `the fitted parabola has its minimum ${where}` };
}

export interface BootstrapResult {
  draws: number;
  seed: number;
  /** fraction of draws whose refit had an interior-or-extrapolated minimum (status 'optimum') */
  optimumFraction: number;
  /** sd of ln N_opt over those draws; null when fewer than 2 */
  logParamsSd: number | null;
  /** the 2.5th and 97.5th percentiles of N_opt over those draws; null when fewer than 2 */
  interval: [number, number] | null;
  /** why there is nothing to resample, when so */
  reason?: string;
}

/**
 * The spread of N_opt by resampling each size's repeats with replacement (sizes with one run are
 * kept as they are) and refitting, `draws` times, with the seeded sfc32 generator of core/rng.ts:
 * the same input and seed give the same result. With few repeats it understates the spread (a
 * resample of n values varies by a factor (n − 1)/n less than new runs would); the delta-method se
 * of fitIsoFlop is the primary uncertainty.
 */
export function bootstrapIsoFlop(input: readonly IsoFlopPoint[], options: FitOptions & { draws?: number; seed?: number } = {}): BootstrapResult {
  const draws = options.draws ?? 1000;
  const seed = options.seed ?? 1;
  const clean = input.map((p) => ({ ...p, losses: p.losses.filter((v) => Number.isFinite(v)) }));
  if (!clean.some((p) => p.losses.length >= 2)) {
    return { draws: 0, seed, optimumFraction: 0, logParamsSd: null, interval: null, reason: 'no size has repeats to resample' };
  }
  const rng = new Rng(seed);
  const logs: number[] = [];
  for (let d = 0; d < draws; d++) {
    const sample = clean.map((p) => ({ params: p.params, losses: p.losses.length >= 2 ? p.losses.map(() => p.losses[rng.int(p.losses.length)]!) : p.losses }));
    const f = fitIsoFlop(sample, options);
    if (f.status === 'optimum') logs.push(f.optimum.logParams);
  }
  if (logs.length < 2) return { draws, seed, optimumFraction: logs.length / draws, logParamsSd: null, interval: null };
  const s = summarize(logs);
  logs.sort((a, b) => a - b);
  const q = (p: number): number => {
    const h = (logs.length - 1) * p;
    const lo = Math.floor(h);
    return logs[lo]! + (h - lo) * ((logs[Math.min(lo + 1, logs.length - 1)] ?? logs[lo]!) - logs[lo]!);
  };
  return { draws, seed, optimumFraction: logs.length / draws, logParamsSd: s.sd, interval: [Math.exp(q(0.025)), Math.exp(q(0.975))] };
}

// ---------------------------------------------------------------------------------------------
// across budgets: N_opt ∝ C^a

export interface OptimumAtBudget {
  /** the budget C (FLOPs or seconds) */
  budget: number;
  /** N_opt at that budget */
  params: number;
  /** standard error of ln N_opt, when known */
  logParamsSe?: number | null;
  id?: string;
}

export interface PowerLawFit {
  status: 'fit' | 'insufficient';
  reason: string;
  /** a in N_opt = k·C^a */
  exponent: number | null;
  exponentSe: number | null;
  /** ln k */
  logK: number | null;
  /** covariance of (ln k, a); null when unknown */
  covariance: number[][] | null;
  /**
   * where the uncertainty comes from: 'inputs' (propagated from the N_opt standard errors, the fit
   * weighted by them, scaled up by the reduced χ² when the points scatter more than their errors),
   * 'residuals' (unweighted, ≥ 3 budgets) or 'none' (2 budgets without errors: an exact line)
   */
  seSource: 'inputs' | 'residuals' | 'none';
  weighted: boolean;
  /** budgets used (distinct values) */
  budgets: number;
  /** [smallest, largest] budget used; null when none */
  range: [number, number] | null;
  reducedChi2: number | null;
  points: OptimumAtBudget[];
}

/** N_opt of a power-law fit at a budget; null when there is no fit. */
export function powerLawAt(law: Pick<PowerLawFit, 'exponent' | 'logK'>, budget: number): number | null {
  if (law.exponent === null || law.logK === null) return null;
  return Math.exp(law.logK + law.exponent * Math.log(budget));
}

/**
 * Fits ln N_opt = ln k + a·ln C by least squares over ≥ 2 distinct budgets, weighted by
 * 1/se(ln N_opt)² when every point has a positive se; see PowerLawFit.seSource for the error.
 */
export function fitPowerLaw(input: readonly OptimumAtBudget[]): PowerLawFit {
  const points = input.filter((p) => p.budget > 0 && p.params > 0 && Number.isFinite(p.budget) && Number.isFinite(p.params)).sort((a, b) => a.budget - b.budget);
  const distinct = new Set(points.map((p) => p.budget)).size;
  const range: [number, number] | null = points.length ? [points[0]!.budget, points[points.length - 1]!.budget] : null;
  const none = { exponent: null, exponentSe: null, logK: null, covariance: null, seSource: 'none' as const, weighted: false, budgets: distinct, range, reducedChi2: null, points };
  if (distinct < 2) return { ...none, status: 'insufficient', reason: `a power law needs optima at 2 or more distinct budgets, got ${distinct}` };
  const weighted = points.every((p) => p.logParamsSe != null && p.logParamsSe > 0 && Number.isFinite(p.logParamsSe));
  const w = points.map((p) => (weighted ? 1 / p.logParamsSe! ** 2 : 1));
  const ts = points.map((p) => Math.log(p.budget));
  const tc = (Math.log(range![0]) + Math.log(range![1])) / 2;
  const ys = points.map((p) => Math.log(p.params));
  const fit = wls(
    ts.map((t) => [1, t - tc]),
    ys,
    w,
  );
  if (!fit) return { ...none, status: 'insufficient', reason: 'the budgets do not determine a line' };
  const [a0, a] = fit.beta as [number, number];
  const m = points.length;
  const dof = m - 2;
  let cov: number[][] | null = null;
  let seSource: PowerLawFit['seSource'] = 'none';
  let reducedChi2: number | null = null;
  if (weighted) {
    seSource = 'inputs';
    reducedChi2 = dof > 0 ? fit.rss / dof : null;
    const scale = reducedChi2 !== null && reducedChi2 > 1 ? reducedChi2 : 1;
    cov = fit.inv.map((row) => row.map((v) => v * scale));
  } else if (dof > 0) {
    seSource = 'residuals';
    const s2 = fit.rss / dof;
    cov = fit.inv.map((row) => row.map((v) => v * s2));
  }
  // ln k = a0 − a·tc
  const covariance = cov ? transformCov([[1, -tc], [0, 1]], cov) : null;
  return {
    status: 'fit',
    reason: m === 2 && seSource === 'none' ? 'an exact line through 2 budgets: no uncertainty' : `a line through ${m} budgets`,
    exponent: a,
    exponentSe: covariance ? Math.sqrt(Math.max(0, covariance[1]![1]!)) : null,
    logK: a0 - a * tc,
    covariance,
    seSource,
    weighted,
    budgets: distinct,
    range,
    reducedChi2,
    points,
  };
}

export interface BudgetEstimate {
  /** the budget C*; null when the fit says it is never reached */
  budget: number | null;
  /** standard error of ln C*; null when unknown */
  logBudgetSe: number | null;
  /** [e^(ln C* − z·se), e^(ln C* + z·se)]; null when unknown */
  interval: [number, number] | null;
  /** 'measured': within the budgets the law was fitted on; 'extrapolated': outside them; 'never': N_opt does not grow with the budget on this fit, or there is no fit */
  basis: 'measured' | 'extrapolated' | 'never';
  reason: string;
  /** the interval's width in standard errors */
  z: number;
}

/** The budget C* at which the fitted N_opt(C) reaches `params`: ln C* = (ln N − ln k)/a (a > 0 needed). */
export function budgetForOptimum(law: PowerLawFit, params: number, z = 2): BudgetEstimate {
  if (law.status !== 'fit' || law.exponent === null || law.logK === null) {
    return { budget: null, logBudgetSe: null, interval: null, basis: 'never', reason: `no power law: ${law.reason}`, z };
  }
  const a = law.exponent;
  if (!(a > 1e-12)) return { budget: null, logBudgetSe: null, interval: null, basis: 'never', reason: `N_opt does not grow with the budget on this fit (exponent ${a.toPrecision(3)})`, z };
  const d = Math.log(params) - law.logK;
  const logC = d / a;
  let logBudgetSe: number | null = null;
  if (law.covariance) {
    const gk = -1 / a;
    const ga = -d / (a * a);
    const C = law.covariance;
    logBudgetSe = Math.sqrt(Math.max(0, gk * gk * C[0]![0]! + 2 * gk * ga * C[0]![1]! + ga * ga * C[1]![1]!));
  }
  if (!Number.isFinite(Math.exp(logC)) || Math.exp(logC) === 0) {
    return { budget: null, logBudgetSe, interval: null, basis: 'never', reason: `the fitted trend reaches it only at a budget of e^${logC.toFixed(0)}`, z };
  }
  const [lo, hi] = law.range!;
  const tol = 1e-9 * Math.max(1, Math.abs(Math.log(hi)));
  const measured = logC >= Math.log(lo) - tol && logC <= Math.log(hi) + tol;
  return {
    budget: Math.exp(logC),
    logBudgetSe,
    interval: logBudgetSe !== null ? [Math.exp(Math.max(-700, logC - z * logBudgetSe)), Math.exp(Math.min(700, logC + z * logBudgetSe))] : null,
    basis: measured ? 'measured' : 'extrapolated',
    reason: measured ? 'within the budgets run' : logC < Math.log(lo) ? 'below the smallest budget run (extrapolated)' : 'beyond the largest budget run (extrapolated)',
    z,
  };
}

export interface SizeRef {
  params: number;
  id?: string;
}

export interface LargerWins {
  smaller: SizeRef;
  larger: SizeRef;
  /** 'measured': the larger is a measured size; 'hypothetical': a size beyond the largest measured one */
  largerKind: 'measured' | 'hypothetical';
  /** N_opt at the crossover: the geometric mean of the two sizes */
  crossoverParams: number;
  estimate: BudgetEstimate;
}

/**
 * The budget from which `larger` reaches a lower loss than `smaller`. On a parabola in ln N two
 * sizes reach equal loss exactly when the vertex lies midway between them in ln N, so the larger
 * wins once N_opt(C) passes the geometric mean √(N_small·N_large): C* = budgetForOptimum(√(N_s·N_l)).
 */
export function largerWinsAt(law: PowerLawFit, smaller: SizeRef, larger: SizeRef, z = 2, largerKind: LargerWins['largerKind'] = 'measured'): LargerWins {
  const crossoverParams = Math.sqrt(smaller.params * larger.params);
  return { smaller, larger, largerKind, crossoverParams, estimate: budgetForOptimum(law, crossoverParams, z) };
}

// ---------------------------------------------------------------------------------------------
// a whole report

export interface BudgetFit {
  budget: Budget;
  fit: IsoFlopFit;
  /** the measured sizes ranked by final loss, indistinguishable ones tied (stats.ts) */
  ranking: Ranking<{ sizeId: string; params: number }>;
}

export interface KindFit {
  kind: BudgetKind;
  law: PowerLawFit;
  /** the budgets whose optimum went into the law */
  used: string[];
  /** the budgets left out of the law, and why (no interior minimum, too few sizes, …) */
  excluded: Array<{ budgetId: string; reason: string }>;
  /**
   * From the largest budget of this kind: the size that reached the lowest mean loss there and the
   * next larger measured size (or, when it is the largest, a hypothetical size one grid step
   * larger), and the budget at which the larger would start to win; null without a law.
   */
  largerWins: LargerWins | null;
}

export interface ReportFits {
  perBudget: BudgetFit[];
  perKind: KindFit[];
  /** which parameter count the fits use */
  paramsField: 'parameters' | 'nonEmbeddingParameters';
}

export interface ReportFitOptions extends FitOptions {
  /** default 'parameters' (total, as the IsoFLOP plot draws) */
  paramsField?: 'parameters' | 'nonEmbeddingParameters';
}

/**
 * The fits of a report: an IsoFLOP parabola and a ranking per budget, and per budget kind (FLOPs,
 * seconds) the power law over the budgets with an optimum (status 'optimum', extrapolated or not)
 * and when a larger size would start to win.
 */
export function fitReportData(data: ReportData, options: ReportFitOptions = {}): ReportFits {
  const field = options.paramsField ?? 'parameters';
  const z = options.z ?? 2;
  const sizes = sortedSizes(data);
  const perBudget: BudgetFit[] = [];
  for (const budget of sortedBudgets(data)) {
    const points: IsoFlopPoint[] = [];
    for (const s of sizes) {
      const losses = data.finals.filter((f) => f.budgetId === budget.id && f.sizeId === s.id).map((f) => f.valLoss);
      if (losses.length) points.push({ params: s[field], losses, id: s.id });
    }
    const fit = fitIsoFlop(points, options);
    const byParams = new Map(fit.points.map((p) => [p.id!, p.loss]));
    const ranking = rankBySpread(
      fit.points.map((p) => ({ sizeId: p.id!, params: p.params })),
      (r) => byParams.get(r.sizeId)!,
      { lowerIsBetter: true },
    );
    perBudget.push({ budget, fit, ranking });
  }
  const perKind: KindFit[] = [];
  for (const kind of ['flops', 'seconds'] as const) {
    const of = perBudget.filter((b) => b.budget.kind === kind);
    if (of.length === 0) continue;
    const used = of.filter((b) => b.fit.status === 'optimum');
    const excluded = of.filter((b) => b.fit.status !== 'optimum').map((b) => ({ budgetId: b.budget.id, reason: b.fit.reason }));
    const law = fitPowerLaw(
      used.map((b) => {
        const o = (b.fit as Extract<IsoFlopFit, { status: 'optimum' }>).optimum;
        return { budget: b.budget.value, params: o.params, logParamsSe: o.logParamsSe, id: b.budget.id };
      }),
    );
    let largerWins: LargerWins | null = null;
    const last = of[of.length - 1]!;
    const best = last.ranking.entries[0];
    if (law.status === 'fit' && best) {
      const measured = sizes.map((s) => ({ params: s[field], id: s.id })).sort((a, b) => a.params - b.params);
      const next = measured.find((s) => s.params > best.item.params);
      if (next) largerWins = largerWinsAt(law, { params: best.item.params, id: best.item.sizeId }, next, z, 'measured');
      else if (measured.length >= 2) {
        const step = measured[measured.length - 1]!.params / measured[measured.length - 2]!.params;
        if (step > 1) largerWins = largerWinsAt(law, { params: best.item.params, id: best.item.sizeId }, { params: best.item.params * step }, z, 'hypothetical');
      }
    }
    perKind.push({ kind, law, used: used.map((b) => b.budget.id), excluded, largerWins });
  }
  return { perBudget, perKind, paramsField: field };
}
