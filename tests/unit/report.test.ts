import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { groupCells, paretoFront, validateReportData } from '../../report/aggregate.ts';
import { bestSizePerBudget, bestUnder, conclude } from '../../report/conclusion.ts';
import { fitPlotSpecs } from '../../report/fit-plots.ts';
import { fitReportData } from '../../report/fits.ts';
import { plotSpecs, renderPlotsAsync, renderPlots } from '../../report/plots.ts';
import { syntheticReportData } from '../../report/synthetic.ts';
import type { Cell, Final, ReportData, Size } from '../../report/types.ts';
import { RESULTS_COLUMNS, SORT_SCRIPT, htmlEscape, writeReport } from '../../report/write.ts';

function tempDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ttc-report-${name}-`));
}

/** RFC 4180 CSV → rows of fields. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || row.length) rows.push([...row, field]);
  return rows;
}

/** Well-formedness: one root <svg>, every tag closed in order, attributes quoted, no stray '<'. */
function checkXml(xml: string): string | null {
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>/g;
  let last = 0;
  let roots = 0;
  for (const m of xml.matchAll(re)) {
    if (xml.slice(last, m.index).includes('<')) return `stray '<' near offset ${last}`;
    last = m.index! + m[0].length;
    if (!m[2]) continue; // comment or CDATA
    const [, close, name, , selfClose] = m;
    if (close) {
      if (stack.pop() !== name) return `</${name}> does not close the open element`;
    } else if (!selfClose) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  if (xml.slice(last).includes('<')) return 'stray < at the end';
  if (stack.length) return `unclosed <${stack.join('>, <')}>`;
  if (roots !== 1) return `${roots} root elements`;
  return null;
}

const sizeRow = (c: Pick<Cell, 'budgetId' | 'sizeId' | 'method' | 'level'>): string[] => [c.budgetId, c.sizeId, c.method, c.level];

test('writeReport writes every file; CSV, Markdown and HTML hold every cell; SVGs are well-formed with their axis titles', (t) => {
  const data = syntheticReportData();
  t.is(data.budgets.length, 2);
  t.is(data.sizes.length, 3);
  t.deepEqual(new Set(data.cells.map((c) => c.method)), new Set(['none', 'quant', 'prune-oneshot', 'prune-iterative', 'prune+quant']));
  const dir = tempDir('full');
  const { files, conclusion } = writeReport(dir, data);

  const expectedPlots = [
    'accuracy-vs-bytes',
    'loss-vs-flops',
    'loss-vs-seconds',
    'loss-vs-steps',
    'isoflop',
    'isoflop-fit',
    'nopt-vs-flops',
    'quant',
    'prune',
    'prune-quant',
    'robustness-quant',
    'robustness-prune',
    'frontier-total',
    'frontier-nonembedding',
  ];
  for (const f of ['results.csv', 'finals.csv', 'curves.csv', 'report.json', 'report.md', 'report.html', ...expectedPlots.map((p) => `plots/${p}.svg`)]) {
    const p = path.join(dir, f);
    t.true(files.includes(p), `${f} is listed`);
    t.true(fs.statSync(p).size > 0, `${f} is written`);
  }
  t.true(conclusion.length > 3);
  t.is(JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')).cells.length, data.cells.length);

  // results.csv: the header, then one row per cell, every field
  const csv = parseCsv(fs.readFileSync(path.join(dir, 'results.csv'), 'utf8'));
  t.deepEqual(csv[0], [...RESULTS_COLUMNS]);
  t.is(csv.length - 1, data.cells.length);
  const col = (name: string): number => csv[0]!.indexOf(name);
  for (const c of data.cells) {
    const row = csv.find((r) => r[col('budgetId')] === c.budgetId && r[col('sizeId')] === c.sizeId && r[col('method')] === c.method && r[col('level')] === c.level);
    t.truthy(row, `results.csv has ${sizeRow(c).join(' / ')}`);
    t.is(Number(row![col('bytesTotal')]), c.bytesTotal);
    t.is(Number(row![col('bytesNonEmbedding')]), c.bytesNonEmbedding);
    t.is(Number(row![col('devAccuracy')]), c.devAccuracy);
    t.is(Number(row![col('testAccuracy')]), c.testAccuracy);
    t.is(row![col('embeddingsCompressed')], String(c.embeddingsCompressed));
    const final = data.finals.find((f) => f.sizeId === c.sizeId && f.budgetId === c.budgetId)!;
    t.is(Number(row![col('pretrainValLoss')]), final.valLoss);
  }
  const finalsCsv = parseCsv(fs.readFileSync(path.join(dir, 'finals.csv'), 'utf8'));
  t.is(finalsCsv.length - 1, data.finals.length);

  // report.md and report.html: every (budget, size, method, level) cell is a table row
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  for (const c of data.cells) {
    t.true(md.includes(`| ${sizeRow(c).join(' | ')} |`), `report.md lists ${sizeRow(c).join(' / ')}`);
    t.true(html.includes(`<tr>${sizeRow(c).map((x) => `<td>${x}</td>`).join('')}`), `report.html lists ${sizeRow(c).join(' / ')}`);
  }
  for (const line of conclusion) t.true(md.includes(line), 'report.md holds the conclusion');
  for (const p of expectedPlots) t.true(md.includes(`](plots/${p}.svg)`), `report.md links plots/${p}.svg`);

  // SVGs: standalone, well-formed, with their axis titles (the fit plots too)
  for (const spec of [...plotSpecs(data), ...fitPlotSpecs(fitReportData(data))]) {
    const svg = fs.readFileSync(path.join(dir, 'plots', `${spec.name}.svg`), 'utf8');
    t.true(svg.startsWith('<svg'), `${spec.name}.svg starts with <svg`);
    t.true(svg.includes('xmlns="http://www.w3.org/2000/svg"'));
    t.is(checkXml(svg.trim()), null, `${spec.name}.svg is well-formed`);
    t.true(svg.includes(`>${spec.xTitle}</text>`), `${spec.name}.svg has the x title "${spec.xTitle}"`);
    t.true(svg.includes(`>${spec.yTitle}</text>`), `${spec.name}.svg has the y title "${spec.yTitle}"`);
    t.true(svg.includes(`>${spec.title}</text>`), `${spec.name}.svg has its title`);
    t.true(html.includes(svg.trim()), `report.html inlines ${spec.name}.svg`);
  }

  // report.html is self-contained: no external resources, unique ids
  t.false(/\ssrc\s*=/i.test(html), 'no src=');
  t.false(/href\s*=\s*["']?\s*(https?:)?\/\//i.test(html), 'no external href');
  t.false(/<link\b|@import|url\(\s*["']?https?:/i.test(html), 'no link, @import or remote url()');
  // one script: the inline table sorter, which reaches nothing outside the page
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
  t.is((html.match(/<script\b/gi) ?? []).length, 1, 'one script');
  t.is(scripts.length, 1);
  t.is(scripts[0]![1], '', 'the script is inline: no src or other attributes');
  t.is(scripts[0]![2], SORT_SCRIPT, 'the script is the table sorter');
  t.false(/fetch|XMLHttpRequest|WebSocket|import|https?:|\bsrc\b|eval|Function\(|innerHTML|location|cookie|storage/i.test(SORT_SCRIPT), 'the sorter uses no network, no eval, no storage');
  t.is((html.match(/<svg\b/g) ?? []).length, expectedPlots.length);
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
  t.is(new Set(ids).size, ids.length, 'ids are unique across the inlined SVGs');
  for (const m of html.matchAll(/url\(#([^)]+)\)/g)) t.true(ids.includes(m[1]), `url(#${m[1]}) points to an element of the page`);
});

