/**
 * Robustness to compression by model size (the paper's second claim: larger models compress
 * better). For every compressed cell, the accuracy drop against the uncompressed fine-tuned model
 * of the same size, budget and seed (percentage points of dev accuracy); summarized over seeds; and
 * per (budget, compression family) at the harshest level every size has, whether the larger sizes
 * lose less — decided with the repeats rule of stats.ts (overlapping spreads are "not
 * distinguishable", single runs are ordered by value and labelled). Pure functions; rules in
 * docs/report.md ("Robustness to compression").
 */
import { budgetLabel, listAnd, sortedBudgets, sortedSizes } from './aggregate.ts';
import { compareSpread, formatSpread, rankBySpread, summarize, type Distinction, type Ranking, type Summary } from './stats.ts';
import type { Cell, ReportData } from './types.ts';

/**
 * A compression family: one axis along which the level grows harsher. Quantization per granularity
 * (level = bits, harsher = fewer), one-shot and iterative pruning (level = sparsity, harsher = more).
 * Pruning + quantization mixes two axes and is left out.
 */
export interface Family {
  id: string;
  label: string;
  axis: 'bits' | 'sparsity';
  matches: (c: Cell) => boolean;
}

export const FAMILIES: readonly Family[] = [
  { id: 'quant-channel', label: 'quantization per channel', axis: 'bits', matches: (c) => c.method === 'quant' && c.granularity !== 'tensor' && c.bits !== undefined },
  { id: 'quant-tensor', label: 'quantization per tensor', axis: 'bits', matches: (c) => c.method === 'quant' && c.granularity === 'tensor' && c.bits !== undefined },
  { id: 'prune-oneshot', label: 'one-shot pruning', axis: 'sparsity', matches: (c) => c.method === 'prune-oneshot' && c.sparsity !== undefined },
  { id: 'prune-iterative', label: 'iterative pruning', axis: 'sparsity', matches: (c) => c.method === 'prune-iterative' && c.sparsity !== undefined },
];

/** One (budget, size, family, level): the drop in dev accuracy over its seeds. */
export interface DropPoint {
  budgetId: string;
  sizeId: string;
  family: string;
  /** bits (quantization) or sparsity (pruning) */
  level: number;
  /** the cell's level label, e.g. "4-bit/channel" */
  levelLabel: string;
  /** uncompressed dev accuracy − compressed dev accuracy (a fraction: 0.05 = 5 points), over seeds */
  drop: Summary;
  /** the compressed dev accuracy itself, over seeds */
  accuracy: Summary;
}

export type RobustnessWinner = 'larger' | 'smaller' | 'not distinguishable';

/** Per (budget, family), at the harshest level every size has: the sizes ranked by drop, and the largest against the smallest. */
export interface RobustnessCase {
  budgetId: string;
  family: string;
  familyLabel: string;
  level: number;
  levelLabel: string;
  /** harsher levels left out because a size was at the floor accuracy there (labels) */
  floorLevels: string[];
  /** smallest drop first; sizes whose spreads overlap share a tie group */
  ranking: Ranking<{ sizeId: string }>;
  smallest: { sizeId: string; drop: Summary };
  largest: { sizeId: string; drop: Summary };
  /** 'unknown' when both are single runs (then `winner` is by value) */
  distinction: Distinction;
  /** which of the two lost less */
  winner: RobustnessWinner;
  text: string;
}

export type RobustnessJudgement = 'larger' | 'smaller' | 'mixed' | 'not distinguishable' | 'undecided';

export interface Robustness {
  points: DropPoint[];
  cases: RobustnessCase[];
  /** larger: every decided case has the larger size losing less; smaller: the reverse; mixed: both occur */
  judgement: RobustnessJudgement;
  /** every case was decided on single runs (spread unknown) */
  singleRun: boolean;
  /** one paragraph */
  sentence: string;
}

/** "3.1 pts", "3.1 (2.9–3.3) pts", "3.1 ± 0.2 pts" */
export const dropText = (s: Summary): string => `${formatSpread(s, (x) => (x * 100).toFixed(1))} pts`;

