/**
 * The translation part of a sweep's report (the paper's translation figure): per size, BLEU after
 * training under the sweep's budget against the FLOPs and seconds it took, and BLEU after one-shot
 * compression against the compressed file's bytes, with the best size at each memory limit
 * ("at equal memory"). Written as translation.md, translation.csv and translation.svg beside the
 * sweep's report; plain data in, no TensorFlow.js.
 */
import path from 'node:path';
import { writeFileAtomic } from '../core/fs.ts';

export interface TranslationCellRow {
  label: string;
  bytes: number;
  embeddingBytes: number;
  loss: number;
  bleu: number;
}

export interface TranslationMember {
  sizeId: string;
  budgetId: string;
  seed?: number;
  layers: number;
  hidden: number;
  parameters: number;
  steps: number;
  flops: number;
  seconds: number;
  valLoss: number;
  bleu?: number;
  bleuBeam?: number;
  /** the evaluations during training (metrics.jsonl rows with BLEU), for the BLEU-vs-FLOPs panel */
  curve?: Array<{ flops: number; seconds: number; bleu?: number; bleuBeam?: number }>;
  cells: TranslationCellRow[];
}

const f2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(2));
const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
const name = (m: TranslationMember) => `${m.sizeId}${m.seed !== undefined ? ` s${m.seed}` : ''}`;

/** Best BLEU of a member's cells within `limit` bytes (undefined: none fits). */
function bestWithin(m: TranslationMember, limit: number): TranslationCellRow | undefined {
  let best: TranslationCellRow | undefined;
  for (const c of m.cells) if (c.bytes <= limit && (!best || c.bleu > best.bleu)) best = c;
  return best;
}

export function translationMarkdown(members: TranslationMember[]): string {
  const lines: string[] = ['# Translation: BLEU per size', ''];
  lines.push('BLEU is corpus BLEU (sacreBLEU defaults: 13a tokenization, exp smoothing) of the evaluation pairs, lowercased on both sides (the shared tokenizer lowercases). Loss: teacher-forced cross-entropy on the same pairs. FLOPs: the analytic count of ml/flops.ts (every side counted at seqLen tokens: an upper bound).', '');
  lines.push('## After training under the sweep\'s budget', '');
  lines.push('| size | budget | layers | d | parameters | steps | FLOPs | seconds | eval loss | BLEU greedy | BLEU beam |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of members) {
    lines.push(`| ${name(m)} | ${m.budgetId} | ${m.layers} | ${m.hidden} | ${m.parameters.toLocaleString('en')} | ${m.steps} | ${m.flops.toExponential(2)} | ${m.seconds.toFixed(0)} | ${m.valLoss.toFixed(3)} | ${f2(m.bleu)} | ${f2(m.bleuBeam)} |`);
  }
  const withCells = members.filter((m) => m.cells.length > 0);
  if (withCells.length > 0) {
    lines.push('', '## After one-shot compression (greedy BLEU; bytes of the compressed file)', '');
    const labels = [...new Set(withCells.flatMap((m) => m.cells.map((c) => c.label)))];
    lines.push(`| size | ${labels.join(' | ')} |`);
    lines.push(`|---|${labels.map(() => '---:').join('|')}|`);
    for (const m of withCells) {
      lines.push(`| ${name(m)} | ${labels.map((l) => { const c = m.cells.find((x) => x.label === l); return c ? `${f2(c.bleu)} (${kib(c.bytes)})` : '—'; }).join(' | ')} |`);
    }
    const limits = [...new Set(withCells.flatMap((m) => m.cells.map((c) => c.bytes)))].sort((a, b) => a - b);
    lines.push('', '## At equal memory: the best BLEU each size reaches within a memory limit', '');
    lines.push(`| limit | ${withCells.map(name).join(' | ')} | best |`);
    lines.push(`|---|${withCells.map(() => '---:').join('|')}|---|`);
    for (const limit of limits) {
      const best = withCells.map((m) => bestWithin(m, limit));
      const top = Math.max(...best.map((c) => c?.bleu ?? -Infinity));
      const winners = withCells.filter((_, i) => best[i] !== undefined && best[i]!.bleu === top).map(name);
      lines.push(`| ${kib(limit)} | ${best.map((c) => (c ? `${f2(c.bleu)} (${c.label})` : '—')).join(' | ')} | ${winners.length === 1 ? winners[0] : winners.length > 1 ? `tie: ${winners.join(', ')}` : '—'} |`);
    }
  }
  lines.push('');
  return lines.join('\n');
}

