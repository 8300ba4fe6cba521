import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { tf } from '../ml/tf.ts';
import { trainRun } from '../ml/loop/run.ts';
import { startingPoint } from '../ml/loop/pretrain.ts';
import { readMetrics } from '../core/run/metrics.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { listCheckpointDirs, checkpointsDir } from '../ml/checkpoint/checkpoint.ts';
import { learningRate, warmupSteps } from '../ml/train/schedule.ts';
import { initBackend } from '../ml/backend.ts';
import { prepareDataset } from '../ml/data/dataset.ts';
import { BatchReader } from '../ml/data/batches.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { MlmTrainer } from '../ml/train/trainer.ts';
import { tinyConfig, newRun, quiet, TINY_MODEL, TEST_CACHE_DIR } from './kit/helpers.ts';

test('learning rate: warm-up to the peak, linear decay to exactly 0 at the last step', (t) => {
  const total = 50;
  const warm = warmupSteps(total, 0.1);
  t.is(warm, 5);
  t.is(learningRate(warm - 1, total, warm, 1e-3), 1e-3);
  t.is(learningRate(warm, total, warm, 1e-3), 1e-3);
  t.is(learningRate(total - 1, total, warm, 1e-3), 0);
  for (let s = warm; s < total - 1; s++) t.true(learningRate(s + 1, total, warm, 1e-3) < learningRate(s, total, warm, 1e-3));
  t.is(learningRate(0, 1, warmupSteps(1, 0.1), 1e-3), 0);
});

test.serial('a FLOP budget stops exactly at the budget with LR 0 at the last step', async (t) => {
  const perStep = mlmStepFlops(TINY_MODEL, 4, numMaskedPerSeq(TINY_MODEL.seqLen)).training;
  const budget = perStep * 7.6; // room for 7 steps, not 8
  const config = tinyConfig({ budget: { kind: 'flops', flops: budget }, train: { evalEvery: 3 } });
  const run = newRun(config);
  const summary = await trainRun(config, run, quiet);
  t.is(summary.steps, 7);
  t.true(summary.flopsUsed <= budget);
  t.true(budget - summary.flopsUsed < perStep, 'never short of the budget by a whole step');
  const rows = readMetrics(run.metricsFile).filter((r) => r.step > 0);
  t.deepEqual(rows.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7]);
  t.is(rows.at(-1)!.lr, 0);
  t.true(rows.every((r, i) => i === rows.length - 1 || r.lr > 0));
  t.is(rows.at(-1)!.flops, summary.flopsUsed);
  t.true(Number.isFinite(rows.at(-1)!.valLoss));
  t.true(fs.existsSync(path.join(run.dir, 'config.json')));
  t.true(listCheckpointDirs(checkpointsDir(run.dir)).length > 0);
});

test.serial('a seconds budget fits its schedule to the time and ends with LR 0', async (t) => {
  const config = tinyConfig({ budget: { kind: 'seconds', seconds: 3 } });
  const run = newRun(config);
  const summary = await trainRun(config, run, quiet);
  const rows = readMetrics(run.metricsFile).filter((r) => r.step > 0);
  t.true(summary.steps >= 2);
  t.is(rows.at(-1)!.lr, 0);
  const perStep = summary.secondsUsed / summary.steps;
  t.true(summary.secondsUsed <= 3 + 2 * perStep + 0.5, `used ${summary.secondsUsed} s`);
});

test.serial('checkpoint → resume reproduces the uninterrupted loss trajectory exactly', async (t) => {
  const full = tinyConfig({ budget: { kind: 'steps', steps: 10 }, train: { checkpointEvery: 100, evalEvery: 5 } });
  const runA = newRun(full);
  await trainRun(full, runA, quiet);

  const runB = newRun(full);
  const first = await trainRun(full, runB, { ...quiet, stopAfterSteps: 4 });
  t.false(first.completed);
  t.is(first.steps, 4);
  const second = await trainRun(full, runB, quiet);
  t.true(second.completed);

  const a = readMetrics(runA.metricsFile);
  const b = readMetrics(runB.metricsFile);
  t.deepEqual(b.map((r) => r.step), a.map((r) => r.step));
  for (let i = 0; i < a.length; i++) {
    t.is(b[i].trainLoss, a[i].trainLoss, `train loss at step ${a[i].step}`);
    t.is(b[i].valLoss, a[i].valLoss, `val loss at step ${a[i].step}`);
    t.is(b[i].lr, a[i].lr);
    t.is(b[i].flops, a[i].flops);
  }
});

