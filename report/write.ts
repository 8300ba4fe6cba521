/**
 * writeReport(dir, data): the report files of a run.
 *
 *   results.csv       one row per compression cell (per seed), every field, joined with its size,
 *                     its budget and its pretraining final
 *   finals.csv        one row per (size, budget[, seed]) pretraining final
 *   curves.csv        every pretraining curve point
 *   report.json       the ReportData itself (plots and tables can be rebuilt from it)
 *   plots/*.svg       the plots (plots.ts)
 *   report.md         tables, the conclusion, links to the SVGs
 *   report.html       the same, self-contained: SVGs inlined, no external resources
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  budgetLabel,
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
import { renderPlots, type RenderedPlot } from './plots.ts';
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

type TCell = string | { text: string; strong?: boolean };

interface Table {
  header: string[];
  /** 'r' right-aligns a column (numbers) */
  align: Array<'l' | 'r'>;
  rows: TCell[][];
}

const text = (c: TCell): string => (typeof c === 'string' ? c : c.text);
const strong = (c: TCell): boolean => typeof c !== 'string' && !!c.strong;

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

function htmlTable(t: Table): string {
  const cls = (i: number): string => (t.align[i] === 'r' ? ' class="num"' : '');
  const head = `<tr>${t.header.map((h, i) => `<th${cls(i)}>${htmlEscape(h)}</th>`).join('')}</tr>`;
  const body = t.rows
    .map((r) => `<tr>${r.map((c, i) => `<td${cls(i)}>${strong(c) ? `<strong>${htmlEscape(text(c))}</strong>` : htmlEscape(text(c))}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

function pctStats(s: Stats): string {
  return s.n > 1 ? `${fmtPct(s.mean)} (${fmtPct(s.min)}–${fmtPct(s.max)})` : fmtPct(s.mean);
}

function lossStats(s: Stats): string {
  return s.n > 1 ? `${fmtLoss(s.mean)} (${fmtLoss(s.min)}–${fmtLoss(s.max)})` : fmtLoss(s.mean);
}

function sci(n: number): string {
  return n.toExponential(2).replace('e+', 'e');
}

interface Tables {
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
    rows: budgets.map((b) => [b.id, b.kind, b.kind === 'flops' ? `${sci(b.value)} FLOPs` : `${b.value} s`]),
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
        return f ? { text: lossStats(f.valLoss), strong: best.get(b.id) === s.id } : '—';
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
      sci(f.flops),
      f.seconds.toFixed(1),
      { text: lossStats(f.valLoss), strong: best.get(f.budgetId) === f.sizeId },
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
      pctStats(g.dev),
      pctStats(g.test),
      g.valPerplexity ? (g.valPerplexity.n > 1 ? `${g.valPerplexity.mean.toFixed(2)} (${g.valPerplexity.min.toFixed(2)}–${g.valPerplexity.max.toFixed(2)})` : g.valPerplexity.mean.toFixed(2)) : '',
      String(g.dev.n),
      (frontKeys.get(g.key) ?? []).join(', '),
    ]),
  };
  const frontT: Table = {
    header: ['budget', 'memory budget', 'bytes view', 'best size', 'compression', 'bytes', 'dev accuracy', 'test accuracy'],
    align: ['l', 'r', 'l', 'l', 'l', 'r', 'r', 'r'],
    rows: conclusion.answers.map((a) => [
      a.budgetId,
      `≤ ${fmtBytes(a.bytes)} (${a.source})`,
      a.view === 'total' ? 'total' : 'non-embedding',
      a.best ? a.best.sizeId : '—',
      a.best ? `${a.best.method} ${a.best.level}` : 'nothing fits',
      a.best ? fmtBytes(a.view === 'total' ? a.best.bytesTotal : a.best.bytesNonEmbedding) : '',
      a.best ? pctStats(a.best.dev) : '',
      a.best ? pctStats(a.best.test) : '',
    ]),
  };
  return { budgets: budgetsT, sizes: sizesT, lossMatrix, finals: finalsT, cells: cellsT, front: frontT };
}

// ---------------------------------------------------------------------------------------------
// report.md and report.html

function summaryLine(data: ReportData): string {
  const seeds = new Set(data.cells.filter((c) => c.seed !== undefined).map((c) => c.seed));
  return `${data.sizes.length} sizes × ${data.budgets.length} budget${data.budgets.length === 1 ? '' : 's'}; ${groupCells(data).length} compression cells${seeds.size > 1 ? `, each over ${seeds.size} seeds` : ''}. Created ${data.createdAt}.`;
}

