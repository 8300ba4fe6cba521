/**
 * writeReport(dir, data): the report files of a run.
 *
 *   results.csv       one row per compression cell (per seed), every field, joined with its size,
 *                     its budget and its pretraining final
 *   finals.csv        one row per (size, budget[, seed]) pretraining final
 *   curves.csv        every pretraining curve point
 *   report.json       the ReportData itself (plots and tables can be rebuilt from it)
 *   plots/*.svg       the plots (plots.ts, and the compute-optimal fits of fit-plots.ts)
 *   report.md         the headline plot and the short verdict first, then the other plots, the
 *                     conclusion in full (with the compute-optimal fits and robustness to
 *                     compression) and every table (with N_opt per budget)
 *   report.html       the same, self-contained: SVGs inlined, tables sortable by one inline
 *                     script, no external resources
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  budgetLabel,
  bytesOf,
  fmtBytes,
  fmtLoss,
  fmtParams,
  fmtPct,
  groupCells,
  groupFinals,
  paretoFront,
  sortedBudgets,
  sortedSizes,
  validateReportData,
  type CellGroup,
  type Stats,
} from './aggregate.ts';
import { writeFileAtomic } from '../core/fs.ts';
import { conclude, type Conclusion } from './conclusion.ts';
import { fmtBudgetValue } from './fit-conclusion.ts';
import { fitPlotSpecs } from './fit-plots.ts';
import type { ReportFits } from './fits.ts';
import { HEADLINE_PLOT, renderPlots, renderSvgSync, type RenderedPlot } from './plots.ts';
import { formatSpread } from './stats.ts';
import { FINETUNE_HEADER, FINETUNE_NOTE, finetuneRows, groupFinetunes } from './finetunes.ts';
import type { Cell, Final, ReportData } from './types.ts';

export interface WriteReportResult {
  /** every file written, as paths joined onto `dir` */
  files: string[];
  /** the conclusion's lines (best size per budget, best cell per memory budget, the verdict last) */
  conclusion: string[];
}

// ---------------------------------------------------------------------------------------------
// CSV

type CsvValue = string | number | boolean | undefined | null;

/** RFC 4180: quote fields holding a comma, a quote or a line break; numbers at full precision. */
export function csvField(v: CsvValue): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(header: string[], rows: CsvValue[][]): string {
  return [header, ...rows].map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}

export const RESULTS_COLUMNS = [
  'runId',
  'budgetId',
  'budgetKind',
  'budgetValue',
  'sizeId',
  'layers',
  'hidden',
  'heads',
  'ffn',
  'parameters',
  'nonEmbeddingParameters',
  'pretrainSteps',
  'pretrainFlops',
  'pretrainSeconds',
  'pretrainValLoss',
  'method',
  'level',
  'bits',
  'granularity',
  'sparsity',
  'embeddingsCompressed',
  'bytesTotal',
  'bytesNonEmbedding',
  'devAccuracy',
  'testAccuracy',
  'valPerplexity',
  'seed',
] as const;

function resultsCsv(data: ReportData): string {
  const sizes = new Map(data.sizes.map((s) => [s.id, s]));
  const budgets = new Map(data.budgets.map((b) => [b.id, b]));
  const finalsGrouped = new Map(groupFinals(data).map((f) => [`${f.budgetId}\u0000${f.sizeId}`, f]));
  const finalOf = (c: Cell): Pick<Final, 'steps' | 'flops' | 'seconds' | 'valLoss'> | undefined => {
    // the same seed's final when there is one, else the mean over seeds
    const exact = data.finals.find((f) => f.sizeId === c.sizeId && f.budgetId === c.budgetId && f.seed !== undefined && f.seed === c.seed);
    if (exact) return exact;
    const g = finalsGrouped.get(`${c.budgetId}\u0000${c.sizeId}`);
    return g ? { steps: g.steps, flops: g.flops, seconds: g.seconds, valLoss: g.valLoss.mean } : undefined;
  };
  const order = new Map(groupCells(data).map((g, i) => [g.key, i]));
  const keyOf = (c: Cell): string => `${c.budgetId}\u0000${c.sizeId}\u0000${c.method}\u0000${c.level}`;
  const cells = [...data.cells].sort((a, b) => order.get(keyOf(a))! - order.get(keyOf(b))! || (a.seed ?? 0) - (b.seed ?? 0));
  const rows = cells.map((c) => {
    const s = sizes.get(c.sizeId)!;
    const b = budgets.get(c.budgetId)!;
    const f = finalOf(c);
    return [
      data.runId,
      b.id,
      b.kind,
      b.value,
      s.id,
      s.layers,
      s.hidden,
      s.heads,
      s.ffn,
      s.parameters,
      s.nonEmbeddingParameters,
      f?.steps,
      f?.flops,
      f?.seconds,
      f?.valLoss,
      c.method,
      c.level,
      c.bits,
      c.granularity,
      c.sparsity,
      c.embeddingsCompressed,
      c.bytesTotal,
      c.bytesNonEmbedding,
      c.devAccuracy,
      c.testAccuracy,
      c.valPerplexity,
      c.seed,
    ];
  });
  return toCsv([...RESULTS_COLUMNS], rows);
}