test('report.html and report.md lead with the headline figure and the short verdict; the long tables follow, wrapped and sortable', (t) => {
  const data = syntheticReportData();
  const dir = tempDir('layout');
  writeReport(dir, data);
  const c = conclude(data);
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  const body = html.slice(html.indexOf('<body>'));

  // the order: title, headline figure, short verdict, the other plots, then the details
  const at = (needle: string): number => {
    const i = body.indexOf(needle);
    t.true(i >= 0, `report.html has ${needle}`);
    return i;
  };
  const order = [
    '<h1>ttc report: synthetic</h1>',
    '<figure id="plot-accuracy-vs-bytes" class="headline">',
    `<p class="verdict" id="verdict">${htmlEscape(c.headline)}</p>`,
    '<h2 id="plots">Plots</h2>',
    '<figure id="plot-loss-vs-flops">',
    '<h2 id="conclusion">Conclusion in detail</h2>',
    htmlEscape(c.verdict),
    '<h2 id="budgets">',
    '<h2 id="pretraining">',
    '<h2 id="best-cells">',
    '<h2 id="cells">',
    '<script>',
  ].map(at);
  t.deepEqual(order, [...order].sort((a, b) => a - b), 'report.html sections in order');
  // nothing between the title and the headline figure
  t.regex(body, /<h1>[^<]*<\/h1>\n<figure id="plot-accuracy-vs-bytes"/);
  // the headline figure: both bytes views side by side, a row per budget, a line per size
  const headline = fs.readFileSync(path.join(dir, 'plots', 'accuracy-vs-bytes.svg'), 'utf8');
  for (const label of ['total bytes', 'non-embedding bytes', 'B1 (1.0e13 FLOPs)', 'B2 (1.0e16 FLOPs)', 'tiny (1.49M)', 'small (5.36M)', 'base (23.4M)']) t.true(headline.includes(`>${label}</text>`), `the headline figure shows "${label}"`);
  t.is((headline.match(/class="mark-line role-mark/g) ?? []).length, 3 * 4, 'a line per size in each panel: 3 sizes × 2 views × 2 budgets');

  // the short verdict: 2–4 sentences, which size wins where, the judgement with its tallies, the caveat
  t.is(c.headline.split(/(?<=\.) (?=[A-Z])/).length, 4, c.headline);
  t.regex(c.headline, /^At B1 \(1\.0e13 FLOPs\) tiny gives the best cell at every memory budget, in both bytes views\. /);
  t.regex(c.headline, /At B2 \(1\.0e16 FLOPs\) the best cell comes from tiny up to [\d.]+ MB, small from [\d.]+ MB to [\d.]+ MB and base from [\d.]+ MB in total bytes \(non-embedding bytes: tiny up to/);
  t.regex(c.headline, /depends on the budget: the larger model wins at B2, the smaller at B1 \(equal-memory comparisons won, larger vs smaller: B1 0–\d+, B2 \d+–\d+\)\./);
  t.regex(c.headline, /one seed, so small differences may be noise\.$/);

  // report.md in the same order
  const mdOrder = ['# ttc report: synthetic', '](plots/accuracy-vs-bytes.svg)', '## Verdict', c.headline, '## Plots', '](plots/loss-vs-flops.svg)', '## Conclusion in detail', c.verdict, '## Budgets', '## Compression cells', '## Files'].map((x) => {
    const i = md.indexOf(x);
    t.true(i >= 0, `report.md has ${x.slice(0, 40)}`);
    return i;
  });
  t.deepEqual(mdOrder, [...mdOrder].sort((a, b) => a - b), 'report.md sections in order');

  // every table sits in its own scrolling container, is sortable, numbers right-aligned with their sort key
  const tables = body.match(/<table\b/g) ?? [];
  t.is(tables.length, 7);
  t.is((body.match(/<div class="table-wrap" id="table-[\w-]+">\n<table class="data sortable">/g) ?? []).length, tables.length);
  t.true(/\.table-wrap \{ overflow-x: auto;/.test(html), 'the containers scroll horizontally');
  const groups = groupCells(data);
  for (const g of groups.slice(0, 20)) {
    const row = body.split('\n').find((l) => l.startsWith(`<tr>${sizeRow(g).map((x) => `<td>${x}</td>`).join('')}`))!;
    t.truthy(row);
    t.true(row.includes(`<td class="num" data-sort="${g.bytesTotal}">${g.bytesTotal} (`), 'bytes total sorts by the bytes');
    t.true(row.includes(`<td class="num" data-sort="${g.dev.mean}">`), 'dev accuracy sorts by the mean');
  }
  t.regex(body, /<td class="num" data-sort="\d+">≤ [\d.]+ [kM]?B \(/, 'a memory budget sorts by its bytes, not its text');
  t.regex(body, /<th scope="col" class="num">dev accuracy<\/th>/);
});

test('the synchronous renderer gives the same SVG as Vega’s asynchronous toSVG', async (t) => {
  const data = syntheticReportData({ seeds: 2 });
  const sync = renderPlots(data);
  const asyncPlots = await renderPlotsAsync(data);
  t.is(sync.length, asyncPlots.length);
  for (let i = 0; i < sync.length; i++) t.is(sync[i]!.svg, asyncPlots[i]!.svg, sync[i]!.name);
  t.log(`loss-vs-flops.svg: ${sync[0]!.svg.length} bytes; quant.svg: ${sync.find((p) => p.name === 'quant')!.svg.length} bytes`);
});

test('with several seeds: every seed is a CSV row, tables show means with ranges, plots draw bands and error bars', (t) => {
  const data = syntheticReportData({ seeds: 3 });
  const dir = tempDir('seeds');
  writeReport(dir, data);
  const csv = parseCsv(fs.readFileSync(path.join(dir, 'results.csv'), 'utf8'));
  t.is(csv.length - 1, data.cells.length);
  t.is(data.cells.length, 3 * groupCells(data).length);
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  // 3 seeds: mean ± 1 sd (the interval the conclusion's rule uses); 2 seeds: min–max
  t.regex(md, /\d+\.\d\d% ± \d+\.\d\d% \| \d+\.\d\d% ± \d+\.\d\d% \|  \| 3 \|/);
  const two = tempDir('seeds2');
  writeReport(two, syntheticReportData({ seeds: 2 }));
  t.regex(fs.readFileSync(path.join(two, 'report.md'), 'utf8'), /\d+\.\d\d% \(\d+\.\d\d%–\d+\.\d\d%\) \| \d+\.\d\d% \(\d+\.\d\d%–\d+\.\d\d%\) \|  \| 2 \|/);
  t.regex(md, /each over 3 seeds/);
  const curves = fs.readFileSync(path.join(dir, 'plots', 'loss-vs-flops.svg'), 'utf8');
  t.true(curves.includes('mark-area'), 'min–max band on the curves');
  const quant = fs.readFileSync(path.join(dir, 'plots', 'quant.svg'), 'utf8');
  t.true(quant.includes('mark-rule'), 'error bars on the accuracy plot');
  t.true(quant.includes('role-legend'), 'the size legend survives the error bars');
});

// ---------------------------------------------------------------------------------------------
// the conclusion on constructed cases whose answer is known

const SIZES: Size[] = [
  { id: 'tiny', layers: 2, hidden: 64, heads: 1, ffn: 256, parameters: 100, nonEmbeddingParameters: 25 },
  { id: 'small', layers: 4, hidden: 128, heads: 2, ffn: 512, parameters: 250, nonEmbeddingParameters: 150 },
  { id: 'base', layers: 6, hidden: 256, heads: 4, ffn: 1024, parameters: 1000, nonEmbeddingParameters: 750 },
];

function final(sizeId: string, budgetId: string, valLoss: number): Final {
  return { sizeId, budgetId, steps: 100, flops: 1e12, seconds: 10, valLoss };
}

function cell(sizeId: string, budgetId: string, method: Cell['method'], level: string, bytesTotal: number, bytesNonEmbedding: number, dev: number): Cell {
  return { sizeId, budgetId, method, level, embeddingsCompressed: method === 'quant', bytesTotal, bytesNonEmbedding, devAccuracy: dev, testAccuracy: dev - 0.01 };
}

function known(): ReportData {
  return {
    runId: 'known',
    createdAt: '2025-01-01T00:00:00.000Z',
    budgets: [
      { id: 'B1', kind: 'flops', value: 1e12 },
      { id: 'B2', kind: 'flops', value: 1e15 },
    ],
    sizes: SIZES,
    curves: [],
    // B1: tiny lowest, B2: base lowest
    finals: [final('tiny', 'B1', 3.0), final('small', 'B1', 3.2), final('base', 'B1', 3.5), final('tiny', 'B2', 2.8), final('small', 'B2', 2.5), final('base', 'B2', 2.4)],
    cells: [
      cell('tiny', 'B2', 'none', 'fp32', 400, 100, 0.7),
      cell('tiny', 'B2', 'quant', '8-bit/channel', 120, 30, 0.69),
      cell('small', 'B2', 'none', 'fp32', 1000, 600, 0.78),
      cell('small', 'B2', 'quant', '8-bit/channel', 300, 160, 0.77),
      cell('base', 'B2', 'none', 'fp32', 4000, 3000, 0.85),
      cell('base', 'B2', 'quant', '4-bit/channel', 620, 400, 0.83),
      // embeddings left uncompressed: large in total bytes, small in non-embedding bytes
      cell('base', 'B2', 'prune-iterative', 'sparsity 0.9', 1100, 350, 0.84),
      // same accuracy as small 8-bit but bigger: the tie goes to fewer bytes
      cell('base', 'B2', 'prune-oneshot', 'sparsity 0.5', 2500, 1500, 0.77),
    ],
  };
}

test('the best size per budget is the one with the lowest final validation loss', (t) => {
  const best = bestSizePerBudget(known());
  t.deepEqual(
    best.map((b) => [b.budgetId, b.sizeId, b.rank]),
    [
      ['B1', 'tiny', 0],
      ['B2', 'base', 2],
    ],
  );
  t.regex(best[0]!.text, /size tiny \(the smallest size\)/);
  t.regex(best[1]!.text, /size base \(the largest size\)/);
});

test('the best cell under a memory budget, in total and in non-embedding bytes', (t) => {
  const data = known();
  const groups = groupCells(data);
  const pick = (view: 'total' | 'nonEmbedding', m: number): string | null => {
    const g = bestUnder(groups, 'B2', view, m);
    return g ? `${g.sizeId} ${g.method} ${g.level}` : null;
  };
  // total bytes: the pruned base (1100 B, embeddings kept) does not fit 1000 B; its 4-bit version does
  t.is(pick('total', 1000), 'base quant 4-bit/channel');
  t.is(pick('total', 619), 'small quant 8-bit/channel');
  t.is(pick('total', 299), 'tiny quant 8-bit/channel');
  t.is(pick('nonEmbedding', 160), 'small quant 8-bit/channel', 'a cell of exactly M bytes fits');
  t.is(pick('total', 100), null);
  t.is(pick('total', 1e9), 'base none fp32');
  // non-embedding bytes: the pruned base fits 400 B and beats the 4-bit one
  t.is(pick('nonEmbedding', 400), 'base prune-iterative sparsity 0.9');
  t.is(pick('nonEmbedding', 349), 'small quant 8-bit/channel');
  t.is(pick('nonEmbedding', 99), 'tiny quant 8-bit/channel');
  t.is(pick('nonEmbedding', 1600), 'base prune-iterative sparsity 0.9');
  t.is(pick('total', 2600), 'base prune-iterative sparsity 0.9');
  // a tie in dev accuracy goes to the smaller file
  const tied = groups.filter((g) => g.level === '8-bit/channel' || g.level === 'sparsity 0.5');
  t.is(bestUnder(tied, 'B2', 'total', 1e9)!.sizeId, 'small');

  // the same answers through conclude(), worded as "for ≤ M bytes the best is size S with C (dev a, test b)"
  const c = conclude(data, { extraMemoryBudgets: [1000, 400] });
  const ans = (view: string, m: number) => c.answers.find((a) => a.budgetId === 'B2' && a.view === view && a.bytes === m)!;
  t.is(ans('total', 1000).best!.key, groups.find((g) => g.sizeId === 'base' && g.level === '4-bit/channel')!.key);
  t.is(ans('total', 1000).text, 'Budget B2, total bytes: for ≤ 1 kB (= small uncompressed, given) the best is size base with 4-bit/channel quantization (dev 83.00%, test 82.00%; 620 B).');
  t.regex(ans('nonEmbedding', 400).text, /for ≤ 400 B \(given\) the best is size base with iterative pruning \(sparsity 0\.9\) \(dev 84\.00%, test 83\.00%; 350 B\)/);
  // memory budgets: every size's uncompressed bytes, in both views
  for (const [view, bytes] of [['total', 400], ['total', 1000], ['total', 4000], ['nonEmbedding', 100], ['nonEmbedding', 600], ['nonEmbedding', 3000]] as const) {
    t.truthy(c.memoryBudgets.find((m) => m.view === view && m.bytes === bytes && m.source.includes('uncompressed')), `${view} ${bytes}`);
  }
  // the Pareto front (non-embedding view) is exactly the undominated cells
  t.deepEqual(
    paretoFront(groups.filter((g) => g.budgetId === 'B2'), 'nonEmbedding').map((g) => `${g.sizeId} ${g.level}`),
    ['tiny 8-bit/channel', 'tiny fp32', 'small 8-bit/channel', 'base sparsity 0.9', 'base fp32'],
  );
});

/** Two sizes, one budget; `smallWins` decides which one is better at every memory budget. */
function twoSizes(smallWins: boolean): ReportData {
  const d = (x: number, y: number): [number, number] => (smallWins ? [x, y] : [y, x]);
  const [tinyLoss, baseLoss] = d(3.1, 3.6);
  const [tinyAcc, baseAcc] = d(0.8, 0.7);
  const cells: Cell[] = [];
  for (const [s, acc, scale] of [['tiny', tinyAcc, 1], ['base', baseAcc, 8]] as const) {
    cells.push(cell(s, 'B', 'none', 'fp32', 4000 * scale, 3000 * scale, acc));
    for (const bits of [8, 4, 2]) cells.push(cell(s, 'B', 'quant', `${bits}-bit/channel`, (4000 * scale * bits) / 32, (3000 * scale * bits) / 32, acc - (smallWins === (s === 'base') ? 0.12 : 0.01) * (8 / bits)));
    for (const sp of [0.5, 0.9]) cells.push(cell(s, 'B', 'prune-iterative', `sparsity ${sp}`, 1000 * scale + 3000 * scale * (1 - sp), 3000 * scale * (1 - sp), acc - 0.05 * sp));
  }
  return {
    runId: smallWins ? 'small-wins' : 'large-wins',
    createdAt: '2025-01-01T00:00:00.000Z',
    budgets: [{ id: 'B', kind: 'flops', value: 1e12 }],
    sizes: [SIZES[0]!, SIZES[2]!],
    curves: [],
    finals: [final('tiny', 'B', tinyLoss), final('base', 'B', baseLoss)],
    cells,
  };
}

test('when the small model wins, the verdict says the data contradicts the paper', (t) => {
  const data = twoSizes(true);
  const c = conclude(data);
  t.is(c.bestSizes[0]!.sizeId, 'tiny');
  t.is(c.judgement, 'contradicts');
  t.is(c.perBudget[0]!.judgement, 'contradicts');
  t.true(c.comparisons.length > 0);
  t.true(c.comparisons.every((x) => x.winner === 'smaller'));
  t.regex(c.verdict, /the smallest size won at every budget/i);
  t.regex(c.verdict, /contradicts the paper’s claim: here the smaller model wins/);
  t.regex(c.verdict, /compute-optimal scaling/);
  t.notRegex(c.verdict, /supports/);
  t.regex(c.headline, /^At B \(1\.0e12 FLOPs\) tiny gives the best cell at every memory budget, in both bytes views\. So the smaller model wins at equal memory, contrary to the paper’s claim \(equal-memory comparisons won, larger vs smaller: B 0–\d+\)\. Each cell was measured with one seed/);
  // writeReport returns the same conclusion and puts the verdict in both documents
  const dir = tempDir('small-wins');
  const out = writeReport(dir, data);
  t.is(out.conclusion[out.conclusion.length - 1], c.verdict);
  t.true(fs.readFileSync(path.join(dir, 'report.md'), 'utf8').includes(c.verdict));
  t.true(fs.readFileSync(path.join(dir, 'report.html'), 'utf8').includes(htmlEscape(c.verdict)));
  // no curves in the data: the curve plots are left out, the rest are written
  t.false(out.files.some((f) => f.endsWith('loss-vs-flops.svg')));
  t.true(out.files.some((f) => f.endsWith('frontier-total.svg')));
});

test('when the large model wins, the verdict says the data supports the paper; mixed budgets say it depends', (t) => {
  const c = conclude(twoSizes(false));
  t.is(c.bestSizes[0]!.sizeId, 'base');
  t.is(c.judgement, 'supports');
  t.regex(c.verdict, /the largest size won at every budget/i);
  t.regex(c.verdict, /So the data supports the paper’s claim/);
  t.regex(c.headline, /So a larger model compressed to the memory budget beats a smaller one compressed less, as the paper claims \(equal-memory comparisons won, larger vs smaller: B \d+–0\)\./);

  // the synthetic sweep: the smallest size wins the small budget, the largest the big one
  const mixed = conclude(syntheticReportData());
  t.deepEqual(
    mixed.bestSizes.map((b) => b.sizeId),
    ['tiny', 'base'],
  );
  t.deepEqual(
    mixed.perBudget.map((p) => p.judgement),
    ['contradicts', 'supports'],
  );
  t.is(mixed.judgement, 'neither');
  t.regex(mixed.verdict, /depends on the budget/);
  t.regex(mixed.verdict, /best size grows with the budget/);
});

test('a sweep without compression cells, or with one size, still gets a report', (t) => {
  const data = syntheticReportData();
  const pretrainOnly: ReportData = { ...data, cells: [] };
  const out = writeReport(tempDir('pretrain-only'), pretrainOnly);
  t.true(out.files.some((f) => f.endsWith('isoflop.svg')));
  t.false(out.files.some((f) => f.endsWith('quant.svg') || f.endsWith('frontier-total.svg')));
  t.regex(out.conclusion[out.conclusion.length - 1]!, /cannot settle the claim: there are no compression cells\./);
  t.regex(conclude(pretrainOnly).headline, /^There are no compression cells, so the report cannot say which size is best at a memory budget\./);
  const oneSize: ReportData = {
    ...data,
    sizes: data.sizes.slice(0, 1),
    curves: data.curves.filter((c) => c.sizeId === data.sizes[0]!.id),
    finals: data.finals.filter((c) => c.sizeId === data.sizes[0]!.id),
    cells: data.cells.filter((c) => c.sizeId === data.sizes[0]!.id),
  };
  const c = conclude(oneSize);
  t.is(c.judgement, 'undecided');
  t.regex(c.verdict, /nothing can be compared/);
  t.notThrows(() => writeReport(tempDir('one-size'), oneSize));
});

test('inconsistent data is refused with every problem named', (t) => {
  const data = known();
  data.cells.push({ ...data.cells[0]!, sizeId: 'huge' });
  data.cells.push({ ...data.cells[1]! });
  data.finals.push(final('tiny', 'B9', 1));
  const err = t.throws(() => validateReportData(data));
  t.regex(err!.message, /unknown sizeId "huge"/);
  t.regex(err!.message, /duplicate cell \(size tiny, budget B2, quant "8-bit\/channel"/);
  t.regex(err!.message, /unknown budgetId "B9"/);
  t.throws(() => writeReport(tempDir('bad'), data), { message: /invalid report data/ });
});
