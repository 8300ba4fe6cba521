/**
 * Repeats (`seeds: n`): a summary of the values one configuration gave over its seeds, the rule
 * that says whether two summarized values can be told apart, and a ranking that puts entries it
 * cannot tell apart in one tie group instead of ordering them. Pure functions; rules in
 * docs/report.md ("Fits, repeats and uncertainty").
 *
 * The rule, in one line: two values are *distinguishable* only when their spread intervals do not
 * overlap. A spread interval is [min, max] with 2 repeats and mean ± 1 sd (sample sd) with 3 or
 * more; a single run has no known spread (its interval is the point itself). Two single runs are
 * never called distinguishable or tied: their order is by value and labelled "single run, spread
 * unknown".
 */

/** What one configuration gave over its repeats. `sd` is the sample standard deviation (n − 1); 0 with one value. */
export interface Summary {
  mean: number;
  sd: number;
  min: number;
  max: number;
  n: number;
}

/** Anything with a mean, a range and a count (aggregate.ts's Stats is one); `sd` when known. */
export interface SpreadLike {
  mean: number;
  min: number;
  max: number;
  n: number;
  sd?: number;
}

/** Mean, sample sd, min, max and count of finite values; throws on an empty list or a non-finite value. */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new RangeError('summarize: no values');
  for (const v of values) if (!Number.isFinite(v)) throw new RangeError(`summarize: not a finite number: ${v}`);
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  let ss = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    ss += (v - mean) ** 2;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { mean, sd: n > 1 ? Math.sqrt(ss / (n - 1)) : 0, min, max, n };
}

/** Which interval stands for a value's spread. */
export type SpreadKind = 'range' | 'sd' | 'none';

export interface SpreadInterval {
  lo: number;
  hi: number;
  /** 'range': [min, max] (2 repeats, or 3+ without a known sd); 'sd': mean ± sd (3+ repeats); 'none': one run */
  kind: SpreadKind;
}

/** The rule of spreadInterval in words, for captions and sentences. */
export const SPREAD_NOTE = 'min–max with 2 seeds, mean ± 1 sd with 3 or more';

/** The interval the distinguishability rule (and the plots' error bars) use for one summarized value. */
export function spreadInterval(s: SpreadLike): SpreadInterval {
  if (s.n <= 1) return { lo: s.mean, hi: s.mean, kind: 'none' };
  if (s.n >= 3 && s.sd !== undefined && Number.isFinite(s.sd)) return { lo: s.mean - s.sd, hi: s.mean + s.sd, kind: 'sd' };
  return { lo: s.min, hi: s.max, kind: 'range' };
}

export type Distinction = 'distinguishable' | 'indistinguishable' | 'unknown';

export interface Comparison {
  /** 'unknown' when both are single runs (no spread known on either side) */
  distinction: Distinction;
  /** sign of a.mean − b.mean */
  order: -1 | 0 | 1;
}

/**
 * Whether a and b can be told apart: equal means are indistinguishable; two single runs are
 * 'unknown'; otherwise distinguishable exactly when the spread intervals do not overlap (touching
 * intervals overlap). A single run against repeats counts as the point mean, so it is
 * indistinguishable from the repeats when it lies inside their interval.
 */
export function compareSpread(a: SpreadLike, b: SpreadLike): Comparison {
  const order = a.mean === b.mean ? 0 : a.mean > b.mean ? 1 : -1;
  if (order === 0) return { distinction: 'indistinguishable', order };
  if (a.n <= 1 && b.n <= 1) return { distinction: 'unknown', order };
  const ia = spreadInterval(a);
  const ib = spreadInterval(b);
  const overlap = ia.lo <= ib.hi && ib.lo <= ia.hi;
  return { distinction: overlap ? 'indistinguishable' : 'distinguishable', order };
}

export interface RankedEntry<T> {
  item: T;
  summary: SpreadLike;
  /** competition rank, 1 = best; entries of one tie group share it (1, 1, 3, …) */
  rank: number;
  /** index of the tie group, 0 = best */
  group: number;
}

/**
 * How the order was decided: 'spread' (every entry has repeats), 'single-run' (none has: the order
 * is by value only, spread unknown) or 'mixed'.
 */
export type RankingBasis = 'spread' | 'single-run' | 'mixed';

export interface Ranking<T> {
  /** best first */
  entries: Array<RankedEntry<T>>;
  /** the tie groups, best first; a group of several entries is "not distinguishable" */
  groups: Array<Array<RankedEntry<T>>>;
  basis: RankingBasis;
}

/**
 * Ranks items by their summarized value (lowest first when `lowerIsBetter`, e.g. a loss; highest
 * first otherwise) and groups the ones that cannot be told apart: two entries share a tie group
 * when they are indistinguishable (compareSpread), and groups are closed under that relation (if
 * a ~ b and b ~ c, all three tie even when a and c could be told apart). With intervals that
 * contain their means, such groups are runs of consecutive entries. Pairs whose distinction is
 * 'unknown' (two single runs) are ordered by value, never tied, unless their values are equal.
 * Equal values keep the input order.
 */
export function rankBySpread<T>(items: readonly T[], summaryOf: (item: T) => SpreadLike, options: { lowerIsBetter?: boolean } = {}): Ranking<T> {
  const lower = options.lowerIsBetter ?? true;
  const rows = items.map((item, i) => ({ item, summary: summaryOf(item), i }));
  rows.sort((x, y) => (lower ? x.summary.mean - y.summary.mean : y.summary.mean - x.summary.mean) || x.i - y.i);
  // union–find over "indistinguishable"
  const parent = rows.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]!)));
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      if (compareSpread(rows[i]!.summary, rows[j]!.summary).distinction === 'indistinguishable') parent[find(j)] = find(i);
    }
  }
  // groups in order of their best member; members keep the sorted order
  const groups: Array<Array<RankedEntry<T>>> = [];
  const entries: Array<RankedEntry<T>> = [];
  const byRoot = new Map<number, number[]>();
  rows.forEach((_, i) => {
    const r = find(i);
    const list = byRoot.get(r);
    if (list) list.push(i);
    else byRoot.set(r, [i]);
  });
  const ordered = [...byRoot.values()].sort((a, b) => a[0]! - b[0]!);
  let rank = 1;
  ordered.forEach((members, g) => {
    const group: Array<RankedEntry<T>> = [];
    for (const i of members) {
      const e: RankedEntry<T> = { item: rows[i]!.item, summary: rows[i]!.summary, rank, group: g };
      group.push(e);
    }
    rank += members.length;
    groups.push(group);
  });
  for (const g of groups) entries.push(...g);
  const singles = rows.filter((r) => r.summary.n <= 1).length;
  const basis: RankingBasis = singles === rows.length ? 'single-run' : singles === 0 ? 'spread' : 'mixed';
  return { entries, groups, basis };
}

/**
 * A summarized value for a table cell: "3.1000" for one run; "3.1000 (3.0500–3.1500)" with 2
 * repeats; "3.1000 ± 0.0500" with 3 or more (the same interval the rule uses); `fmt` formats each
 * number (e.g. aggregate.ts's fmtLoss or fmtPct).
 */
export function formatSpread(s: SpreadLike, fmt: (x: number) => string = (x) => String(x)): string {
  const iv = spreadInterval(s);
  if (iv.kind === 'none') return fmt(s.mean);
  if (iv.kind === 'sd') return `${fmt(s.mean)} ± ${fmt(s.sd!)}`;
  return `${fmt(s.mean)} (${fmt(iv.lo)}–${fmt(iv.hi)})`;
}
