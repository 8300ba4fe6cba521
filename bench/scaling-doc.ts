/**
 * The plot of docs/scaling.md from a bench:cluster result: predicted scaling efficiency vs workers,
 * a panel per link rate, a line per step variant, with the efficiencies measured on the namespace
 * cluster as points. Also prints the prediction table as Markdown.
 *
 *   node --import tsx bench/scaling-doc.ts bench/results/cluster-<date>-2core/cluster.json [docs/scaling.svg]
 *     [--alpha-ms A --ceiling-mbps C --link-overhead L --basis-source TEXT]   (replace the run's values)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { TopLevelSpec } from 'vega-lite';
import { renderSvg } from '../report/plots.ts';
import { analyse, overridesFrom, predictionTable, type ClusterResult } from './lib/cluster-report.ts';
import { benchArgs } from './lib/args.ts';

const { argv, opt } = benchArgs();
const [input, output = 'docs/scaling.svg'] = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
if (!input) {
  console.error('usage: node --import tsx bench/scaling-doc.ts <cluster.json> [out.svg]');
  process.exit(1);
}
const res = analyse(JSON.parse(readFileSync(input, 'utf8')) as ClusterResult, overridesFrom(opt));
if (!res.prediction?.length) { console.error(`${input}: no prediction (run bench:cluster with steps and ≥ 3 all-reduce points)`); process.exit(1); }

const LABEL: Record<string, string> = {
  allreduce: 'all-reduce, no overlap',
  'allreduce-overlap': 'all-reduce + overlap',
  sharded: 'ZeRO-1 sharded',
  'sharded-overlap': 'ZeRO-1 sharded + overlap',
  'sharded-overlap-2d': 'ZeRO-1 sharded + overlap, 2-D ring',
  'sharded-overlap-2d-4ch': 'ZeRO-1 sharded + overlap, 2-D ring, 4 channels',
};
const PLOTTED = new Set(['allreduce', 'allreduce-overlap', 'sharded-overlap', 'sharded-overlap-2d', 'sharded-overlap-2d-4ch']);
const lines = res.prediction.flatMap((r) => Object.entries(r.efficiency).filter(([v]) => PLOTTED.has(v)).map(([v, e]) => ({ link: `${r.gbit} Gbit/s`, N: r.N, variant: LABEL[v] ?? v, efficiency: e })));
const base = new Map(res.steps.filter((s) => s.N === 1).map((s) => [s.variant, s.stepMs]));
const measured = res.steps.filter((s) => s.N > 1 && base.has(s.variant)).map((s) => ({ N: s.N, variant: LABEL[s.variant] ?? s.variant, efficiency: base.get(s.variant)! / s.stepMs, link: s.shape }));

const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: 'Scaling efficiency T(1)/T(N): predicted for BERT-base (lines), measured on the namespace cluster, default model (points)',
  config: { font: 'sans-serif', axis: { labelFontSize: 10, titleFontSize: 11 }, legend: { labelLimit: 400, orient: 'bottom', columns: 3 } },
  hconcat: [
    ...[...new Set(lines.map((l) => l.link))].map((link) => ({
      title: `predicted, ${link}`, width: 230, height: 220,
      data: { values: lines.filter((l) => l.link === link) },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'N', type: 'quantitative', scale: { type: 'log', base: 2 }, title: 'workers N (log₂)' },
        y: { field: 'efficiency', type: 'quantitative', scale: { domain: [0, 1.2] }, title: 'scaling efficiency' },
        color: { field: 'variant', type: 'nominal', title: null },
      },
    })),
    {
      title: 'measured (namespaces, 2 cores)', width: 160, height: 220,
      data: { values: measured },
      mark: { type: 'point', filled: true },
      encoding: {
        x: { field: 'N', type: 'quantitative', title: 'workers N' },
        y: { field: 'efficiency', type: 'quantitative', scale: { domain: [0, 1] }, title: 'scaling efficiency' },
        color: { field: 'variant', type: 'nominal', title: null },
        shape: { field: 'link', type: 'nominal', title: 'link' },
      },
    },
  ],
} as unknown as TopLevelSpec;
writeFileSync(output, await renderSvg(spec, 'scaling'));
console.error(`wrote ${output}`);

console.log(`basis: ${res.basis!.source}`);
console.log(predictionTable(res.prediction).join('\n'));
