/**
 * The report with the compute-optimal fits, the repeats rule and robustness wired in (issue 17,
 * items 1, 2 and 6), on SYNTHETIC data with a known answer (report/synthetic.ts syntheticKnown:
 * N_opt(C) = 0.02·√C exactly, compression drops set per size).
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fmtParams } from '../../report/aggregate.ts';
import { conclude } from '../../report/conclusion.ts';
import { plotSpecs } from '../../report/plots.ts';
import { robustness } from '../../report/robustness.ts';
import { knownNOpt, syntheticKnown, syntheticReportData } from '../../report/synthetic.ts';
import { htmlEscape, writeReport } from '../../report/write.ts';

const tempDir = (name: string): string => fs.mkdtempSync(path.join(os.tmpdir(), `ttc-report-wired-${name}-`));

/** Well-formed enough: one root <svg>, every tag closed in order. */
function wellFormed(xml: string): boolean {
  const stack: string[] = [];
  let roots = 0;
  for (const m of xml.matchAll(/<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (close) {
      if (stack.pop() !== name) return false;
    } else if (!self) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    }
  }
  return stack.length === 0 && roots === 1;
}

test('writeReport with 5 sizes × 4 FLOP budgets × 3 seeds: the fit plots, the N_opt table at the known optima, the crossover labelled extrapolated, robustness plots and sentence', (t) => {
  const data = syntheticKnown({ seeds: 3, lossNoise: 0.005 });
  const dir = tempDir('full');
  const out = writeReport(dir, data);
  const c = conclude(data);
  for (const name of ['isoflop', 'isoflop-fit', 'nopt-vs-flops', 'robustness-quant', 'robustness-prune']) {
    const f = path.join(dir, 'plots', `${name}.svg`);
    t.true(out.files.includes(f), `${name}.svg written`);
    const svg = fs.readFileSync(f, 'utf8').trim();
    t.true(svg.startsWith('<svg') && wellFormed(svg), `${name}.svg is well-formed SVG`);
  }
  t.false(out.files.some((f) => f.endsWith('nopt-vs-seconds.svg')), 'no seconds budgets, no seconds plot');

  // the fitted optima are the known ones (within the noise), inside or extrapolated as known
  const fits = c.fits!;
  t.truthy(fits);
  const where = fits.perBudget.map((b) => (b.fit.status === 'optimum' ? b.fit.optimum.position : b.fit.status));
  t.deepEqual(where, ['below', 'below', 'inside', 'inside'], 'N_opt 0.63M, 2M below the 4M smallest size; 6.3M, 20M inside');
  for (const b of fits.perBudget) {
    if (b.fit.status !== 'optimum') continue;
    const rel = Math.abs(Math.log(b.fit.optimum.params / knownNOpt(b.budget.value)));
    t.true(rel < 0.1, `${b.budget.id}: N_opt ${b.fit.optimum.params} vs known ${knownNOpt(b.budget.value)}`);
    t.true(b.fit.optimum.interval![0] < knownNOpt(b.budget.value) * 1.1 && b.fit.optimum.interval![1] > knownNOpt(b.budget.value) / 1.1, `${b.budget.id}: the interval brackets the known optimum`);
  }
  t.true(Math.abs(fits.perKind[0]!.law.exponent! - 0.5) < 0.03, `exponent ${fits.perKind[0]!.law.exponent} ≈ 0.5`);

  // the N_opt table: one row per budget, N_opt with its interval and where it lies
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  t.true(md.includes('## Compute-optimal size per budget'));
  t.true(md.includes('| budget | kind | value | sizes fitted | fit | N\\_opt (parameters) | interval (±2 se) | where |'), 'the N_opt table header');
  for (const b of fits.perBudget) {
    if (b.fit.status !== 'optimum') continue;
    const o = b.fit.optimum;
    const row = md.split('\n').find((l) => l.startsWith(`| ${b.budget.id} | flops |`));
    t.truthy(row, `a row for ${b.budget.id}`);
    t.true(row!.includes(`| ${fmtParams(o.params)} (${Math.round(o.params)}) | ${fmtParams(o.interval![0])}–${fmtParams(o.interval![1])} |`), row);
    t.true(row!.includes(o.position === 'inside' ? 'inside the sizes measured' : 'below the sizes measured (extrapolated)'), row);
  }
  t.true(html.includes('<div class="table-wrap" id="table-fits">'), 'the N_opt table in report.html');

  // the crossover: at 1e18 the best is s2 (16M); s3 (32M) wins from N_opt = √(16M·32M) ≈ 22.6M, i.e. C ≈ 1.28e18: beyond the budgets run
  t.regex(c.fitHeadline, /^Compute-optimal size over the FLOP budgets: N_opt ∝ C\^0\.\d+; s3 \(32M\) would start to beat s2 from about 1\.3e18 FLOPs \(extrapolated: outside the budgets run\)\.$/);
  t.true(c.fitLines.some((l) => /s3 \(32M\), would start to reach a lower loss from about 1\.3e18 FLOPs .*\(beyond the largest budget run: extrapolated\)\.$/.test(l)));
  for (const l of c.fitLines) t.true(md.includes(l), 'report.md holds every fit sentence');

  // the page: the headline figure and the verdict stay first, the crossover line follows the verdict, then the plots with the fits after the measured IsoFLOP view
  const body = html.slice(html.indexOf('<body>'));
  const order = ['<figure id="plot-accuracy-vs-bytes" class="headline">', `<p class="verdict" id="verdict">${htmlEscape(c.headline)}</p>`, `<p class="verdict fit" id="verdict-fit">${htmlEscape(c.fitHeadline)}</p>`, '<h2 id="plots">', '<figure id="plot-isoflop">', '<figure id="plot-isoflop-fit">', '<figure id="plot-nopt-vs-flops">', '<figure id="plot-robustness-quant">', '<figure id="plot-robustness-prune">', '<h2 id="conclusion">', '<h2 id="fits">', '<h2 id="budgets">'].map((x) => {
    const i = body.indexOf(x);
    t.true(i >= 0, `report.html has ${x.slice(0, 60)}`);
    return i;
  });
  t.deepEqual(order, [...order].sort((a, b) => a - b), `in order: ${order.join(' ')}`);
  t.regex(body, /<h1>[^<]*<\/h1>\n<figure id="plot-accuracy-vs-bytes"/);
  const mdOrder = ['## Verdict', c.fitHeadline, '## Plots', '](plots/isoflop-fit.svg)', '](plots/nopt-vs-flops.svg)', '## Conclusion in detail', '### Compute-optimal size per budget (IsoFLOP fits)', '### Robustness to compression by size', '\n## Compute-optimal size per budget\n'].map((x) => md.indexOf(x));
  t.false(mdOrder.includes(-1));
  t.deepEqual(mdOrder, [...mdOrder].sort((a, b) => a - b), `md in order: ${mdOrder.join(' ')}`);

  // robustness: larger sizes lose less, distinguishably (3 seeds, small spread)
  t.is(c.robustness.judgement, 'larger');
  t.true(c.robustness.cases.every((x) => x.winner === 'larger' && x.distinction === 'distinguishable'));
  t.regex(c.robustness.sentence, /the larger sizes are more robust/);
  t.true(md.includes(c.robustness.sentence));
  t.true(c.verdict.includes(c.robustness.sentence), 'the verdict says it too');
  // tables show means ± sd with 3 seeds (formatSpread)
  t.regex(md, /\| \d\.\d{4} ± \d\.\d{4} \|/);
});