function reportMd(data: ReportData, c: Conclusion, t: Tables, plots: RenderedPlot[], files: string[]): string {
  const out: string[] = [];
  out.push(`# ttc report: ${mdEscape(data.runId)}`, '', summaryLine(data), '');
  out.push('## Conclusion', '', '### Best size per budget (lowest final validation loss)', '');
  for (const b of c.bestSizes) out.push(`- ${b.text}`);
  out.push('', '### Best cell under each memory budget (by dev accuracy; test accuracy reported)', '');
  for (const a of c.answers) out.push(`- ${a.text}`);
  out.push('', '### Verdict', '', c.verdict, '');
  out.push('## Budgets', '', mdTable(t.budgets), '', '## Sizes', '', mdTable(t.sizes), '');
  out.push('## Pretraining: final validation loss', '', 'Bold: the best size of each budget.', '', mdTable(t.lossMatrix), '', mdTable(t.finals), '');
  out.push('## Best cell per memory budget', '', mdTable(t.front), '');
  out.push(
    '## Compression cells',
    '',
    'Every (budget, size, method, level) cell after fine-tuning on the classification task. Bytes are the real size of the compressed file; with several seeds, accuracies are means with the min–max range. “Pareto front”: the cell is on the accuracy-vs-memory front of its budget in that bytes view.',
    '',
    mdTable(t.cells),
    '',
  );
  out.push('## Plots', '');
  for (const p of plots) out.push(`### ${p.title}`, '', p.description, '', `![${p.title}](plots/${p.name}.svg)`, '');
  out.push('## Files', '', ...files.map((f) => `- [${f}](${f})`), '');
  return out.join('\n');
}

const CSS = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0 1.2rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
.verdict { background: #f6f8fa; border-left: 4px solid #888; padding: 0.6rem 1rem; }
figure { margin: 1rem 0 2rem; overflow-x: auto; } figcaption { font-size: 0.9rem; color: #555; margin-bottom: 0.4rem; }
.wide { overflow-x: auto; }
`;

function reportHtml(data: ReportData, c: Conclusion, t: Tables, plots: RenderedPlot[]): string {
  const li = (items: string[]): string => `<ul>\n${items.map((s) => `<li>${htmlEscape(s)}</li>`).join('\n')}\n</ul>`;
  const parts: string[] = [];
  parts.push(
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>ttc report: ${htmlEscape(data.runId)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    `<h1>ttc report: ${htmlEscape(data.runId)}</h1>`,
    `<p>${htmlEscape(summaryLine(data))}</p>`,
    '<h2>Conclusion</h2>',
    '<h3>Best size per budget (lowest final validation loss)</h3>',
    li(c.bestSizes.map((b) => b.text)),
    '<h3>Best cell under each memory budget (by dev accuracy; test accuracy reported)</h3>',
    li(c.answers.map((a) => a.text)),
    '<h3>Verdict</h3>',
    `<p class="verdict">${htmlEscape(c.verdict)}</p>`,
    '<h2>Budgets</h2>',
    htmlTable(t.budgets),
    '<h2>Sizes</h2>',
    htmlTable(t.sizes),
    '<h2>Pretraining: final validation loss</h2>',
    '<p>Bold: the best size of each budget.</p>',
    htmlTable(t.lossMatrix),
    htmlTable(t.finals),
    '<h2>Best cell per memory budget</h2>',
    `<div class="wide">${htmlTable(t.front)}</div>`,
    '<h2>Compression cells</h2>',
    '<p>Every (budget, size, method, level) cell after fine-tuning on the classification task. Bytes are the real size of the compressed file; with several seeds, accuracies are means with the min–max range. “Pareto front”: the cell is on the accuracy-vs-memory front of its budget in that bytes view.</p>',
    `<div class="wide">${htmlTable(t.cells)}</div>`,
    '<h2>Plots</h2>',
  );
  for (const p of plots) {
    parts.push(`<figure id="plot-${htmlEscape(p.name)}">`, `<h3>${htmlEscape(p.title)}</h3>`, `<figcaption>${htmlEscape(p.description)}</figcaption>`, p.svg, '</figure>');
  }
  parts.push('</body>', '</html>', '');
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------

/**
 * Writes every report file into `dir` (created if missing; existing report files are replaced)
 * and returns their paths and the conclusion's lines. Throws on inconsistent data.
 */
export function writeReport(dir: string, data: ReportData): WriteReportResult {
  validateReportData(data);
  const conclusion = conclude(data);
  const plots = renderPlots(data);
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
