/**
 * The answer read off the data: which size pretrains best under each budget, which (size,
 * compression) cell is best under each memory budget, and a verdict on the paper's claim that is
 * computed from the numbers (nothing here is assumed from the paper). Rules: docs/report.md.
 */
import {
  budgetLabel,
  bytesOf,
  compressionLabel,
  fmtBytes,
  fmtLoss,
  fmtPct,
  groupCells,
  groupFinals,
  listAnd,
  sortedBudgets,
  sortedSizes,
  type CellGroup,
  type Stats,
} from './aggregate.ts';
import { fitConclusion, fitHeadline } from './fit-conclusion.ts';
import { fitReportData, type ReportFits } from './fits.ts';
import { robustness, type Robustness } from './robustness.ts';
import { compareSpread, formatSpread, SPREAD_NOTE, type Distinction } from './stats.ts';
import { BYTES_VIEWS, type BytesView, type ReportData } from './types.ts';

export const VIEW_NAMES: Record<BytesView, string> = { total: 'total bytes', nonEmbedding: 'non-embedding bytes' };

/** Quantiles of all cells' bytes used as memory budgets, besides each size's uncompressed bytes. */
export const DEFAULT_QUANTILES = [0.1, 0.25, 0.5];

export interface BestSize {
  budgetId: string;
  sizeId: string;
  valLoss: Stats;
  /** 0 = the smallest size that has a final result under this budget */
  rank: number;
  /** how many sizes have a final result under this budget */
  of: number;
  /** every size under this budget, lowest loss first */
  ranking: Array<{ sizeId: string; valLoss: Stats }>;
  /** the best against the runner-up by the repeats rule (stats.ts); null with one size */
  distinction: Distinction | null;
  text: string;
}

export interface MemoryBudget {
  view: BytesView;
  bytes: number;
  /** where the number comes from, e.g. "= small uncompressed", "25th percentile of all cells" */
  source: string;
}

export interface MemoryAnswer extends MemoryBudget {
  budgetId: string;
  /** the best cell with bytes ≤ M by mean dev accuracy; null when no cell fits */
  best: CellGroup | null;
  text: string;
}

/** A larger and a smaller size compared at one memory budget, each with its best cell that fits. */
export interface EqualMemoryComparison {
  budgetId: string;
  view: BytesView;
  bytes: number;
  larger: CellGroup;
  smaller: CellGroup;
  winner: 'larger' | 'smaller' | 'tie';
}

export type Judgement = 'supports' | 'contradicts' | 'neither' | 'undecided';

export interface BudgetVerdict {
  budgetId: string;
  largerWins: number;
  smallerWins: number;
  /** comparisons whose spreads overlap: not distinguishable */
  ties: number;
  /** of the paper's claim "larger-then-compressed beats smaller-lightly-compressed at equal memory" */
  judgement: Judgement;
}

export interface Conclusion {
  bestSizes: BestSize[];
  memoryBudgets: MemoryBudget[];
  answers: MemoryAnswer[];
  comparisons: EqualMemoryComparison[];
  /** robustness to compression by size (robustness.ts): accuracy drops and whether larger sizes lose less */
  robustness: Robustness;
  /** the compute-optimal fits (fits.ts): per budget the IsoFLOP parabola, per budget kind N_opt ∝ C^a; null with fewer than 3 sizes */
  fits: ReportFits | null;
  /** the fits in words (fit-conclusion.ts), or one plain sentence saying why nothing was fitted */
  fitLines: string[];
  /** the fits' short form for the top of the report: where a larger size starts to win (measured or extrapolated) */
  fitHeadline: string;
  perBudget: BudgetVerdict[];
  /** overall: 'supports'/'contradicts' only when every decided budget agrees; otherwise 'neither' (budget-dependent) */
  judgement: Judgement;
  /** one paragraph */
  verdict: string;
  /**
   * The short verdict the report opens with (2–4 sentences with one or two budgets): which size
   * gives the best cell at which memory budgets, the judgement with its tallies, and the caveat.
   */
  headline: string;
  /** the conclusion as lines: best sizes, memory answers, the fits, robustness, and the verdict last */
  lines: string[];
}