test('the crossover is labelled measured when it falls within the budgets run', (t) => {
  // at 1e18 the true best (s2, s3) are made worse: s1 (8M) has the lowest loss there, and s2 (16M) overtakes it from N_opt ≈ 11.3M, C ≈ 3.2e17 < 1e18
  const c = conclude(syntheticKnown({ bump: [{ sizeId: 's2', budgetId: 'B4', loss: 0.06 }, { sizeId: 's3', budgetId: 'B4', loss: 0.05 }] }));
  t.regex(c.fitHeadline, /s2 \(16M\) would start to beat s1 from about 3\.2e17 FLOPs \(measured: within the budgets run\)\./);
  const line = c.fitLines.find((l) => l.includes('would start to reach a lower loss'))!;
  t.regex(line, /\(measured: within the budgets run\); yet at 1\.0e18 FLOPs the smaller one still reached the lower mean loss/);
  t.false(line.includes('extrapolated'));
});

test('the repeats rule: overlapping spreads are "not distinguishable", separated ones ranked, single runs labelled', (t) => {
  // equal fragility with wide accuracy noise: no size's drop can be told apart; losses noisy enough that B4's best two tie
  const tied = conclude(syntheticKnown({ seeds: 3, lossNoise: 0.02, robustness: 'equal', accNoise: 0.02 }));
  t.is(tied.robustness.judgement, 'not distinguishable');
  t.true(tied.robustness.cases.every((x) => x.winner === 'not distinguishable'));
  t.true(tied.robustness.cases.every((x) => /\(not distinguishable\); the largest \(s4\) and the smallest \(s0\) are not distinguishable\.$/.test(x.text)), tied.robustness.cases[0]!.text);
  t.regex(tied.robustness.sentence, /not distinguishable in how much accuracy they lose/);
  const b4 = tied.bestSizes.find((b) => b.budgetId === 'B4')!;
  t.is(b4.distinction, 'indistinguishable');
  t.regex(b4.text, /next: s3 at [\d.]+ ± [\d.]+, not distinguishable from it \(their spreads overlap\)\.$/);
  t.regex(tied.verdict, /reached the lowest validation loss \(not distinguishable from s3\)/);
  t.regex(tied.headline, /\(\d+ not distinguishable\)/, 'equal-memory comparisons whose spreads overlap are counted as not distinguishable');
  t.true(tied.perBudget.every((p) => p.ties > 0));
  t.regex(tied.fitLines.find((l) => l.startsWith('Budget B4 (1.0e18 FLOPs), by'))!, /not distinguishable/);

  // separated: the smaller sizes are more robust (2 seeds: min–max), ranked, not tied
  const sep = conclude(syntheticKnown({ seeds: 2, robustness: 'smaller-robust', budgets: [1e16, 1e17] }));
  t.is(sep.robustness.judgement, 'smaller');
  for (const x of sep.robustness.cases) {
    t.deepEqual(x.ranking.entries.map((e) => e.item.sizeId), ['s0', 's1', 's2', 's3', 's4']);
    t.true(x.ranking.groups.every((g) => g.length === 1), 'every size its own rank');
    t.notRegex(x.text, /not distinguishable/);
    t.regex(x.text, /; the smallest \(s0\) loses less than the largest \(s4\)\.$/);
  }
  t.regex(sep.robustness.sentence, /the smaller sizes are more robust here, contrary to the paper’s second claim/);

  // single runs: ordered by value, labelled
  const single = conclude(syntheticKnown({ budgets: [1e16, 1e17] }));
  t.true(single.robustness.singleRun);
  t.true(single.robustness.cases.every((x) => x.distinction === 'unknown' && x.text.endsWith('(single run, spread unknown).')));
  t.regex(single.robustness.sentence, /Single runs: the spread is unknown/);
  t.regex(single.bestSizes[0]!.text, /\(single run, spread unknown\)\.$/);
});