function levelOf(f: Family, c: Cell): number {
  return f.axis === 'bits' ? c.bits! : c.sparsity!;
}

/**
 * The drop of every compressed cell of a family against its size's uncompressed cell: per seed
 * when both have seeds (the same seed's 'none' cell), else against the mean of the 'none' cells.
 */
export function dropPoints(data: ReportData): DropPoint[] {
  const out: DropPoint[] = [];
  const none = data.cells.filter((c) => c.method === 'none');
  for (const b of sortedBudgets(data)) {
    for (const s of sortedSizes(data)) {
      const base = none.filter((c) => c.budgetId === b.id && c.sizeId === s.id);
      if (base.length === 0) continue;
      const baseMean = base.reduce((a, c) => a + c.devAccuracy, 0) / base.length;
      const baseOf = (seed: number | undefined): number => (seed !== undefined ? (base.find((c) => c.seed === seed)?.devAccuracy ?? baseMean) : baseMean);
      for (const f of FAMILIES) {
        const cells = data.cells.filter((c) => c.budgetId === b.id && c.sizeId === s.id && f.matches(c));
        const byLevel = new Map<number, Cell[]>();
        for (const c of cells) {
          const l = levelOf(f, c);
          const list = byLevel.get(l);
          if (list) list.push(c);
          else byLevel.set(l, [c]);
        }
        const levels = [...byLevel.keys()].sort((x, y) => (f.axis === 'bits' ? y - x : x - y));
        for (const l of levels) {
          const rows = byLevel.get(l)!;
          const drops = rows.map((c) => baseOf(c.seed) - c.devAccuracy).filter(Number.isFinite);
          if (drops.length === 0) continue;
          out.push({ budgetId: b.id, sizeId: s.id, family: f.id, level: l, levelLabel: rows[0]!.level, drop: summarize(drops), accuracy: summarize(rows.map((c) => c.devAccuracy)) });
        }
      }
    }
  }
  return out;
}

