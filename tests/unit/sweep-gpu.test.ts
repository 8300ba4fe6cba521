/**
 * The GPU presets (issue 17, item 4): configs/sweep-gpu.json (one H200, ≤ 10 minutes at the
 * throughput measured in docs/gpu.md) and configs/sweep-gpu-cluster.json (the documented larger
 * variant). The arithmetic is bench/sweep-plan.ts's; docs/sweep-gpu.md writes it out.
 */
import test from 'ava';
import { loadSweepConfig, resolveSweepConfig } from '../../coordinator/sweep-config.ts';
import { parameterCount } from '../../ml/model/spec.ts';
import { dimsOf, planSweep, scaleSweepJson } from '../../bench/sweep-plan.ts';
import fs from 'node:fs';

test('configs/sweep-gpu.json parses; 5 sizes from ~5M to ~300M parameters; FLOP and seconds budgets, two of each; the plan fits 10 minutes on one H200', (t) => {
  const sweep = loadSweepConfig('configs/sweep-gpu.json');
  const params = sweep.sizes.map((s) => parameterCount(dimsOf(sweep, s)));
  t.is(params.length, 5);
  t.deepEqual(params, [...params].sort((a, b) => a - b), 'sizes small to large');
  t.true(params[0]! >= 4e6 && params[0]! <= 6e6, `smallest ${params[0]}`);
  t.true(params[4]! >= 250e6 && params[4]! <= 350e6, `largest ${params[4]}`);
  t.is(sweep.budgets.filter((b) => b.kind === 'flops').length, 2);
  t.is(sweep.budgets.filter((b) => b.kind === 'seconds').length, 2);
  t.is(sweep.base.backend, 'webgpu', 'forced: a missing GPU fails instead of falling back to a CPU backend');
  t.truthy(sweep.evaluation, 'compression + evaluation are part of the sweep');
  t.deepEqual(sweep.evaluation!.budgets, ['S20']);
  const plan = planSweep(sweep);
  t.true(plan.members.every((m) => m.steps >= 1), 'every member gets at least one step');
  t.true(plan.totalSeconds <= 600, `the whole sweep in ${plan.totalSeconds.toFixed(0)} s`);
  t.true(plan.totalSeconds >= 400, 'and not trivially small: the budget is used');

  const cluster = loadSweepConfig('configs/sweep-gpu-cluster.json');
  t.deepEqual(cluster.sizes, sweep.sizes, 'the cluster variant has the same sizes');
  t.is(cluster.seeds.length, 3);
  t.is(cluster.budgets.filter((b) => b.kind === 'flops').length, 3);
  t.is(cluster.budgets.filter((b) => b.kind === 'seconds').length, 3);
  t.true(Math.min(...cluster.budgets.filter((b) => b.kind === 'flops').map((b) => b.value)) > Math.max(...sweep.budgets.filter((b) => b.kind === 'flops').map((b) => b.value)) * 10);
});

test('evaluation.budgets: only those budgets are evaluated; an unknown id is refused', (t) => {
  const raw = JSON.parse(fs.readFileSync('configs/sweep-gpu.json', 'utf8')) as Record<string, any>;
  raw.evaluation.budgets = ['S20', 'nope'];
  t.throws(() => resolveSweepConfig(raw), { message: /evaluation\.budgets: no budget with id "nope" \(budgets: F8e12, F1\.6e13, S8, S20\)/ });
  raw.evaluation.budgets = [];
  t.throws(() => resolveSweepConfig(raw), { message: /evaluation\.budgets: expected a non-empty list of budget ids/ });
  delete raw.evaluation.budgets;
  t.is(resolveSweepConfig(raw).evaluation!.budgets, undefined);
  const plan = planSweep(resolveSweepConfig(raw));
  t.true(plan.members.every((m) => m.evaluationSeconds > 0), 'without the list every member is evaluated');
});

test('scaleSweepJson: budgets and widths scaled, heads still divide hidden', (t) => {
  const raw = JSON.parse(fs.readFileSync('configs/sweep-gpu.json', 'utf8')) as Record<string, unknown>;
  const scaled = scaleSweepJson(raw, { flops: 1e-3, seconds: 2, width: 4, depth: 4 });
  const sweep = resolveSweepConfig(scaled);
  t.is(sweep.budgets[0]!.value, 8e9);
  t.is(sweep.budgets[2]!.value, 16);
  for (const s of sweep.sizes) t.is(s.hidden % s.heads, 0);
  t.deepEqual(sweep.sizes.map((s) => s.layers), [1, 2, 2, 3, 6]);
});