test('the robustness plot: the known drops per size and level, a band over the seeds only with seeds', (t) => {
  const data = syntheticKnown({ seeds: 3, budgets: [1e16, 1e17] });
  const spec = plotSpecs(data).find((p) => p.name === 'robustness-quant')!;
  t.truthy(spec);
  const s = spec.spec as unknown as { data: { values: Array<Record<string, unknown>> }; spec: { layer: Array<{ mark: { type: string } }> } };
  t.deepEqual(s.spec.layer.map((l) => l.mark.type), ['area', 'line']);
  // the 2-bit drop of the smallest size: fragility 1.5 × 0.02 × 2^6 / 4 = 0.48 → 48 points (± the jitter)
  const v = s.data.values.find((x) => x.level === 2 && String(x.size).startsWith('s0') && String(x.budget).startsWith('B1'))!;
  t.true(Math.abs((v.drop as number) - 48) < 1, `drop ${v.drop}`);
  t.true((v.dropLo as number) < (v.drop as number) && (v.drop as number) < (v.dropHi as number), 'the band spans the spread');
  const points = robustness(data).points.filter((p) => p.family === 'prune-iterative' && p.level === 0.9 && p.budgetId === 'B1');
  t.deepEqual(points.map((p) => p.sizeId), ['s0', 's1', 's2', 's3', 's4']);
  t.true(points.every((p, i) => i === 0 || p.drop.mean < points[i - 1]!.drop.mean), 'drops fall with size');
  const noSeeds = plotSpecs(syntheticKnown({ budgets: [1e16] })).find((p) => p.name === 'robustness-prune')!;
  t.deepEqual((noSeeds.spec as unknown as { spec: { layer: Array<{ mark: { type: string } }> } }).spec.layer.map((l) => l.mark.type), ['line']);
});

