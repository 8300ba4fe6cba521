/**
 * The fits (fits.ts) and the repeats rule (stats.ts) in words: per budget the compute-optimal size
 * and the sizes ranked with what the spread cannot tell apart tied; per budget kind the power law
 * N_opt ∝ C^a and the budget at which a larger size would start to win, labelled measured (within
 * the budgets run) or extrapolated. Pure functions returning sentences, in the tone of
 * conclusion.ts: computed from this run's numbers, nothing assumed from the papers.
 */
import { budgetLabel, fmtLoss, fmtParams, fmtSI, listAnd } from './aggregate.ts';
import type { BudgetFit, KindFit, ReportFits, SizeRef } from './fits.ts';
import { spreadInterval, type SpreadKind } from './stats.ts';
import type { BudgetKind } from './types.ts';

/** "1.0e16 FLOPs" / "350 s" */
export function fmtBudgetValue(value: number, kind: BudgetKind): string {
  return kind === 'flops' ? `${value.toExponential(1).replace('e+', 'e')} FLOPs` : `${fmtSI(value, 3)} s`;
}

function sizeName(s: SizeRef): string {
  return s.id !== undefined ? `${s.id} (${fmtParams(s.params)})` : fmtParams(s.params);
}

function seedsText(ns: number[]): string {
  const lo = Math.min(...ns);
  const hi = Math.max(...ns);
  return lo === hi ? `${lo} seeds` : `${lo}–${hi} seeds`;
}

const SPREAD_WORDS: Record<SpreadKind, string> = { range: 'min–max with 2 seeds', sd: 'mean ± 1 sd with 3 or more seeds', none: 'one run: a point' };

/** What the IsoFLOP fit of one budget found, one sentence. */
export function isoflopSentence(b: BudgetFit): string {
  const head = `Budget ${budgetLabel(b.budget)}`;
  const f = b.fit;
  switch (f.status) {
    case 'insufficient':
      return `${head}: no IsoFLOP fit (${f.reason}).`;
    case 'flat':
      return `${head}: every size reached the same mean final loss (${fmtLoss(f.points[0]!.loss.mean)}), so no size is compute-optimal over another.`;
    case 'edge': {
      const end = f.side === 'largest' ? f.points[f.points.length - 1]! : f.points[0]!;
      const endName = sizeName({ params: end.params, id: end.id });
      if (f.vertexLogParams !== null) {
        return `${head}: the IsoFLOP parabola over ${f.distinctSizes} sizes bends too little to place a minimum (it would be at ≈ ${fmtParams(Math.exp(f.vertexLogParams))}, more than the measured range again beyond the ${f.side} size): the optimum is at or beyond the ${f.side} size measured, ${endName}.`;
      }
      return `${head}: the IsoFLOP parabola over ${f.distinctSizes} sizes has no interior minimum: the optimum is at or beyond the ${f.side} size measured, ${endName}.`;
    }
    case 'optimum': {
      const o = f.optimum;
      const p = f.parabola;
      const range = f.range!;
      const interval = o.interval
        ? ` (±${o.z} se: ${fmtParams(o.interval[0])}–${fmtParams(o.interval[1])})`
        : p.sigmaSource === 'none'
          ? ' (uncertainty unknown: a parabola through 3 sizes with one run each fits exactly)'
          : '';
      const where =
        o.position === 'inside'
          ? `inside the sizes measured (${fmtParams(range[0])}–${fmtParams(range[1])})`
          : o.position === 'below'
            ? `below the smallest size measured (${fmtParams(range[0])}): extrapolated`
            : `above the largest size measured (${fmtParams(range[1])}): extrapolated`;
      const notes: string[] = [];
      if (o.curvatureSignificant === false) notes.push(`the curvature is within ${o.z} se of 0, so this optimum is weakly determined`);
      if (p.inflated) notes.push('the sizes scatter about the parabola more than the seeds do, and the interval is widened by that factor');
      if (f.dropped > 0) notes.push(`${f.dropped} non-finite loss${f.dropped === 1 ? ' was' : 'es were'} left out`);
      return `${head}: the IsoFLOP parabola over ${f.distinctSizes} sizes puts the compute-optimal size at N_opt ≈ ${fmtParams(o.params)} parameters${interval}, ${where}; fitted loss there ${fmtLoss(o.loss)}${notes.length ? ` (${notes.join('; ')})` : ''}.`;
    }
  }
}

