/**
 * Repeats: summaries over seeds, the distinguishability rule, and rankings that tie what the
 * spread cannot tell apart (report/stats.ts), on constructed values whose answer is known.
 */
import test from 'ava';
import { compareSpread, formatSpread, rankBySpread, spreadInterval, summarize, type SpreadLike } from '../../report/stats.ts';

const close = (a: number, b: number, tol = 1e-12): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test('summarize: mean, sample sd, min, max, n; one value has sd 0; no values or a non-finite one throws', (t) => {
  const s = summarize([1, 2, 3, 4]);
  t.is(s.mean, 2.5);
  t.true(close(s.sd, Math.sqrt(5 / 3)));
  t.deepEqual([s.min, s.max, s.n], [1, 4, 4]);
  t.deepEqual(summarize([7]), { mean: 7, sd: 0, min: 7, max: 7, n: 1 });
  t.throws(() => summarize([]), { instanceOf: RangeError });
  t.throws(() => summarize([1, Number.NaN]), { instanceOf: RangeError });
  t.throws(() => summarize([1, Infinity]), { instanceOf: RangeError });
});

test('spreadInterval: a point for one run, [min, max] for two, mean ± sd from three (or min–max when no sd is known)', (t) => {
  t.deepEqual(spreadInterval(summarize([3])), { lo: 3, hi: 3, kind: 'none' });
  t.deepEqual(spreadInterval(summarize([1, 3])), { lo: 1, hi: 3, kind: 'range' });
  const three = summarize([1, 2, 3]);
  t.deepEqual(spreadInterval(three), { lo: 1, hi: 3, kind: 'sd' }); // sd = 1
  t.deepEqual(spreadInterval({ mean: 2, min: 0, max: 5, n: 4 }), { lo: 0, hi: 5, kind: 'range' }, 'aggregate.ts Stats has no sd');
});

test('compareSpread: overlapping spreads are indistinguishable, separate ones distinguishable, two single runs unknown', (t) => {
  const a = summarize([1.0, 1.2]);
  const b = summarize([1.1, 1.3]);
  const c = summarize([2.0, 2.1]);
  t.deepEqual(compareSpread(a, b), { distinction: 'indistinguishable', order: -1 });
  t.deepEqual(compareSpread(c, a), { distinction: 'distinguishable', order: 1 });
  t.deepEqual(compareSpread(summarize([1.2, 1.3]), summarize([1.0, 1.2])), { distinction: 'indistinguishable', order: 1 }, 'touching ranges overlap');
  t.deepEqual(compareSpread(summarize([1]), summarize([2])), { distinction: 'unknown', order: -1 });
  t.deepEqual(compareSpread(summarize([2]), summarize([2])), { distinction: 'indistinguishable', order: 0 }, 'equal values tie even without a spread');
  // a single run inside the other's spread is indistinguishable from it; outside it, distinguishable
  t.is(compareSpread(summarize([1.1]), a).distinction, 'indistinguishable');
  t.is(compareSpread(summarize([1.5]), a).distinction, 'distinguishable');
  // with 3+ repeats the interval is mean ± sd, narrower than the range here
  const d = summarize([0, 1, 2, 10]); // mean 3.25, sd ≈ 4.57: [−1.32, 7.82]
  const e = summarize([8, 8.5, 9]); // mean 8.5, sd 0.5: [8, 9]
  t.is(compareSpread(d, e).distinction, 'distinguishable', 'the ranges [0, 10] and [8, 9] overlap, the sd intervals do not');
});

interface Row {
  id: string;
  s: SpreadLike;
}
const ids = (groups: Array<Array<{ item: Row }>>): string[][] => groups.map((g) => g.map((e) => e.item.id));

test('rankBySpread: indistinguishable entries share a tie group and a rank; distinguishable ones are ordered', (t) => {
  const rows: Row[] = [
    { id: 'C', s: summarize([2.0, 2.1]) },
    { id: 'A', s: summarize([1.0, 1.2]) },
    { id: 'B', s: summarize([1.1, 1.3]) },
    { id: 'D', s: summarize([3.0, 3.05]) },
  ];
  const r = rankBySpread(rows, (x) => x.s, { lowerIsBetter: true });
  t.deepEqual(ids(r.groups), [['A', 'B'], ['C'], ['D']]);
  t.deepEqual(
    r.entries.map((e) => [e.item.id, e.rank, e.group]),
    [
      ['A', 1, 0],
      ['B', 1, 0],
      ['C', 3, 1],
      ['D', 4, 2],
    ],
  );
  t.is(r.basis, 'spread');
  // higher is better (an accuracy): the same data in the other order
  const up = rankBySpread(rows, (x) => x.s, { lowerIsBetter: false });
  t.deepEqual(ids(up.groups), [['D'], ['C'], ['B', 'A']]);
});

test('rankBySpread: ties are closed under chains (a ~ b, b ~ c ⇒ one group even when a and c differ)', (t) => {
  const rows: Row[] = [
    { id: 'a', s: summarize([1.0, 1.2]) },
    { id: 'b', s: summarize([1.15, 1.45]) },
    { id: 'c', s: summarize([1.4, 1.6]) },
    { id: 'd', s: summarize([5, 6]) },
  ];
  t.is(compareSpread(rows[0]!.s, rows[2]!.s).distinction, 'distinguishable');
  const r = rankBySpread(rows, (x) => x.s);
  t.deepEqual(ids(r.groups), [['a', 'b', 'c'], ['d']]);
  t.deepEqual(r.entries.map((e) => e.rank), [1, 1, 1, 4]);
});

test('rankBySpread: single runs are ordered by value and labelled single-run; mixed data says so', (t) => {
  const rows: Row[] = [
    { id: 'x', s: summarize([2]) },
    { id: 'y', s: summarize([1]) },
    { id: 'z', s: summarize([1]) },
  ];
  const r = rankBySpread(rows, (x) => x.s);
  t.is(r.basis, 'single-run');
  t.deepEqual(ids(r.groups), [['y', 'z'], ['x']], 'equal values tie; otherwise ordered, spread unknown');
  const mixed = rankBySpread([...rows, { id: 'w', s: summarize([1.5, 2.5]) }], (x) => x.s);
  t.is(mixed.basis, 'mixed');
  t.deepEqual(ids(mixed.groups), [['y', 'z'], ['x', 'w']], 'the single run x = 2 lies inside w’s range (equal means keep the input order)');
  t.deepEqual(rankBySpread([], (x: Row) => x.s), { entries: [], groups: [], basis: 'single-run' });
});

test('formatSpread: a table cell shows the same interval the rule uses', (t) => {
  const f = (x: number): string => x.toFixed(2);
  t.is(formatSpread(summarize([3.1]), f), '3.10');
  t.is(formatSpread(summarize([3.0, 3.2]), f), '3.10 (3.00–3.20)');
  t.is(formatSpread(summarize([3.0, 3.1, 3.2]), f), '3.10 ± 0.10');
  t.is(formatSpread({ mean: 3.1, min: 3, max: 3.2, n: 3 }, f), '3.10 (3.00–3.20)', 'no sd known: the range');
});