test('fewer than 3 sizes, or one budget: the report says so plainly instead of fitting', (t) => {
  const dir = tempDir('two-sizes');
  const out = writeReport(dir, syntheticKnown({ params: [4e6, 8e6], budgets: [1e16, 1e17] }));
  t.false(out.files.some((f) => /isoflop-fit|nopt-vs/.test(f)), 'no fit plots');
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  t.true(md.includes('Compute-optimal size: not fitted. The IsoFLOP parabola needs final losses of at least 3 sizes; this run has 2.'));
  t.false(fs.readFileSync(path.join(dir, 'report.html'), 'utf8').includes('id="table-fits"'));

  const one = conclude(syntheticKnown({ budgets: [1e17] }));
  t.true(one.fitLines.includes('Only one budget was run, so N_opt ∝ C^a across budgets is not fitted and no crossover budget is estimated.'));
  t.regex(one.fitHeadline, /no N_opt ∝ C\^a \(a power law needs optima at 2 or more distinct budgets, got 1\); N_opt ≈ 6\.32M at B1/);
});

test('seconds budgets get their own N_opt plot and crossover sentence', (t) => {
  const c = conclude(syntheticKnown({ kind: 'seconds', budgets: [1e15, 1e16, 1e17, 1e18] }));
  t.is(c.fits!.perKind.length, 1);
  t.is(c.fits!.perKind[0]!.kind, 'seconds');
  t.regex(c.fitHeadline, /^Compute-optimal size over the seconds budgets: N_opt ∝ C\^0\.50; s3 \(32M\) would start to beat s2 from about .* s \(extrapolated: outside the budgets run\)\.$/);
});

test('robustness passes over levels where a size sits at the floor accuracy (a plateau: its drop is censored)', (t) => {
  // the preview data: accuracy is clamped at 10% (chance), which tiny reaches at 2 and 3 bits under B2
  const r = robustness(syntheticReportData({ seeds: 3 }));
  const b2 = r.cases.find((c) => c.budgetId === 'B2' && c.family === 'quant-channel')!;
  t.deepEqual(b2.floorLevels, ['2-bit/channel', '3-bit/channel']);
  t.is(b2.level, 4);
  t.is(b2.winner, 'larger', 'above the floor the construction holds: compression hurts small models more');
  t.regex(b2.text, /at 4-bit\/channel \(at 2-bit\/channel and 3-bit\/channel a size is at the floor accuracy, a plateau where it cannot lose more, so the harshest level where every size is above it is used\)/);
  t.is(r.judgement, 'larger');
  // no plateau (the known data never reach a floor): the harshest level is used
  const known = robustness(syntheticKnown({ seeds: 3, budgets: [1e16] }));
  t.true(known.cases.every((c) => c.floorLevels.length === 0));
  t.deepEqual(known.cases.map((c) => c.levelLabel), ['2-bit/channel', 'sparsity 0.9']);
});
