/**
 * The translation report (report/translation.ts) from hand-made results, and the sweep config's
 * rules for translation sweeps (coordinator/sweep-config.ts): the tables say what the numbers are,
 * "at equal memory" picks the best size per limit (ties named), the CSV has one row per cell; a
 * translation sweep with the MLM evaluation step is refused, a translation config without pairs too;
 * the shipped translation configs (configs/translation/, kept out of configs/ because they need the
 * data `ttc data ddtp` downloads) are valid, or lack only that data.
 */
import test from 'ava';
import { translationCsv, translationMarkdown, translationSvg, type TranslationMember } from '../../report/translation.ts';
import fs from 'node:fs';
import path from 'node:path';
import { loadSweepConfig, resolveSweepConfig } from '../../coordinator/sweep-config.ts';
import { loadConfig } from '../../core/config/load.ts';

const cell = (label: string, bytes: number, bleu: number) => ({ label, bytes, embeddingBytes: bytes / 2, loss: 3, bleu });
const members: TranslationMember[] = [
  { sizeId: 'small', budgetId: 'b', layers: 1, hidden: 64, parameters: 1000, steps: 100, flops: 1e12, seconds: 60, valLoss: 4, bleu: 5, bleuBeam: 6, cells: [cell('f32', 4000, 5), cell('4-bit', 600, 4)] },
  { sizeId: 'wide', budgetId: 'b', layers: 1, hidden: 128, parameters: 3000, steps: 40, flops: 1e12, seconds: 70, valLoss: 3.5, bleu: 8, bleuBeam: 9, cells: [cell('f32', 12000, 8), cell('4-bit', 1800, 7.5)] },
];

test('markdown: the per-size table, the compression table and the best size at each memory limit', (t) => {
  const md = translationMarkdown(members);
  t.regex(md, /\| small \| b \| 1 \| 64 \| 1,000 \| 100 \| 1\.00e\+12 \| 60 \| 4\.000 \| 5\.00 \| 6\.00 \|/);
  t.regex(md, /\| wide \| 8\.00 \(12 KiB\) \| 7\.50 \(2 KiB\) \|/);
  // at 600 bytes only the small model fits; at 1,800 the wide one at 4 bits wins
  t.regex(md, /\| 1 KiB \| 4\.00 \(4-bit\) \| — \| small \|/);
  t.regex(md, /\| 2 KiB \| 4\.00 \(4-bit\) \| 7\.50 \(4-bit\) \| wide \|/);
  const tie = translationMarkdown(members.map((m) => ({ ...m, cells: m.cells.map((c) => ({ ...c, bleu: 0 })) })));
  t.regex(tie, /tie: small, wide/);
});

test('csv: one row per cell, and an svg with both panels', (t) => {
  const csv = translationCsv(members).trim().split('\n');
  t.is(csv.length, 1 + 4);
  t.true(csv[1]!.startsWith('small,b,,1,64,1000,100,1000000000000,60.00,4.00000,5.00,6.00,"f32",4000'));
  const svg = translationSvg(members);
  t.regex(svg, /BLEU \(beam\) vs training FLOPs/);
  t.is((svg.match(/<circle/g) ?? []).length, 2 + 4);
});

test('a translation sweep with the MLM evaluation step, or without its pairs, is refused', (t) => {
  const base = { task: 'translation', translation: { pairs: 'tests/fixtures/ddtp/pairs.tsv' } };
  const sizes = [{ layers: 1, hidden: 64 }];
  const budgets = [{ kind: 'flops', value: 1e10 }];
  t.notThrows(() => resolveSweepConfig({ base, sizes, budgets }));
  t.throws(() => resolveSweepConfig({ base, sizes, budgets, evaluation: {} }), { message: /evaluation: the compression \+ evaluation step fine-tunes a classifier/ });
  t.throws(() => resolveSweepConfig({ base: { task: 'translation' }, sizes, budgets }), { message: /translation\.pairs: task "translation" needs the parallel text/ });
});

test('configs/translation/*.json are valid once `ttc data ddtp` has run, and until then lack only the pairs', (t) => {
  const files = fs.readdirSync('configs/translation').filter((f) => f.endsWith('.json'));
  t.true(files.length >= 2);
  for (const f of files) {
    const file = path.join('configs/translation', f);
    const load = () => (f.startsWith('sweep') ? loadSweepConfig(file) : loadConfig(file));
    if (fs.existsSync('.cache/ddtp/train.tsv')) t.notThrows(load, f);
    else {
      const err = t.throws(load, undefined, f);
      t.regex(err!.message, /translation\.pairs: "\.cache\/ddtp" does not exist/, f);
      // and nothing else: no other field is named
      t.is(err!.message.match(/\b[a-z]+\.[a-zA-Z]+: /g)?.filter((m) => m !== 'translation.pairs: ').length ?? 0, 0, err!.message);
    }
  }
});