export function translationCsv(members: TranslationMember[]): string {
  const rows = ['size,budget,seed,layers,hidden,parameters,steps,flops,seconds,eval_loss,bleu,bleu_beam,cell,bytes,embedding_bytes,cell_loss,cell_bleu'];
  for (const m of members) {
    const head = [m.sizeId, m.budgetId, m.seed ?? '', m.layers, m.hidden, m.parameters, m.steps, m.flops, m.seconds.toFixed(2), m.valLoss.toFixed(5), f2(m.bleu), f2(m.bleuBeam)];
    if (m.cells.length === 0) rows.push([...head, '', '', '', '', ''].join(','));
    for (const c of m.cells) rows.push([...head, JSON.stringify(c.label), c.bytes, c.embeddingBytes, c.loss.toFixed(5), c.bleu.toFixed(3)].join(','));
  }
  return `${rows.join('\n')}\n`;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

/** Two panels: BLEU (beam) against training FLOPs per size (its evaluations during training); greedy BLEU against compressed bytes per size (log x). */
export function translationSvg(members: TranslationMember[]): string {
  const W = 420;
  const H = 300;
  const pad = { l: 50, r: 12, t: 28, b: 40 };
  const panel = (ox: number, title: string, pts: Array<{ x: number; y: number; series: number; label?: string }>, xTitle: string) => {
    if (pts.length === 0) return '';
    const lx = pts.map((p) => Math.log10(p.x));
    const [x0, x1] = [Math.min(...lx), Math.max(...lx)];
    const yMax = Math.max(1, ...pts.map((p) => p.y)) * 1.1;
    const sx = (x: number) => ox + pad.l + ((Math.log10(x) - x0) / (x1 - x0 || 1)) * (W - pad.l - pad.r);
    const sy = (y: number) => pad.t + (1 - y / yMax) * (H - pad.t - pad.b);
    const out = [`<text x="${ox + W / 2}" y="16" text-anchor="middle" font-size="13">${title}</text>`];
    out.push(`<line x1="${ox + pad.l}" y1="${H - pad.b}" x2="${ox + W - pad.r}" y2="${H - pad.b}" stroke="#333"/><line x1="${ox + pad.l}" y1="${pad.t}" x2="${ox + pad.l}" y2="${H - pad.b}" stroke="#333"/>`);
    out.push(`<text x="${ox + W / 2}" y="${H - 8}" text-anchor="middle" font-size="11">${xTitle} (log)</text><text x="${ox + 12}" y="${H / 2}" font-size="11" transform="rotate(-90 ${ox + 12} ${H / 2})" text-anchor="middle">BLEU</text>`);
    out.push(`<text x="${ox + pad.l - 4}" y="${sy(0) + 4}" font-size="10" text-anchor="end">0</text><text x="${ox + pad.l - 4}" y="${sy(yMax / 1.1) + 4}" font-size="10" text-anchor="end">${(yMax / 1.1).toFixed(1)}</text>`);
    out.push(`<text x="${ox + pad.l}" y="${H - pad.b + 14}" font-size="10">${(10 ** x0).toExponential(1)}</text><text x="${ox + W - pad.r}" y="${H - pad.b + 14}" font-size="10" text-anchor="end">${(10 ** x1).toExponential(1)}</text>`);
    const bySeries = new Map<number, typeof pts>();
    for (const p of pts) bySeries.set(p.series, [...(bySeries.get(p.series) ?? []), p]);
    for (const [s, ps] of bySeries) {
      const sorted = [...ps].sort((a, b) => a.x - b.x);
      out.push(`<polyline fill="none" stroke="${COLORS[s % COLORS.length]}" points="${sorted.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
      for (const p of sorted) out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${COLORS[s % COLORS.length]}"><title>${p.label ?? ''} ${p.y.toFixed(2)}</title></circle>`);
    }
    return out.join('\n');
  };
  // each size's evaluations during training (its curve), or its final BLEU alone
  const trained = members.flatMap((m, i) => {
    const pts = (m.curve ?? []).filter((p) => p.bleuBeam !== undefined && Number.isFinite(p.bleuBeam) && p.flops > 0).map((p) => ({ x: p.flops, y: p.bleuBeam!, series: i, label: name(m) }));
    if (pts.length > 0) return pts;
    return m.bleuBeam !== undefined && Number.isFinite(m.bleuBeam) ? [{ x: m.flops, y: m.bleuBeam, series: i, label: name(m) }] : [];
  });
  const compressed = members.flatMap((m, i) => m.cells.map((c) => ({ x: c.bytes, y: c.bleu, series: i, label: `${name(m)} ${c.label}` })));
  const legend = members.map((m, i) => `<text x="${2 * W - 150}" y="${pad.t + 14 * (i + 1)}" font-size="11" fill="${COLORS[i % COLORS.length]}">● ${name(m)}</text>`).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}" font-family="sans-serif">\n${panel(0, 'BLEU (beam) vs training FLOPs', trained, 'FLOPs')}\n${panel(W, 'BLEU (greedy) after compression vs bytes', compressed, 'bytes')}\n${legend}\n</svg>\n`;
}

/** Writes translation.md, translation.csv and translation.svg into the sweep directory; returns their paths. */
export function writeTranslationReport(dir: string, members: TranslationMember[]): string[] {
  const files = { md: path.join(dir, 'translation.md'), csv: path.join(dir, 'translation.csv'), svg: path.join(dir, 'translation.svg') };
  writeFileAtomic(files.md, `${translationMarkdown(members)}\n![BLEU per size](translation.svg)\n`);
  writeFileAtomic(files.csv, translationCsv(members));
  writeFileAtomic(files.svg, translationSvg(members));
  return Object.values(files);
}