test.serial('a corrupt latest checkpoint is reported and the previous one is used', async (t) => {
  const config = tinyConfig({ budget: { kind: 'steps', steps: 8 }, train: { checkpointEvery: 2 } });
  const run = newRun(config);
  await trainRun(config, run, { ...quiet, stopAfterSteps: 6 });
  const dirs = listCheckpointDirs(checkpointsDir(run.dir));
  t.is(path.basename(dirs.at(-1)!), 'step-00000006');
  const file = path.join(dirs.at(-1)!, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 5] ^= 0xff;
  fs.writeFileSync(file, bytes);
  const warnings: string[] = [];
  const summary = await trainRun(config, run, { ...quiet, log: { ...quiet.log, warn: (m) => warnings.push(m) } });
  t.true(summary.completed);
  t.true(warnings.some((w) => w.includes('step-00000006') && w.includes('checksum mismatch')), warnings.join('\n'));
  t.true(fs.existsSync(file), 'the corrupt checkpoint is kept for inspection');
  const rows = readMetrics(run.metricsFile);
  t.deepEqual(rows.filter((r) => r.step > 0).map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8]);
});

test.serial('a run that starts again removes the partial checkpoints its killed writer left', async (t) => {
  const config = tinyConfig({ budget: { kind: 'steps', steps: 8 }, train: { checkpointEvery: 2 } });
  const run = newRun(config);
  await trainRun(config, run, { ...quiet, stopAfterSteps: 2 });
  const root = checkpointsDir(run.dir);
  // what a save killed mid-write leaves: a temporary directory with some of the files
  const stale = ['step-00000003.tmp-4242-1764660000000', 'step-00000004.tmp-xyz'];
  for (const s of stale) {
    fs.mkdirSync(path.join(root, s));
    fs.writeFileSync(path.join(root, s, 'model.safetensors'), 'partial');
  }
  const logged: string[] = [];
  const start = startingPoint(config, run, { ...quiet.log, info: (m) => logged.push(m) });
  t.is(start.training?.step, 2);
  t.deepEqual(fs.readdirSync(root), ['step-00000002'], 'only the real checkpoint is left');
  for (const s of stale) t.true(logged.some((m) => m.includes(path.join(root, s))), `its removal is logged: ${logged.join('; ')}`);
});

test.serial('the tensor count does not grow across 20 training steps', async (t) => {
  await initBackend('cpu', { threads: 1 });
  const data = await prepareDataset({ seed: 1234, seqLen: TINY_MODEL.seqLen, vocabSize: TINY_MODEL.vocab, validationFraction: 0.02, cacheDir: TEST_CACHE_DIR });
  const layout = paramLayout(TINY_MODEL);
  const trainer = new MlmTrainer({ dims: TINY_MODEL, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1 }, initialWeights(layout, 1, 0.02));
  const reader = new BatchReader({ data: data.train, count: data.trainCount, seqLen: TINY_MODEL.seqLen }, 1234, TINY_MODEL.vocab);
  let pos = { epoch: 0, offset: 0 };
  const counts: number[] = [];
  for (let i = 0; i < 20; i++) {
    await trainer.computeGradients(reader.read(pos, 0, 4));
    await trainer.apply(1e-3);
    await trainer.evaluate([reader.read(pos, 4, 2)]);
    pos = reader.advance(pos, 4);
    counts.push(tf.memory().numTensors);
  }
  t.true(counts.every((c) => c === counts[0]), `tensor counts: ${counts.join(',')}`);
  t.is(counts[0], layout.specs.length);
  trainer.dispose();
  t.is(tf.memory().numTensors, 0);
});