/**
 * The sizes of one budget by final loss with the repeats rule: sizes whose spreads overlap are
 * "not distinguishable" and are not ranked against each other; single runs are ranked by value and
 * labelled "single run, spread unknown".
 */
export function rankingSentence(b: BudgetFit): string {
  const head = `Budget ${budgetLabel(b.budget)}`;
  const r = b.ranking;
  if (r.entries.length === 0) return `${head}: no final loss to rank.`;
  if (r.entries.length === 1) return `${head}: only ${r.entries[0]!.item.sizeId} has a final loss.`;
  const name = (e: (typeof r.entries)[number]): string => `${e.item.sizeId} (${fmtLoss(e.summary.mean)})`;
  const groupText = (g: (typeof r.groups)[number]): string => (g.length === 1 ? name(g[0]!) : `${listAnd(g.map(name))}, not distinguishable`);
  const order = r.groups.map(groupText).join('; then ');
  if (r.basis === 'single-run') {
    return `${head}, by final validation loss: ${order} (single run, spread unknown: the order may be noise).`;
  }
  const withSpread = r.entries.filter((e) => e.summary.n > 1);
  const kinds = [...new Set(withSpread.map((e) => spreadInterval(e.summary).kind))];
  const spread = kinds.map((k) => SPREAD_WORDS[k]).join('; ');
  const mixed = r.basis === 'mixed' ? ` ${listAnd(r.entries.filter((e) => e.summary.n <= 1).map((e) => e.item.sizeId))}: single run, spread unknown.` : '';
  const over = `${head}, by final validation loss over ${seedsText(withSpread.map((e) => e.summary.n))}`;
  if (r.groups.length === 1) return `${over}: ${listAnd(r.entries.map(name))} are not distinguishable: their spreads (${spread}) overlap.${mixed}`;
  const tied = r.groups.some((g) => g.length > 1);
  const rule = tied ? `Sizes whose spreads (${spread}) overlap are not ranked against each other.` : `No two spreads (${spread}) overlap, so the order holds.`;
  return `${over}: ${order}. ${rule}${mixed}`;
}

const KIND_WORDS: Record<BudgetKind, string> = { flops: 'FLOP', seconds: 'seconds' };

/** The power law N_opt ∝ C^a of one budget kind, one sentence. */
export function powerLawSentence(kf: KindFit, fits: ReportFits): string {
  const law = kf.law;
  const ofKind = fits.perBudget.filter((b) => b.budget.kind === kf.kind);
  const byId = new Map(ofKind.map((b) => [b.budget.id, b]));
  const left = kf.excluded.length ? ` Left out: ${kf.excluded.map((e) => `${e.budgetId} (${e.reason})`).join('; ')}.` : '';
  if (law.status !== 'fit' || law.exponent === null) return `Across the ${KIND_WORDS[kf.kind]} budgets: no power law for N_opt (${law.reason}).${left}`;
  const se = law.exponentSe !== null ? ` ± ${law.exponentSe.toPrecision(2)} (1 se${law.seSource === 'inputs' ? ', from the N_opt uncertainties' : ', from the residuals'})` : ' (an exact line through 2 budgets: no uncertainty)';
  const ends = kf.used.length >= 2 ? [kf.used[0]!, kf.used[kf.used.length - 1]!].map((id) => byId.get(id)!) : [];
  const span =
    ends.length === 2 && ends[0]!.fit.status === 'optimum' && ends[1]!.fit.status === 'optimum'
      ? `: from ${fmtParams(ends[0]!.fit.optimum.params)} at ${fmtBudgetValue(ends[0]!.budget.value, kf.kind)} to ${fmtParams(ends[1]!.fit.optimum.params)} at ${fmtBudgetValue(ends[1]!.budget.value, kf.kind)}`
      : '';
  const trend = law.exponent > 0 ? 'the compute-optimal size grows with the budget' : 'the compute-optimal size does not grow with the budget on this data';
  return `Across the ${kf.used.length} ${KIND_WORDS[kf.kind]} budgets with a fitted optimum, N_opt ∝ C^${law.exponent.toPrecision(3)}${se}${span}; ${trend}.${left}`;
}