/** The robustness cases and the sentence on whether larger sizes are more robust. */
export function robustness(data: ReportData): Robustness {
  const points = dropPoints(data);
  const sizeOrder = sortedSizes(data).map((s) => s.id);
  const budgets = sortedBudgets(data);
  const cases: RobustnessCase[] = [];
  for (const b of budgets) {
    for (const f of FAMILIES) {
      const mine = points.filter((p) => p.budgetId === b.id && p.family === f.id);
      const sizes = sizeOrder.filter((s) => mine.some((p) => p.sizeId === s));
      if (sizes.length < 2) continue;
      // the harshest level every size has
      const shared = [...new Set(mine.map((p) => p.level))].filter((l) => sizes.every((s) => mine.some((p) => p.sizeId === s && p.level === l)));
      if (shared.length === 0) continue;
      // harshest first. A size whose compressed accuracy sits at the floor (chance: the lowest
      // accuracy of this family and budget, reached at two or more (size, level) points, a plateau)
      // cannot lose more, so its drop there is only its uncompressed accuracy minus the floor and
      // says nothing about robustness: levels where any size is at the floor are passed over
      const harshFirst = [...shared].sort((x, y) => (f.axis === 'bits' ? x - y : y - x));
      const floor = Math.min(...mine.map((p) => p.accuracy.mean));
      const tol = Math.max(0.005, ...mine.map((p) => p.accuracy.sd));
      const plateau = mine.filter((p) => p.accuracy.mean <= floor + tol).length >= 2;
      const atFloor = (l: number): boolean => plateau && sizes.some((sz) => mine.find((p) => p.sizeId === sz && p.level === l)!.accuracy.mean <= floor + tol);
      const pick = harshFirst.find((l) => !atFloor(l));
      if (pick === undefined) continue;
      const floorLevels = harshFirst.slice(0, harshFirst.indexOf(pick)).map((l) => mine.find((p) => p.level === l)!.levelLabel);
      const level = pick;
      const at = sizes.map((s) => mine.find((p) => p.sizeId === s && p.level === level)!);
      const ranking = rankBySpread(
        at.map((p) => ({ sizeId: p.sizeId })),
        (r) => at.find((p) => p.sizeId === r.sizeId)!.drop,
        { lowerIsBetter: true },
      );
      const small = at[0]!;
      const large = at[at.length - 1]!;
      const cmp = compareSpread(large.drop, small.drop);
      const winner: RobustnessWinner = cmp.distinction === 'indistinguishable' || cmp.order === 0 ? 'not distinguishable' : cmp.order < 0 ? 'larger' : 'smaller';
      const order = ranking.groups.map((g) => (g.length === 1 ? `${g[0]!.item.sizeId} ${dropText(g[0]!.summary as Summary)}` : `${listAnd(g.map((e) => `${e.item.sizeId} ${dropText(e.summary as Summary)}`))} (not distinguishable)`)).join('; then ');
      const verdict =
        winner === 'not distinguishable'
          ? `the largest (${large.sizeId}) and the smallest (${small.sizeId}) are not distinguishable`
          : winner === 'larger'
            ? `the largest (${large.sizeId}) loses less than the smallest (${small.sizeId})`
            : `the smallest (${small.sizeId}) loses less than the largest (${large.sizeId})`;
      const label = cmp.distinction === 'unknown' ? ' (single run, spread unknown)' : '';
      const floorNote = floorLevels.length ? ` (at ${listAnd(floorLevels)} a size is at the floor accuracy, a plateau where it cannot lose more, so the harshest level where every size is above it is used)` : '';
      const text = `At ${budgetLabel(b)}, ${f.label} at ${at[0]!.levelLabel}${floorNote}: accuracy drop ${order}; ${verdict}${label}.`;
      cases.push({ budgetId: b.id, family: f.id, familyLabel: f.label, level, levelLabel: at[0]!.levelLabel, floorLevels, ranking, smallest: { sizeId: small.sizeId, drop: small.drop }, largest: { sizeId: large.sizeId, drop: large.drop }, distinction: cmp.distinction, winner, text });
    }
  }
  const larger = cases.filter((c) => c.winner === 'larger').length;
  const smaller = cases.filter((c) => c.winner === 'smaller').length;
  const ties = cases.length - larger - smaller;
  const singleRun = cases.length > 0 && cases.every((c) => c.distinction === 'unknown');
  const judgement: RobustnessJudgement =
    cases.length === 0 ? 'undecided' : larger > 0 && smaller === 0 ? 'larger' : smaller > 0 && larger === 0 ? 'smaller' : larger > 0 && smaller > 0 ? 'mixed' : 'not distinguishable';
  let sentence: string;
  if (cases.length === 0) {
    sentence = 'Robustness to compression by size: no compression level was measured for two sizes, so robustness cannot be compared.';
  } else {
    const tally = `largest size lost less in ${larger}, the smallest in ${smaller}, not distinguishable in ${ties} of ${cases.length} (budget, method) cases, at the harshest level all sizes share that leaves them above the floor accuracy`;
    const how = singleRun ? ' Single runs: the spread is unknown, so the comparison is by value and may be noise.' : ' Drops whose spreads over seeds overlap count as not distinguishable.';
    const head =
      judgement === 'larger'
        ? 'Robustness to compression by size: the larger sizes are more robust — they lose less dev accuracy when compressed, as the paper’s second claim says'
        : judgement === 'smaller'
          ? 'Robustness to compression by size: the smaller sizes are more robust here, contrary to the paper’s second claim'
          : judgement === 'mixed'
            ? 'Robustness to compression by size: which size is more robust depends on the budget and the method'
            : 'Robustness to compression by size: the larger and the smaller sizes are not distinguishable in how much accuracy they lose';
    sentence = `${head} (${tally}).${how}`;
  }
  return { points, cases, judgement, singleRun, sentence };
}