export interface ConcludeOptions {
  quantiles?: number[];
  /** extra memory budgets in bytes, applied to both views */
  extraMemoryBudgets?: number[];
}

// ---------------------------------------------------------------------------------------------

/** Per budget, the size with the lowest final validation loss (mean over seeds; ties → the smaller size). */
export function bestSizePerBudget(data: ReportData): BestSize[] {
  const finals = groupFinals(data);
  const sizeOrder = sortedSizes(data).map((s) => s.id);
  const out: BestSize[] = [];
  for (const b of sortedBudgets(data)) {
    const rows = finals.filter((f) => f.budgetId === b.id).sort((x, y) => sizeOrder.indexOf(x.sizeId) - sizeOrder.indexOf(y.sizeId));
    if (rows.length === 0) continue;
    const ranking = [...rows].sort((x, y) => x.valLoss.mean - y.valLoss.mean).map((f) => ({ sizeId: f.sizeId, valLoss: f.valLoss }));
    const best = ranking[0]!;
    const rank = rows.findIndex((r) => r.sizeId === best.sizeId);
    const where = rows.length === 1 ? 'the only size' : rank === 0 ? 'the smallest size' : rank === rows.length - 1 ? 'the largest size' : `size ${rank + 1} of ${rows.length} by parameters`;
    const runnerUp = ranking[1];
    const distinction = runnerUp ? compareSpread(best.valLoss, runnerUp.valLoss).distinction : null;
    const tie = distinction === 'indistinguishable' ? ', not distinguishable from it (their spreads overlap)' : distinction === 'unknown' ? ' (single run, spread unknown)' : '';
    const margin = runnerUp ? `; next: ${runnerUp.sizeId} at ${formatSpread(runnerUp.valLoss, fmtLoss)}${tie}` : '';
    out.push({
      budgetId: b.id,
      sizeId: best.sizeId,
      valLoss: best.valLoss,
      rank,
      of: rows.length,
      ranking,
      distinction,
      text: `Budget ${budgetLabel(b)}: the lowest final validation loss is size ${best.sizeId} (${where}), ${formatSpread(best.valLoss, fmtLoss)}${margin}.`,
    });
  }
  return out;
}