/** At which budget a larger size would start to win, labelled measured (within the budgets run) or extrapolated. */
export function largerWinsSentence(kf: KindFit, fits: ReportFits): string | null {
  const lw = kf.largerWins;
  if (!lw) return null;
  const ofKind = fits.perBudget.filter((b) => b.budget.kind === kf.kind);
  const last = ofKind[ofKind.length - 1]!;
  const at = fmtBudgetValue(last.budget.value, kf.kind);
  const smaller = sizeName(lw.smaller);
  const intro =
    lw.largerKind === 'hypothetical'
      ? `At the largest ${KIND_WORDS[kf.kind]} budget run (${at}) the largest size measured, ${smaller}, reached the lowest mean loss; a size one grid step larger (${fmtParams(lw.larger.params)}, not measured)`
      : `At the largest ${KIND_WORDS[kf.kind]} budget run (${at}) ${smaller} reached the lowest mean loss; the next larger size, ${sizeName(lw.larger)},`;
  const e = lw.estimate;
  if (e.basis === 'never' || e.budget === null) return `${intro} would not overtake it on this trend (${e.reason}).`;
  const interval = e.interval ? ` (±${e.z} se: ${fmtBudgetValue(e.interval[0], kf.kind)}–${fmtBudgetValue(e.interval[1], kf.kind)})` : '';
  const label = e.basis === 'measured' ? 'measured: within the budgets run' : e.reason.replace(' (extrapolated)', '') + ': extrapolated';
  const disagree =
    e.budget <= last.budget.value && lw.largerKind === 'measured'
      ? `; yet at ${at} the smaller one still reached the lower mean loss, so the power law and that budget's measurements disagree within their noise`
      : '';
  return `${intro} would start to reach a lower loss from about ${fmtBudgetValue(e.budget, kf.kind)}${interval}, where N_opt on the fitted trend passes ${fmtParams(lw.crossoverParams)}, midway between the two in log N (${label})${disagree}.`;
}

/** Every fit sentence: per budget the IsoFLOP fit and the ranking, then per budget kind the power law and when a larger size wins. */
export function fitConclusion(fits: ReportFits): string[] {
  const lines: string[] = [];
  for (const b of fits.perBudget) lines.push(isoflopSentence(b), rankingSentence(b));
  for (const kf of fits.perKind) {
    lines.push(powerLawSentence(kf, fits));
    const w = largerWinsSentence(kf, fits);
    if (w) lines.push(w);
  }
  return lines;
}

/**
 * The fits' short form for the top of the report, one sentence per budget kind: the exponent of
 * N_opt ∝ C^a and the budget from which a larger size would start to win, labelled measured or
 * extrapolated (or why there is none).
 */
export function fitHeadline(fits: ReportFits): string {
  const out: string[] = [];
  for (const kf of fits.perKind) {
    const head = `Compute-optimal size over the ${KIND_WORDS[kf.kind]} budgets`;
    const law = kf.law;
    if (law.status !== 'fit' || law.exponent === null) {
      const ofKind = fits.perBudget.filter((b) => b.budget.kind === kf.kind);
      const opt = ofKind.filter((b) => b.fit.status === 'optimum');
      const one = opt.length === 1 && opt[0]!.fit.status === 'optimum' ? `; N_opt ≈ ${fmtParams(opt[0]!.fit.optimum.params)} at ${budgetLabel(opt[0]!.budget)}` : '';
      out.push(`${head}: no N_opt ∝ C^a (${law.reason})${one}.`);
      continue;
    }
    const exp = `N_opt ∝ C^${law.exponent.toPrecision(2)}`;
    const lw = kf.largerWins;
    if (!lw) {
      out.push(`${head}: ${exp}.`);
      continue;
    }
    const larger = lw.largerKind === 'hypothetical' ? `a size one step larger than ${sizeName(lw.smaller)}` : sizeName(lw.larger);
    const e = lw.estimate;
    if (e.basis === 'never' || e.budget === null) {
      out.push(`${head}: ${exp}; ${larger} would not overtake ${lw.smaller.id ?? fmtParams(lw.smaller.params)} on this trend.`);
      continue;
    }
    out.push(`${head}: ${exp}; ${larger} would start to beat ${lw.smaller.id ?? fmtParams(lw.smaller.params)} from about ${fmtBudgetValue(e.budget, kf.kind)} (${e.basis === 'measured' ? 'measured: within the budgets run' : 'extrapolated: outside the budgets run'}).`);
  }
  return out.join(' ');
}