function finalsCsv(data: ReportData): string {
  const header = ['runId', 'budgetId', 'sizeId', 'parameters', 'nonEmbeddingParameters', 'steps', 'flops', 'seconds', 'valLoss', 'seed'];
  const sizes = new Map(data.sizes.map((s) => [s.id, s]));
  return toCsv(
    header,
    data.finals.map((f) => [data.runId, f.budgetId, f.sizeId, sizes.get(f.sizeId)?.parameters, sizes.get(f.sizeId)?.nonEmbeddingParameters, f.steps, f.flops, f.seconds, f.valLoss, f.seed]),
  );
}

function curvesCsv(data: ReportData): string {
  const header = ['runId', 'budgetId', 'sizeId', 'seed', 'step', 'flops', 'seconds', 'valLoss'];
  return toCsv(
    header,
    data.curves.flatMap((c) => c.points.map((p) => [data.runId, c.budgetId, c.sizeId, c.seed, p.step, p.flops, p.seconds, p.valLoss])),
  );
}

// ---------------------------------------------------------------------------------------------
// tables, rendered to Markdown and to HTML from one model

/** A table cell: text, optionally bold, optionally with the number a click on its header sorts by. */
type TCell = string | { text: string; strong?: boolean; sort?: number };

interface Table {
  header: string[];
  /** 'r' right-aligns a column (numbers) */
  align: Array<'l' | 'r'>;
  rows: TCell[][];
}

const text = (c: TCell): string => (typeof c === 'string' ? c : c.text);
const strong = (c: TCell): boolean => typeof c !== 'string' && !!c.strong;
/** The number a numeric cell sorts by: its own, else the number its text starts with ("12.5% (…)", "1.0e13 FLOPs"); undefined for "—" or empty. */
const sortKey = (c: TCell): number | undefined => {
  if (typeof c !== 'string' && c.sort !== undefined) return c.sort;
  const m = /^-?\d+(?:\.\d+)?(?:e[-+]?\d+)?/i.exec(text(c));
  return m ? Number(m[0]) : undefined;
};

function mdEscape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\*/g, '\\*').replace(/_/g, '\\_').replace(/\n/g, ' ');
}

function mdTable(t: Table): string {
  const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [
    row(t.header.map(mdEscape)),
    row(t.align.map((a) => (a === 'r' ? '---:' : '---'))),
    ...t.rows.map((r) => row(r.map((c) => (strong(c) ? `**${mdEscape(text(c))}**` : mdEscape(text(c)))))),
  ].join('\n');
}

export function htmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/**
 * A table as HTML: wrapped in its own horizontally scrolling container (a wide table never widens
 * the page), numbers right-aligned with the number they sort by in `data-sort`; `sortable` tables
 * sort by a click on a header (the page's one script, SORT_SCRIPT).
 */
function htmlTable(t: Table, id: string): string {
  const cls = (i: number): string => (t.align[i] === 'r' ? ' class="num"' : '');
  const attrs = (c: TCell, i: number): string => {
    if (t.align[i] !== 'r') return '';
    const k = sortKey(c);
    return `${cls(i)}${k !== undefined ? ` data-sort="${k}"` : ''}`;
  };
  const head = `<tr>${t.header.map((h, i) => `<th scope="col"${cls(i)}>${htmlEscape(h)}</th>`).join('')}</tr>`;
  const body = t.rows
    .map((r) => `<tr>${r.map((c, i) => `<td${attrs(c, i)}>${strong(c) ? `<strong>${htmlEscape(text(c))}</strong>` : htmlEscape(text(c))}</td>`).join('')}</tr>`)
    .join('\n');
  const sortable = t.rows.length > 1 ? ' sortable' : '';
  return `<div class="table-wrap" id="table-${id}">\n<table class="data${sortable}">\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table>\n</div>`;
}