function nearestRank(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

function ordinal(n: number): string {
  const s = ['th', 'st', 'nd', 'rd'];
  const v = n % 100;
  return `${n}${s[(v - 20) % 10] ?? s[v] ?? s[0]}`;
}

/**
 * The memory budgets M of one view: each size's uncompressed bytes (its 'none' cell, the largest
 * over budgets) and the given quantiles (nearest rank) of all cells' bytes; equal values merged.
 */
export function memoryBudgets(data: ReportData, view: BytesView, quantiles = DEFAULT_QUANTILES, extra: number[] = []): MemoryBudget[] {
  const groups = groupCells(data);
  const sources = new Map<number, string[]>();
  const add = (bytes: number, source: string): void => {
    const list = sources.get(bytes);
    if (list) list.push(source);
    else sources.set(bytes, [source]);
  };
  for (const s of sortedSizes(data)) {
    const none = groups.filter((g) => g.sizeId === s.id && g.method === 'none');
    if (none.length) add(Math.max(...none.map((g) => bytesOf(g, view))), `= ${s.id} uncompressed`);
  }
  const all = groups.map((g) => bytesOf(g, view)).sort((a, b) => a - b);
  if (all.length) for (const q of quantiles) add(nearestRank(all, q), `${ordinal(Math.round(q * 100))} percentile of all cells`);
  for (const e of extra) add(e, 'given');
  return [...sources.entries()].sort((a, b) => a[0] - b[0]).map(([bytes, src]) => ({ view, bytes, source: src.join(', ') }));
}

/** Ranks cells: higher mean dev accuracy, then fewer bytes, then higher mean test accuracy, then key. */
function better(view: BytesView) {
  return (a: CellGroup, b: CellGroup): number => b.dev.mean - a.dev.mean || bytesOf(a, view) - bytesOf(b, view) || b.test.mean - a.test.mean || a.key.localeCompare(b.key);
}

/** The best cell of one budget with bytes ≤ M in the given view, by mean dev accuracy; null if none fits. */
export function bestUnder(groups: CellGroup[], budgetId: string, view: BytesView, bytes: number): CellGroup | null {
  const fit = groups.filter((g) => g.budgetId === budgetId && bytesOf(g, view) <= bytes).sort(better(view));
  return fit[0] ?? null;
}

function accText(g: CellGroup): string {
  const seeds = g.dev.n > 1 ? `, ${g.dev.n} seeds` : '';
  return `dev ${formatSpread(g.dev, (x) => fmtPct(x))}, test ${formatSpread(g.test, (x) => fmtPct(x))}${seeds}`;
}

/**
 * The repeats rule (stats.ts compareSpread): 0 when the two accuracies cannot be told apart (equal,
 * or their spread intervals overlap); two single runs are ordered by value (spread unknown).
 */
function compare(a: Stats, b: Stats): number {
  const c = compareSpread(a, b);
  return c.distinction === 'indistinguishable' ? 0 : c.order;
}

export function conclude(data: ReportData, options: ConcludeOptions = {}): Conclusion {
  const quantiles = options.quantiles ?? DEFAULT_QUANTILES;
  const groups = groupCells(data);
  const budgets = sortedBudgets(data);
  const sizeOrder = sortedSizes(data).map((s) => s.id);
  const sizeRank = (id: string): number => sizeOrder.indexOf(id);
  const bestSizes = bestSizePerBudget(data);

  const mbs = BYTES_VIEWS.flatMap((v) => memoryBudgets(data, v, quantiles, options.extraMemoryBudgets));
  const answers: MemoryAnswer[] = [];
  const comparisons: EqualMemoryComparison[] = [];
  const seen = new Set<string>();
  for (const b of budgets) {
    if (!groups.some((g) => g.budgetId === b.id)) continue;
    for (const m of mbs) {
      const best = bestUnder(groups, b.id, m.view, m.bytes);
      const head = `Budget ${b.id}, ${VIEW_NAMES[m.view]}: for ≤ ${fmtBytes(m.bytes)} (${m.source})`;
      const text = best
        ? `${head} the best is size ${best.sizeId} with ${compressionLabel(best)} (${accText(best)}; ${fmtBytes(bytesOf(best, m.view))}).`
        : `${head} no cell fits.`;
      answers.push({ ...m, budgetId: b.id, best, text });

      // equal-memory comparisons: every (larger, smaller) pair of sizes that both fit under M
      const perSize = new Map<string, CellGroup>();
      for (const s of sizeOrder) {
        const g = bestUnder(
          groups.filter((x) => x.sizeId === s),
          b.id,
          m.view,
          m.bytes,
        );
        if (g) perSize.set(s, g);
      }
      const fitting = [...perSize.keys()].sort((x, y) => sizeRank(x) - sizeRank(y));
      for (let i = 0; i < fitting.length; i++) {
        for (let j = i + 1; j < fitting.length; j++) {
          const smaller = perSize.get(fitting[i]!)!;
          const larger = perSize.get(fitting[j]!)!;
          const k = `${b.id}\u0000${m.view}\u0000${larger.key}\u0000${smaller.key}`;
          if (seen.has(k)) continue;
          seen.add(k);
          const c = compare(larger.dev, smaller.dev);
          comparisons.push({ budgetId: b.id, view: m.view, bytes: m.bytes, larger, smaller, winner: c > 0 ? 'larger' : c < 0 ? 'smaller' : 'tie' });
        }
      }
    }
  }

  const robust = robustness(data);
  const { fits, fitLines, fitShort } = computeFits(data);

  const perBudget: BudgetVerdict[] = budgets
    .filter((b) => groups.some((g) => g.budgetId === b.id))
    .map((b) => {
      const cs = comparisons.filter((c) => c.budgetId === b.id);
      const largerWins = cs.filter((c) => c.winner === 'larger').length;
      const smallerWins = cs.filter((c) => c.winner === 'smaller').length;
      const ties = cs.length - largerWins - smallerWins;
      const judgement: Judgement = largerWins + smallerWins === 0 ? 'undecided' : largerWins > smallerWins ? 'supports' : smallerWins > largerWins ? 'contradicts' : 'neither';
      return { budgetId: b.id, largerWins, smallerWins, ties, judgement };
    });
  const decided = perBudget.filter((p) => p.judgement !== 'undecided');
  const judgement: Judgement =
    decided.length === 0 ? 'undecided' : decided.every((p) => p.judgement === 'supports') ? 'supports' : decided.every((p) => p.judgement === 'contradicts') ? 'contradicts' : 'neither';

  const caveat = seedCaveat(data);
  const verdict = writeVerdict(data, bestSizes, comparisons, robust, perBudget, judgement, caveat);
  const headline = writeHeadline(data, answers, perBudget, judgement, caveat);
  const lines = [...bestSizes.map((b) => b.text), ...answers.map((a) => a.text), ...fitLines, ...robust.cases.map((c) => c.text), verdict];
  return { fits, fitLines, fitHeadline: fitShort, bestSizes, memoryBudgets: mbs, answers, comparisons, robustness: robust, perBudget, judgement, verdict, headline, lines };
}

/** The minimum number of sizes an IsoFLOP parabola is fitted to. */
export const MIN_FIT_SIZES = 3;

/**
 * The compute-optimal fits, or plain sentences saying why there are none: fewer than 3 sizes (no
 * parabola), one budget (no N_opt ∝ C^a across budgets).
 */
function computeFits(data: ReportData): { fits: ReportFits | null; fitLines: string[]; fitShort: string } {
  const sizesWithFinals = new Set(data.finals.filter((f) => Number.isFinite(f.valLoss)).map((f) => f.sizeId)).size;
  if (sizesWithFinals < MIN_FIT_SIZES) {
    const why = `Compute-optimal size: not fitted. The IsoFLOP parabola needs final losses of at least ${MIN_FIT_SIZES} sizes; this run has ${sizesWithFinals}.`;
    return { fits: null, fitLines: [why], fitShort: why };
  }
  const fits = fitReportData(data);
  const lines = fitConclusion(fits);
  const budgets = new Set(data.finals.map((f) => f.budgetId)).size;
  if (budgets < 2) lines.push(`Only one budget was run, so N_opt ∝ C^a across budgets is not fitted and no crossover budget is estimated.`);
  return { fits, fitLines: lines, fitShort: fitHeadline(fits) };
}

function list(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join('; ')}; and ${items[items.length - 1]}`;
}

/** The caveat every verdict ends with: one seed, or how seeds were compared. */
function seedCaveat(data: ReportData): string {
  // Seeds per cell across the report (not only the compared ones: with one size nothing is compared).
  const maxSeeds = Math.max(1, ...data.cells.map((c) => (c.seed === undefined ? 1 : data.cells.filter((o) => o.sizeId === c.sizeId && o.budgetId === c.budgetId && o.method === c.method && o.level === c.level).length)));
  return maxSeeds > 1
    ? `Accuracies and losses are means over seeds; two values whose spreads overlap (${SPREAD_NOTE}) are not distinguishable and are counted as such, not ranked.`
    : 'Each cell was measured with one seed, so small differences may be noise.';
}

interface WinnerRun {
  sizeId: string;
  from: number;
  to: number;
}

/** Which size gives the best cell along the memory budgets of one (budget, view), as runs of the same size. */
function winnerRuns(answers: MemoryAnswer[]): WinnerRun[] {
  const runs: WinnerRun[] = [];
  for (const a of [...answers].sort((x, y) => x.bytes - y.bytes)) {
    if (!a.best) continue;
    const last = runs[runs.length - 1];
    if (last && last.sizeId === a.best.sizeId) last.to = a.bytes;
    else runs.push({ sizeId: a.best.sizeId, from: a.bytes, to: a.bytes });
  }
  return runs;
}

/** "tiny up to 2.01 MB, small from 5.5 MB to 21.5 MB and base from 93.8 MB" */
function runsText(runs: WinnerRun[]): string {
  const items = runs.map((r, i) =>
    i === 0 ? `${r.sizeId} up to ${fmtBytes(r.to)}` : i === runs.length - 1 ? `${r.sizeId} from ${fmtBytes(r.from)}` : r.from === r.to ? `${r.sizeId} at ${fmtBytes(r.from)}` : `${r.sizeId} from ${fmtBytes(r.from)} to ${fmtBytes(r.to)}`,
  );
  return listAnd(items);
}

/** The short verdict the report opens with (see Conclusion.headline). */
/** `caveat`: seedCaveat's sentence, which the verdict ends with too. */
function writeHeadline(data: ReportData, answers: MemoryAnswer[], perBudget: BudgetVerdict[], judgement: Judgement, caveat: string): string {
  if (perBudget.length === 0) return `There are no compression cells, so the report cannot say which size is best at a memory budget. ${caveat}`;
  const budgetById = new Map(data.budgets.map((b) => [b.id, b]));
  const perBudgetText = perBudget.map((p) => {
    const label = budgetLabel(budgetById.get(p.budgetId)!);
    const [total, nonEmb] = BYTES_VIEWS.map((v) => winnerRuns(answers.filter((a) => a.budgetId === p.budgetId && a.view === v)));
    if (total!.length === 0 && nonEmb!.length === 0) return `at ${label} no cell fits any memory budget`;
    const only = [...total!, ...nonEmb!].map((r) => r.sizeId);
    if (total!.length === 1 && nonEmb!.length === 1 && only[0] === only[1]) return `at ${label} ${only[0]} gives the best cell at every memory budget, in both bytes views`;
    const one = (runs: WinnerRun[]): string => (runs.length === 0 ? 'no cell fits' : runs.length === 1 ? `${runs[0]!.sizeId} at every memory budget` : runsText(runs));
    return `at ${label} the best cell comes from ${one(total!)} in total bytes (non-embedding bytes: ${one(nonEmb!)})`;
  });
  const cap = (t: string): string => `${t[0]!.toUpperCase()}${t.slice(1)}`;
  const sentences: string[] = perBudgetText.length <= 2 ? perBudgetText.map((t) => `${cap(t)}.`) : [`${cap(perBudgetText.join('; '))}.`];
  const tally = (p: BudgetVerdict): string => (p.judgement === 'undecided' ? `${p.budgetId} none` : `${p.budgetId} ${p.largerWins}–${p.smallerWins}${p.ties ? ` (${p.ties} not distinguishable)` : ''}`);
  const tallies = `equal-memory comparisons won, larger vs smaller: ${perBudget.map(tally).join(', ')}`;
  const at = (j: Judgement): string[] => perBudget.filter((p) => p.judgement === j).map((p) => p.budgetId);
  switch (judgement) {
    case 'supports':
      sentences.push(`So a larger model compressed to the memory budget beats a smaller one compressed less, as the paper claims (${tallies}).`);
      break;
    case 'contradicts':
      sentences.push(`So the smaller model wins at equal memory, contrary to the paper’s claim (${tallies}).`);
      break;
    case 'neither': {
      const parts = [at('supports').length ? `the larger model wins at ${at('supports').join(', ')}` : '', at('contradicts').length ? `the smaller at ${at('contradicts').join(', ')}` : '', at('neither').length ? `neither at ${at('neither').join(', ')}` : ''].filter(Boolean);
      sentences.push(`So whether larger-then-compressed wins at equal memory depends on the budget: ${parts.join(', ')} (${tallies}).`);
      break;
    }
    case 'undecided':
      sentences.push(`So the data cannot settle whether larger-then-compressed wins: no memory budget fits cells of two sizes.`);
      break;
  }
  sentences.push(caveat);
  return sentences.join(' ');
}

function writeVerdict(
  data: ReportData,
  bestSizes: BestSize[],
  comparisons: EqualMemoryComparison[],
  robust: Robustness,
  perBudget: BudgetVerdict[],
  judgement: Judgement,
  caveat: string,
): string {
  const budgetById = new Map(data.budgets.map((b) => [b.id, b]));
  const parts: string[] = [];
  parts.push(
    'Verdict, computed from this run’s numbers: the paper claims that under a fixed training budget a larger model reaches a lower loss and, compressed to a given memory budget, beats a smaller model that is compressed less.',
  );

  // claim 1: pretraining
  const multi = bestSizes.filter((b) => b.of > 1);
  if (multi.length > 0) {
    const where = (b: BestSize): string => (b.rank === 0 ? 'the smallest size' : b.rank === b.of - 1 ? 'the largest size' : 'an intermediate size');
    const tied = (b: BestSize): string => (b.distinction === 'indistinguishable' ? ` (not distinguishable from ${b.ranking[1]!.sizeId})` : '');
    parts.push(`Pretraining: ${list(multi.map((b) => `at ${budgetLabel(budgetById.get(b.budgetId)!)} ${where(b)}, ${b.sizeId}, reached the lowest validation loss${tied(b)}`))}.`);
    if (multi.every((b) => b.rank === b.of - 1)) {
      parts.push('The largest size won at every budget, as the paper claims (the best size may lie beyond the largest one tried).');
    } else if (multi.every((b) => b.rank === 0)) {
      parts.push('The smallest size won at every budget: at these budgets smaller is better, the opposite of the paper’s claim and what compute-optimal scaling predicts for small budgets.');
    } else {
      // does the best size grow with the budget (within budgets of one kind, by value)?
      const sizeOrder = sortedSizes(data).map((s) => s.id);
      const byKind = (['flops', 'seconds'] as const).map((k) =>
        multi.filter((b) => budgetById.get(b.budgetId)!.kind === k).sort((x, y) => budgetById.get(x.budgetId)!.value - budgetById.get(y.budgetId)!.value),
      );
      const grows = byKind.every((seq) => seq.every((b, i) => i === 0 || sizeOrder.indexOf(b.sizeId) >= sizeOrder.indexOf(seq[i - 1]!.sizeId)));
      parts.push(
        grows
          ? 'The best size grows with the budget, as compute-optimal scaling predicts: a larger model pays off only once the budget is large enough.'
          : 'The best size changes with the budget without a monotone trend.',
      );
    }
  }

  // claim 4: equal memory
  if (comparisons.length === 0) {
    if (data.cells.length > 0) parts.push('At equal memory nothing can be compared: no memory budget fits cells of two different sizes.');
  } else {
    const count = (v: BytesView): string => {
      const cs = comparisons.filter((c) => c.view === v);
      const l = cs.filter((c) => c.winner === 'larger').length;
      const s = cs.filter((c) => c.winner === 'smaller').length;
      return `${VIEW_NAMES[v]}: larger ${l}, smaller ${s}, not distinguishable ${cs.length - l - s}`;
    };
    parts.push(
      `At equal memory (a larger and a smaller size, each with its best cell that fits the same memory budget; ${comparisons.length} distinct comparisons) the wins were — ${count('total')}; ${count('nonEmbedding')}.`,
    );
  }
  if (data.cells.length > 0) parts.push(robust.sentence);

  // the answer, per budget
  const say = (p: BudgetVerdict): string => {
    const tally = `larger ${p.largerWins} vs smaller ${p.smallerWins} wins, ${p.ties} not distinguishable`;
    switch (p.judgement) {
      case 'supports':
        return `at ${p.budgetId} the data supports the claim: larger-then-compressed beats smaller-lightly-compressed at equal memory (${tally})`;
      case 'contradicts':
        return `at ${p.budgetId} the data contradicts the claim: the smaller model wins at equal memory (${tally}), as compute-optimal scaling predicts when the budget is small`;
      case 'neither':
        return `at ${p.budgetId} the data neither supports nor contradicts the claim (${tally})`;
      case 'undecided':
        return `at ${p.budgetId} nothing could be compared`;
    }
  };
  const head =
    judgement === 'supports'
      ? 'So the data supports the paper’s claim'
      : judgement === 'contradicts'
        ? 'So the data contradicts the paper’s claim: here the smaller model wins'
        : judgement === 'neither'
          ? 'So whether larger-then-compressed wins depends on the budget'
          : 'So the data cannot settle the claim';
  parts.push(perBudget.length > 0 ? `${head}: ${list(perBudget.map(say))}.` : `${head}: there are no compression cells.`);

  parts.push(caveat);
  return parts.join(' ');
}
