/**
 * The distributed compression + evaluation step of a sweep, with real worker processes: results
 * equal a single-process evaluation of the same jobs, a job lost with its worker runs elsewhere,
 * and the report lists every cell.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnTtc } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { resolveSweepConfig, memberConfig } from '../coordinator/sweep-config.ts';
import { runSweepMembersInProcess } from './kit/sweep-fixture.ts';
import { initBackend } from '../ml/backend.ts';
import { classifierAccuracy, loadEvalContext, evaluateCell, finetune } from '../compression/eval/index.ts';
import { compressionGrid, cellLabel } from '../compression/grid.ts';
import { decodeSafetensors } from '../ml/checkpoint/safetensors.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { paramLayout } from '../ml/model/spec.ts';

const env = { TTC_SECRET: crypto.randomBytes(24).toString('base64'), TTC_SECRET_FILE: undefined };

function sweepFixture(name: string, finetune: Record<string, number> = { steps: 8, batchSize: 16 }) {
  const dir = tempDir(name);
  const raw = {
    sweepId: 's', outputDir: dir, workers: 2,
    base: { cacheDir: TEST_CACHE_DIR, backend: 'cpu', threads: 1, model: { seqLen: TINY_MODEL.seqLen, vocab: TINY_MODEL.vocab }, train: { batchSize: 4, evalEvery: 2, checkpointEvery: 2 }, data: { maxValidationSequences: 16 } },
    sizes: [{ layers: 1, hidden: 32, heads: 2, ffn: 64 }],
    budgets: [{ id: 'b0', kind: 'flops', value: 1e8 }],
    evaluation: {
      finetune, maxTrain: 200, maxDev: 64, maxTest: 64,
      compression: { bits: [8, 3], granularities: ['channel'], embeddings: [false, true], sparsities: [0.6], iterative: { rounds: 2, stepsPerRound: 3 }, combined: [{ sparsity: 0.5, bits: 4 }] },
    },
  };
  return { dir, sweep: resolveSweepConfig(raw), sweepDir: path.join(dir, 's') };
}

test.serial('distributed evaluation: every cell done on 2 workers equals the single-process evaluation, and the report lists every cell', async (t) => {
  // early stopping every 2 steps at a high LR: the ring keeps the best weights and restores them (when the best is not the last)
  const { sweep, sweepDir } = sweepFixture('eval', { steps: 8, batchSize: 16, lr: 0.02, evalEvery: 2, patience: 0, stopExamples: 64 });
  await runSweepMembersInProcess(sweep, sweepDir);
  const coord = spawnTtc(['evaluate', '--sweep', sweepDir, '--port', '0'], env);
  const url = (await coord.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
  const workers = [0, 1].map((i) => spawnTtc(['worker', '--coordinator', url, '--name', `w${i}`], env));
  t.is(await coord.exited, 0, coord.lines.slice(-20).join('\n'));
  for (const w of workers) t.is(await w.exited, 0);
  const grid = compressionGrid(sweep.evaluation!.compression);
  const records = fs.readFileSync(path.join(sweepDir, 'cells.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(records.length, grid.length);
  const used = new Set(coord.lines.filter((l) => /job cell\/.* done on (w\d)/.test(l)).map((l) => l.match(/done on (w\d)/)![1]));
  t.deepEqual([...used].sort(), ['w0', 'w1'], 'jobs were spread over both workers');

  // The same jobs in this process give exactly the same numbers.
  await initBackend('cpu', { threads: 1 });
  const member = memberConfig(sweep, sweep.sizes[0], sweep.budgets[0], path.join(sweepDir, 'members'));
  const ctx = await loadEvalContext({ config: member, classificationSeed: sweep.base.seed, maxTrain: 200, maxDev: 64, maxTest: 64 });
  const pretrained = loadCheckpoint(listCheckpointDirs(checkpointsDir(path.join(sweepDir, 'members', member.runId))).at(-1)!, paramLayout(member.model)).weights;
  const ftFile = decodeSafetensors(fs.readFileSync(path.join(sweepDir, 'finetuned', `${member.runId}.safetensors`)));
  const finetuned = ftFile.tensors.weights.data as Float32Array;
  // Fine-tuning ran data-parallel on both workers and equals the single-process fine-tuning.
  t.is(ftFile.metadata.workers, '2');
  const stopCtx = await loadEvalContext({ config: member, classificationSeed: sweep.base.seed, maxTrain: 200, maxDev: 64, maxTest: 64, stopExamples: 64 });
  const single = await finetune(stopCtx, pretrained, { ...sweep.evaluation!.finetune, seed: sweep.base.seed, earlyStopping: { evalEvery: 2, patience: 0 } });
  let maxDiff = 0;
  for (let i = 0; i < finetuned.length; i++) maxDiff = Math.max(maxDiff, Math.abs(finetuned[i] - single.weights[i]));
  t.true(maxDiff < 1e-4, `max |Δw| between data-parallel and single-process fine-tuning = ${maxDiff}`);
  // what early stopping did, recorded for the report: the same best step as the single-process run, and the dev accuracy of the restored weights
  const rec = JSON.parse(fs.readFileSync(path.join(sweepDir, 'finetuned', `${member.runId}.json`), 'utf8'));
  t.log(`early stopping on the ring: best step ${rec.earlyStopping.bestStep} of ${rec.stepsRun}; curve ${rec.earlyStopping.curve.map((p: { step: number; loss: number }) => `${p.step}:${p.loss.toFixed(4)}`).join(' ')}`);
  t.is(rec.earlyStopping.bestStep, single.earlyStopping!.bestStep);
  t.is(rec.stepsRun, 8);
  t.true(rec.earlyStopping.bestStep < 8, 'the best was not the last: the ring restored it');
  t.is(rec.devAccuracy, (await classifierAccuracy(ctx, finetuned)).dev);
  for (const spec of grid) {
    const local = await evaluateCell(ctx, finetuned, pretrained, spec, { seed: sweep.base.seed, finetune: sweep.evaluation!.finetune });
    const remote = records.find((r) => r.key === `${member.runId}|${spec.method}|${cellLabel(spec)}`).result;
    for (const k of ['bytesTotal', 'bytesNonEmbedding', 'valPerplexity'] as const) t.is(remote[k], local[k], `${cellLabel(spec)} ${k}`);
    // Iterative pruning fine-tunes data-parallel (gradients averaged by the ring): equal up to float
    // rounding, so an example at the decision boundary may flip; every other cell is bit-exact.
    const slack = spec.method === 'prune-iterative' ? 2 / 64 : 0;
    for (const k of ['devAccuracy', 'testAccuracy'] as const) t.true(Math.abs(remote[k] - local[k]) <= slack, `${cellLabel(spec)} ${k}: ${remote[k]} vs ${local[k]}`);
  }
  const csv = fs.readFileSync(path.join(sweepDir, 'results.csv'), 'utf8').trim().split('\n');
  t.is(csv.length, grid.length + 1);
  const html = fs.readFileSync(path.join(sweepDir, 'report.html'), 'utf8');
  for (const spec of grid) t.true(html.includes(cellLabel(spec).replace(/&/g, '&amp;')), `report lists ${cellLabel(spec)}`);
});

test.serial('a job lost with its worker (SIGKILL) runs again on another worker; finished cells are kept on a rerun', async (t) => {
  const { sweep, sweepDir } = sweepFixture('evalkill');
  await runSweepMembersInProcess(sweep, sweepDir);
  const coord = spawnTtc(['evaluate', '--sweep', sweepDir, '--port', '0'], env);
  const url = (await coord.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
  const victim = spawnTtc(['worker', '--coordinator', url, '--name', 'victim'], env);
  // the coordinator hands the victim (its only worker) a cell in the tick it prints this, so the kill lands mid-job
  await coord.waitFor(/evaluating \d+ compression cell/);
  victim.kill('SIGKILL');
  const rescuer = spawnTtc(['worker', '--coordinator', url, '--name', 'rescuer'], env);
  t.is(await coord.exited, 0, coord.lines.slice(-20).join('\n'));
  t.is(await rescuer.exited, 0);
  t.regex(coord.lines.join('\n'), /re-queued \(attempt 2\): worker "victim" .*disconnected while running it/);
  const n = compressionGrid(sweep.evaluation!.compression).length;
  t.is(fs.readFileSync(path.join(sweepDir, 'cells.jsonl'), 'utf8').trim().split('\n').length, n);
  // A rerun finds everything done and only rewrites the report.
  const again = spawnTtc(['evaluate', '--sweep', sweepDir, '--port', '0'], env);
  t.is(await again.exited, 0, again.lines.slice(-10).join('\n'));
  t.regex(again.lines.join('\n'), /fine-tuning 0 member\(s\) \(1 already done\)/);
  t.regex(again.lines.join('\n'), new RegExp(`evaluating 0 compression cell\\(s\\) \\(${n} already done\\)`));
});

test.serial('seeds: 2 repeats every member with its own training seed (same validation set); cells carry the seed and the report averages them', async (t) => {
  t.deepEqual(resolveSweepConfig({ sizes: [{ layers: 1, hidden: 32 }], budgets: [{ kind: 'flops', value: 1e8 }], seeds: 3 }).seeds, [1, 2, 3]);
  t.deepEqual(resolveSweepConfig({ sizes: [{ layers: 1, hidden: 32 }], budgets: [{ kind: 'flops', value: 1e8 }] }).seeds, []);
  t.throws(() => resolveSweepConfig({ sizes: [{ layers: 1, hidden: 32 }], budgets: [{ kind: 'flops', value: 1e8 }], seeds: [2, 2] }), { message: /seeds: expected/ });
  const dir = tempDir('seeds');
  const sweep = resolveSweepConfig({
    sweepId: 's', outputDir: dir, workers: 2, seeds: 2,
    base: { cacheDir: TEST_CACHE_DIR, backend: 'cpu', threads: 1, model: { seqLen: TINY_MODEL.seqLen, vocab: TINY_MODEL.vocab }, train: { batchSize: 4, evalEvery: 2, checkpointEvery: 2 }, data: { maxValidationSequences: 16 } },
    sizes: [{ layers: 1, hidden: 32, heads: 2, ffn: 64 }],
    budgets: [{ id: 'b0', kind: 'flops', value: 1e8 }],
    evaluation: { finetune: { steps: 4, batchSize: 16 }, maxTrain: 128, maxDev: 32, maxTest: 32, compression: { bits: [8], granularities: ['channel'], embeddings: [false], sparsities: [], iterative: { rounds: 1, stepsPerRound: 2 }, combined: [] } },
  });
  // A resolved sweep config (as stored in sweep.json) resolves to itself, with and without seeds.
  t.deepEqual(resolveSweepConfig(JSON.parse(JSON.stringify(sweep))), sweep);
  const once = resolveSweepConfig({ sizes: [{ layers: 1, hidden: 32 }], budgets: [{ kind: 'flops', value: 1e8 }] });
  t.deepEqual(resolveSweepConfig(JSON.parse(JSON.stringify(once))), once);
  const sweepDir = path.join(dir, 's');
  const members = await runSweepMembersInProcess(sweep, sweepDir);
  t.deepEqual(members.map((m) => [path.basename(m.runDir), m.seed]), [['L1-d32_b0_s1', 1], ['L1-d32_b0_s2', 2]]);
  const curves = members.map((m) => m.curve);
  t.not(curves[0][0].valLoss, curves[1][0].valLoss, 'different initial weights');
  const configs = members.map((m) => JSON.parse(fs.readFileSync(path.join(m.runDir, 'config.json'), 'utf8')));
  t.deepEqual(configs.map((c) => [c.seed, c.trainSeed]), [[sweep.base.seed, 1], [sweep.base.seed, 2]], 'the data seed stays, the training seed varies');

  const coord = spawnTtc(['evaluate', '--sweep', sweepDir, '--port', '0'], env);
  const url = (await coord.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
  const workers = [0, 1].map((i) => spawnTtc(['worker', '--coordinator', url, '--name', `w${i}`], env));
  t.is(await coord.exited, 0, coord.lines.slice(-20).join('\n'));
  for (const w of workers) t.is(await w.exited, 0);
  const records = fs.readFileSync(path.join(sweepDir, 'cells.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const n = compressionGrid(sweep.evaluation!.compression).length;
  t.is(records.length, 2 * n);
  t.deepEqual([...new Set(records.map((r) => r.seed))].sort(), [1, 2]);
  const report = fs.readFileSync(path.join(sweepDir, 'report.md'), 'utf8');
  t.regex(report, /means over seeds/);
  t.regex(fs.readFileSync(path.join(sweepDir, 'pretraining.csv'), 'utf8'), /^size,budget,seed,/);
});