/** A mean with its spread (stats.ts formatSpread: min–max with 2 seeds, ± 1 sd with 3 or more), the same interval the conclusion's rule uses. */
function pctStats(s: Stats): string {
  return formatSpread(s, (x) => fmtPct(x));
}

function lossStats(s: Stats): string {
  return formatSpread(s, fmtLoss);
}

function sci(n: number): string {
  return n.toExponential(2).replace('e+', 'e');
}

interface Tables {
  /** N_opt per budget; null when nothing was fitted (fewer than 3 sizes) */
  fits: Table | null;
  /** the members' fine-tuning (absent when the data has none) */
  finetunes?: Table;
  budgets: Table;
  sizes: Table;
  lossMatrix: Table;
  finals: Table;
  cells: Table;
  front: Table;
}

function buildTables(data: ReportData, conclusion: Conclusion): Tables {
  const budgets = sortedBudgets(data);
  const sizes = sortedSizes(data);
  const finals = groupFinals(data);
  const groups = groupCells(data);
  const best = new Map(conclusion.bestSizes.map((b) => [b.budgetId, b.sizeId]));

  const budgetsT: Table = {
    header: ['budget', 'kind', 'value'],
    align: ['l', 'l', 'r'],
    rows: budgets.map((b) => [b.id, b.kind, { text: b.kind === 'flops' ? `${sci(b.value)} FLOPs` : `${b.value} s`, sort: b.value }]),
  };
  const sizesT: Table = {
    header: ['size', 'layers', 'hidden', 'heads', 'ffn', 'parameters', 'non-embedding parameters'],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows: sizes.map((s) => [s.id, String(s.layers), String(s.hidden), String(s.heads), String(s.ffn), `${s.parameters} (${fmtParams(s.parameters)})`, `${s.nonEmbeddingParameters} (${fmtParams(s.nonEmbeddingParameters)})`]),
  };
  const lossMatrix: Table = {
    header: ['size', ...budgets.map(budgetLabel)],
    align: ['l', ...budgets.map(() => 'r' as const)],
    rows: sizes.map((s) => [
      s.id,
      ...budgets.map((b): TCell => {
        const f = finals.find((x) => x.sizeId === s.id && x.budgetId === b.id);
        return f ? { text: lossStats(f.valLoss), strong: best.get(b.id) === s.id, sort: f.valLoss.mean } : '—';
      }),
    ]),
  };
  const finalsT: Table = {
    header: ['budget', 'size', 'steps', 'FLOPs', 'seconds', 'final val loss', 'seeds'],
    align: ['l', 'l', 'r', 'r', 'r', 'r', 'r'],
    rows: finals.map((f) => [
      f.budgetId,
      f.sizeId,
      String(Math.round(f.steps)),
      { text: sci(f.flops), sort: f.flops },
      { text: f.seconds.toFixed(1), sort: f.seconds },
      { text: lossStats(f.valLoss), strong: best.get(f.budgetId) === f.sizeId, sort: f.valLoss.mean },
      String(f.valLoss.n),
    ]),
  };
  const frontKeys = new Map<string, string[]>();
  for (const view of ['total', 'nonEmbedding'] as const) {
    for (const b of budgets) {
      for (const g of paretoFront(groups.filter((x) => x.budgetId === b.id), view)) {
        const list = frontKeys.get(g.key) ?? [];
        list.push(view === 'total' ? 'total' : 'non-emb.');
        frontKeys.set(g.key, list);
      }
    }
  }
  const cellsT: Table = {
    header: ['budget', 'size', 'method', 'level', 'bits', 'granularity', 'sparsity', 'embeddings compressed', 'bytes total', 'bytes non-embedding', 'dev accuracy', 'test accuracy', 'val perplexity', 'seeds', 'Pareto front'],
    align: ['l', 'l', 'l', 'l', 'r', 'l', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    rows: groups.map((g: CellGroup) => [
      g.budgetId,
      g.sizeId,
      g.method,
      g.level,
      g.bits !== undefined ? String(g.bits) : '',
      g.granularity ?? '',
      g.sparsity !== undefined ? String(g.sparsity) : '',
      g.embeddingsCompressed ? 'yes' : 'no',
      `${g.bytesTotal} (${fmtBytes(g.bytesTotal)})`,
      `${g.bytesNonEmbedding} (${fmtBytes(g.bytesNonEmbedding)})`,
      { text: pctStats(g.dev), sort: g.dev.mean },
      { text: pctStats(g.test), sort: g.test.mean },
      g.valPerplexity ? formatSpread(g.valPerplexity, (x) => x.toFixed(2)) : '',
      String(g.dev.n),
      (frontKeys.get(g.key) ?? []).join(', '),
    ]),
  };
  const frontT: Table = {
    header: ['budget', 'memory budget', 'bytes view', 'best size', 'compression', 'bytes', 'dev accuracy', 'test accuracy'],
    align: ['l', 'r', 'l', 'l', 'l', 'r', 'r', 'r'],
    rows: conclusion.answers.map((a) => [
      a.budgetId,
      { text: `≤ ${fmtBytes(a.bytes)} (${a.source})`, sort: a.bytes },
      a.view === 'total' ? 'total' : 'non-embedding',
      a.best ? a.best.sizeId : '—',
      a.best ? `${a.best.method} ${a.best.level}` : 'nothing fits',
      a.best ? { text: fmtBytes(bytesOf(a.best, a.view)), sort: bytesOf(a.best, a.view) } : '',
      a.best ? { text: pctStats(a.best.dev), sort: a.best.dev.mean } : '',
      a.best ? { text: pctStats(a.best.test), sort: a.best.test.mean } : '',
    ]),
  };
  const finetunesT: Table | undefined = data.finetunes?.length
    ? { header: FINETUNE_HEADER, align: ['l', 'l', 'r', 'r', 'l', 'l', 'r', 'r'], rows: finetuneRows(groupFinetunes(data.finetunes)) }
    : undefined;
  return { fits: conclusion.fits ? fitsTable(conclusion.fits) : null, budgets: budgetsT, sizes: sizesT, lossMatrix, finals: finalsT, cells: cellsT, front: frontT, ...(finetunesT ? { finetunes: finetunesT } : {}) };
}

/** N_opt per budget: the IsoFLOP fit's optimum with its ±z se interval, where it lies, and the best measured size(s). */
function fitsTable(fits: ReportFits): Table {
  return {
    header: ['budget', 'kind', 'value', 'sizes fitted', 'fit', 'N_opt (parameters)', 'interval (±2 se)', 'where', 'fitted loss at N_opt', 'lowest measured loss'],
    align: ['l', 'l', 'r', 'r', 'l', 'r', 'r', 'l', 'r', 'l'],
    rows: fits.perBudget.map((b) => {
      const f = b.fit;
      const top = b.ranking.groups[0] ?? [];
      const best = top.length === 0 ? '—' : top.length === 1 ? `${top[0]!.item.sizeId} (${formatSpread(top[0]!.summary, fmtLoss)})` : `${top.map((e) => e.item.sizeId).join(', ')} (not distinguishable)`;
      const common: TCell[] = [b.budget.id, b.budget.kind, { text: fmtBudgetValue(b.budget.value, b.budget.kind), sort: b.budget.value }, String(f.distinctSizes)];
      if (f.status === 'optimum') {
        const o = f.optimum;
        return [
          ...common,
          'optimum',
          { text: `${fmtParams(o.params)} (${Math.round(o.params)})`, sort: o.params },
          o.interval ? { text: `${fmtParams(o.interval[0])}–${fmtParams(o.interval[1])}`, sort: o.interval[0] } : 'unknown',
          o.position === 'inside' ? 'inside the sizes measured' : `${o.position} the sizes measured (extrapolated)`,
          { text: fmtLoss(o.loss), sort: o.loss },
          best,
        ];
      }
      if (f.status === 'edge') return [...common, 'no interior minimum', '—', '', `at or beyond the ${f.side} size`, '', best];
      return [...common, f.status === 'flat' ? 'flat' : 'not fitted', '—', '', f.reason, '', best];
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// report.md and report.html

function summaryLine(data: ReportData): string {
  const seeds = new Set(data.cells.filter((c) => c.seed !== undefined).map((c) => c.seed));
  return `${data.sizes.length} size${data.sizes.length === 1 ? '' : 's'} × ${data.budgets.length} budget${data.budgets.length === 1 ? '' : 's'}; ${groupCells(data).length} compression cells${seeds.size > 1 ? `, each over ${seeds.size} seeds` : ''}. Created ${data.createdAt}.`;
}

const FITS_NOTE =
  'Per budget, final validation loss against ln(parameters) fitted by a parabola (the IsoFLOP profile); its vertex is the compute-optimal size N_opt, with ±2 standard errors (delta method). “Extrapolated”: N_opt lies outside the sizes measured. “Lowest measured loss”: the size(s) with the lowest mean final loss; sizes whose spreads over seeds overlap are not distinguishable.';

const CELLS_NOTE =
  'Every (budget, size, method, level) cell after fine-tuning on the classification task. Bytes are the real size of the compressed file; with several seeds, accuracies are means with their spread (min–max with 2 seeds, mean ± 1 sd with 3 or more). “Pareto front”: the cell is on the accuracy-vs-memory front of its budget in that bytes view.';

/**
 * The report's order, the same in report.md and report.html: the title, the headline figure
 * (accuracy against bytes, one line per size, both bytes views), the short verdict, the other
 * plots, then the details (the conclusion in full and every table).
 */
function reportMd(data: ReportData, c: Conclusion, t: Tables, plots: RenderedPlot[], files: string[]): string {
  const out: string[] = [];
  const headline = plots.find((p) => p.name === HEADLINE_PLOT);
  const others = plots.filter((p) => p !== headline);
  const plotMd = (p: RenderedPlot, heading: string): string[] => [`${heading} ${p.title}`, '', `![${p.title}](plots/${p.name}.svg)`, '', p.description, ''];
  out.push(`# ttc report: ${mdEscape(data.runId)}`, '');
  if (headline) out.push(...plotMd(headline, '##'));
  out.push('## Verdict', '', c.headline, '', ...(c.fitHeadline ? [c.fitHeadline, ''] : []), summaryLine(data), '');
  if (others.length) {
    out.push('## Plots', '');
    for (const p of others) out.push(...plotMd(p, '###'));
  }
  out.push('## Conclusion in detail', '', '### Best size per budget (lowest final validation loss)', '');
  for (const b of c.bestSizes) out.push(`- ${b.text}`);
  out.push('', '### Best cell under each memory budget (by dev accuracy; test accuracy reported)', '');
  for (const a of c.answers) out.push(`- ${a.text}`);
  out.push('', '### Compute-optimal size per budget (IsoFLOP fits)', '');
  for (const l of c.fitLines) out.push(`- ${l}`);
  out.push('', '### Robustness to compression by size', '');
  for (const r of c.robustness.cases) out.push(`- ${r.text}`);
  out.push(`- ${c.robustness.sentence}`);
  out.push('', '### Verdict in full', '', c.verdict, '');
  out.push('## Compute-optimal size per budget', '', FITS_NOTE, '', t.fits ? mdTable(t.fits) : c.fitLines[0]!, '');
  out.push('## Budgets', '', mdTable(t.budgets), '', '## Sizes', '', mdTable(t.sizes), '');
  out.push('## Pretraining: final validation loss', '', 'Bold: the best size of each budget.', '', mdTable(t.lossMatrix), '', mdTable(t.finals), '');
  out.push('## Best cell per memory budget', '', mdTable(t.front), '');
  if (t.finetunes) out.push('## Fine-tuning', '', FINETUNE_NOTE, '', mdTable(t.finetunes), '');
  out.push('## Compression cells', '', CELLS_NOTE, '', mdTable(t.cells), '');
  out.push('## Files', '', ...files.map((f) => `- [${f}](${f})`), '');
  return out.join('\n');
}

const CSS = `
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2rem auto 3rem; max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; overflow-wrap: break-word; }
h1 { font-size: 1.5rem; margin: 0 0 0.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.4rem; }
figure { margin: 0.6rem 0 1.6rem; } figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #555; margin-top: 0.3rem; max-width: 75em; }
.verdict { background: #f6f8fa; border-left: 4px solid #4c78a8; padding: 0.6rem 1rem; margin: 0 0 0.8rem; max-width: 75em; }
.verdict.full { border-left-color: #888; }
.meta { color: #555; font-size: 0.9rem; }
nav.toc { font-size: 0.9rem; } nav.toc a { margin-right: 0.8rem; white-space: nowrap; }
.table-wrap { overflow-x: auto; overflow-y: auto; max-width: 100%; max-height: 85vh; margin: 0.6rem 0 1.2rem; border: 1px solid #ddd; }
table { border-collapse: separate; border-spacing: 0; font-size: 0.85rem; }
th, td { border-right: 1px solid #ddd; border-bottom: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; z-index: 1; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #aaa; font-size: 0.8em; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: #333; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: #333; }
`;

/**
 * The page's only script, inline and self-contained (no network): a click on (or Enter on) a header
 * of a sortable table sorts its rows by that column, ascending then descending. Numeric columns sort
 * by their cells' data-sort numbers (cells without one last), the others by text.
 */
export const SORT_SCRIPT = `
(function () {
  function key(td, numeric) {
    if (!numeric) return td.textContent.trim();
    var v = td.getAttribute('data-sort');
    return v === null || v === '' ? NaN : Number(v);
  }
  function sortBy(table, col, th) {
    var numeric = th.classList.contains('num');
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.setAttribute('aria-sort', 'none'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
      if (numeric) {
        if (isNaN(x) || isNaN(y)) return isNaN(x) === isNaN(y) ? 0 : isNaN(x) ? 1 : -1;
        return dir * (x - y);
      }
      return dir * x.localeCompare(y, undefined, { numeric: true });
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.setAttribute('aria-sort', 'none');
      th.title = 'sort by ' + th.textContent;
      th.addEventListener('click', function () { sortBy(table, col, th); });
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(table, col, th); } });
    });
  });
})();
`;

function reportHtml(data: ReportData, c: Conclusion, t: Tables, plots: RenderedPlot[]): string {
  const li = (items: string[]): string => `<ul>\n${items.map((s) => `<li>${htmlEscape(s)}</li>`).join('\n')}\n</ul>`;
  const figure = (p: RenderedPlot, cls: string, heading: boolean): string[] => [
    `<figure id="plot-${htmlEscape(p.name)}"${cls ? ` class="${cls}"` : ''}>`,
    ...(heading ? [`<h3>${htmlEscape(p.title)}</h3>`] : []),
    p.svg,
    `<figcaption>${htmlEscape(p.description)}</figcaption>`,
    '</figure>',
  ];
  const headline = plots.find((p) => p.name === HEADLINE_PLOT);
  const others = plots.filter((p) => p !== headline);
  const sections: Array<[string, string]> = [
    ...(others.length ? [['plots', 'Plots'] as [string, string]] : []),
    ['conclusion', 'Conclusion in detail'],
    ['fits', 'Compute-optimal size'],
    ['budgets', 'Budgets'],
    ['sizes', 'Sizes'],
    ['pretraining', 'Pretraining'],
    ['best-cells', 'Best cell per memory budget'],
    ...(t.finetunes ? [['finetuning', 'Fine-tuning'] as [string, string]] : []),
    ['cells', 'Compression cells'],
  ];
  const parts: string[] = [];
  parts.push(
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>ttc report: ${htmlEscape(data.runId)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    `<h1>ttc report: ${htmlEscape(data.runId)}</h1>`,
  );
  if (headline) parts.push(...figure(headline, 'headline', false));
  parts.push(
    `<p class="verdict" id="verdict">${htmlEscape(c.headline)}</p>`,
    ...(c.fitHeadline ? [`<p class="verdict fit" id="verdict-fit">${htmlEscape(c.fitHeadline)}</p>`] : []),
    `<p class="meta">${htmlEscape(summaryLine(data))}</p>`,
    `<nav class="toc">Contents: ${sections.map(([id, title]) => `<a href="#${id}">${htmlEscape(title)}</a>`).join(' ')}</nav>`,
  );
  if (others.length) {
    parts.push('<h2 id="plots">Plots</h2>');
    for (const p of others) parts.push(...figure(p, '', true));
  }
  parts.push(
    '<h2 id="conclusion">Conclusion in detail</h2>',
    '<h3>Best size per budget (lowest final validation loss)</h3>',
    li(c.bestSizes.map((b) => b.text)),
    '<h3>Best cell under each memory budget (by dev accuracy; test accuracy reported)</h3>',
    li(c.answers.map((a) => a.text)),
    '<h3>Compute-optimal size per budget (IsoFLOP fits)</h3>',
    li(c.fitLines),
    '<h3>Robustness to compression by size</h3>',
    li([...c.robustness.cases.map((r) => r.text), c.robustness.sentence]),
    '<h3>Verdict in full</h3>',
    `<p class="verdict full">${htmlEscape(c.verdict)}</p>`,
    '<h2 id="fits">Compute-optimal size per budget</h2>',
    `<p>${htmlEscape(FITS_NOTE)}</p>`,
    t.fits ? htmlTable(t.fits, 'fits') : `<p>${htmlEscape(c.fitLines[0]!)}</p>`,
    '<h2 id="budgets">Budgets</h2>',
    htmlTable(t.budgets, 'budgets'),
    '<h2 id="sizes">Sizes</h2>',
    htmlTable(t.sizes, 'sizes'),
    '<h2 id="pretraining">Pretraining: final validation loss</h2>',
    '<p>Bold: the best size of each budget. Click a column header to sort.</p>',
    htmlTable(t.lossMatrix, 'loss'),
    htmlTable(t.finals, 'finals'),
    '<h2 id="best-cells">Best cell per memory budget</h2>',
    htmlTable(t.front, 'best-cells'),
    ...(t.finetunes ? ['<h2 id="finetuning">Fine-tuning</h2>', `<p>${htmlEscape(FINETUNE_NOTE)}</p>`, htmlTable(t.finetunes, 'finetuning')] : []),
    '<h2 id="cells">Compression cells</h2>',
    `<p>${htmlEscape(CELLS_NOTE)} Click a column header to sort.</p>`,
    htmlTable(t.cells, 'cells'),
    `<script>${SORT_SCRIPT}</script>`,
    '</body>',
    '</html>',
    '',
  );
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------

/** The compute-optimal fit plots (fit-plots.ts), rendered and placed right after the measured IsoFLOP view. */
function withFitPlots(plots: RenderedPlot[], fits: ReportFits | null): RenderedPlot[] {
  if (!fits) return plots;
  // N_opt against the budget only for a budget kind with 2 or more budgets (one budget: the conclusion says so instead)
  const kinds = new Set<string>(fits.perKind.filter((k) => fits.perBudget.filter((b) => b.budget.kind === k.kind).length >= 2).map((k) => (k.kind === 'flops' ? 'nopt-vs-flops' : 'nopt-vs-seconds')));
  const extra = fitPlotSpecs(fits)
    .filter((p) => !p.name.startsWith('nopt-') || kinds.has(p.name))
    .map((p) => ({ ...p, svg: renderSvgSync(p.spec, p.name) }));
  const at = plots.findIndex((p) => p.name === 'isoflop');
  const i = at >= 0 ? at + 1 : Math.min(1, plots.length);
  return [...plots.slice(0, i), ...extra, ...plots.slice(i)];
}

/**
 * Writes every report file into `dir` (created if missing; existing report files are replaced)
 * and returns their paths and the conclusion's lines. Throws on inconsistent data.
 */
export function writeReport(dir: string, data: ReportData): WriteReportResult {
  validateReportData(data);
  const conclusion = conclude(data);
  const plots = withFitPlots(renderPlots(data), conclusion.fits);
  const tables = buildTables(data, conclusion);
  fs.mkdirSync(path.join(dir, 'plots'), { recursive: true });

  const rel: Array<[string, string]> = [
    ['results.csv', resultsCsv(data)],
    ['finals.csv', finalsCsv(data)],
    ['curves.csv', curvesCsv(data)],
    ['report.json', `${JSON.stringify(data, null, 1)}\n`],
    ...plots.map((p): [string, string] => [`plots/${p.name}.svg`, `${p.svg}\n`]),
  ];
  const listed = [...rel.map(([f]) => f), 'report.md', 'report.html'];
  rel.push(['report.md', reportMd(data, conclusion, tables, plots, listed)]);
  rel.push(['report.html', reportHtml(data, conclusion, tables, plots)]);
  const files: string[] = [];
  for (const [f, content] of rel) {
    const p = path.join(dir, f);
    writeFileAtomic(p, content);
    files.push(p);
  }
  return { files, conclusion: conclusion.lines };
}
