import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { childProcesses, cmdline, descendants, spawnTtc, waitGone } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { resolveSweepConfig } from '../coordinator/sweep-config.ts';
import { ConfigError } from '../core/config/load.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';

test('sweep config: grid expansion, BERT defaults, and clear errors', (t) => {
  const s = resolveSweepConfig({ grid: { layers: [1, 2], hidden: [64, 128] }, budgets: [{ kind: 'flops', value: 1e12 }] });
  t.deepEqual(s.sizes.map((x) => x.id), ['L1-d64', 'L1-d128', 'L2-d64', 'L2-d128']);
  t.deepEqual([s.sizes[1].heads, s.sizes[1].ffn], [2, 512]);
  t.is(s.workers, 2);
  const err = t.throws(() => resolveSweepConfig({ sizes: [{ layers: 0, hidden: 64 }], budgets: [{ kind: 'joules', value: 1 }], base: { model: { heads: -1 } } }), { instanceOf: ConfigError });
  for (const f of ['sizes[0].layers', 'budgets[0]', 'base: ', 'model.heads']) t.true(err!.message.includes(f), `${err!.message} mentions ${f}`);
  t.notThrows(() => resolveSweepConfig(JSON.parse(fs.readFileSync('configs/sweep.json', 'utf8'))));
});

test('a sweep trains every size × budget member within its budget, and a killed sweep resumes where it stopped', async (t) => {
  const dir = tempDir('sweep');
  const perStep = (hidden: number, workers: number) => mlmStepFlops({ ...TINY_MODEL, hidden, ffn: 2 * hidden, heads: 2 }, 4, numMaskedPerSeq(TINY_MODEL.seqLen)).training * workers;
  const budgets = [perStep(48, 2) * 6.5, perStep(48, 2) * 12.5];
  const cfg = path.join(dir, 'sweep.json');
  fs.writeFileSync(cfg, JSON.stringify({
    sweepId: 'sw', outputDir: dir, workers: 2,
    base: { cacheDir: TEST_CACHE_DIR, backend: 'cpu', model: { seqLen: TINY_MODEL.seqLen, vocab: TINY_MODEL.vocab }, train: { batchSize: 4, evalEvery: 2, checkpointEvery: 2 }, data: { maxValidationSequences: 16 } },
    sizes: [{ layers: 1, hidden: 32, heads: 2, ffn: 64 }, { layers: 1, hidden: 48, heads: 2, ffn: 96 }],
    budgets: budgets.map((value, i) => ({ id: `b${i}`, kind: 'flops', value })),
  }));
  const first = spawnTtc(['sweep', '--config', cfg]);
  await first.waitFor(/member 2\/4 .*starting/, 240_000);
  // One orchestration path: the sweep drives every member in-process on the 2 workers it started once
  // (its only child processes besides tsx's esbuild; a tool of theirs may run below them).
  const kids = childProcesses(first.child.pid!);
  t.deepEqual(kids.map((pid) => / worker --coordinator ws:\/\/127\.0\.0\.1:\d+ --name worker-\d$/.test(cmdline(pid))), [true, true], `ttc sweep's children: ${kids.map(cmdline).join(' | ')}`);
  const tree = descendants(first.child.pid!);
  first.kill('SIGKILL');
  await first.exited;
  // its workers stop by themselves (they would otherwise race the resumed sweep)
  const left = await waitGone(tree, 20_000);
  t.deepEqual(left, [], `still running 20 s after ttc sweep was killed: ${left.join(', ')}`);
  const sweepDir = path.join(dir, 'sw');
  // --verbose: the full log stream on the console, as before the progress view (tests/console.test.ts has the view)
  const second = spawnTtc(['sweep', '--resume', sweepDir, '--verbose']);
  t.is(await second.exited, 0, second.lines.slice(-20).join('\n'));
  const out = second.lines.join('\n');
  t.regex(out, /member 1\/4 L1-d32_b0 .*already complete, skipped/);
  t.regex(out, /best size/);
  t.is(second.lines.filter((l) => /worker worker-\d: connected to coordinator/.test(l)).length, 2, 'the resumed sweep started its 2 workers once for its 3 remaining members');
  const results = JSON.parse(fs.readFileSync(path.join(sweepDir, 'pretraining.json'), 'utf8'));
  t.is(results.members.length, 4);
  for (const m of results.members) {
    const budget = budgets[Number(m.budgetId.slice(1))];
    const hidden = m.sizeId === 'L1-d32' ? 32 : 48;
    const summary = JSON.parse(fs.readFileSync(path.join(m.runDir, 'summary.json'), 'utf8'));
    t.true(summary.completed);
    t.true(m.flops <= budget, `${m.sizeId}/${m.budgetId} within its budget`);
    t.true(budget - m.flops < mlmStepFlops({ ...TINY_MODEL, hidden, ffn: 2 * hidden, heads: 2 }, 4, numMaskedPerSeq(TINY_MODEL.seqLen)).training * 2, 'short by less than one step');
    t.true(m.curve.length >= 2);
  }
  t.is(fs.readFileSync(path.join(sweepDir, 'pretraining.csv'), 'utf8').trim().split('\n').length, 5);
});
