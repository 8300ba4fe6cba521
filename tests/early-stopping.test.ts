/**
 * Early stopping of fine-tuning (ml/loop/finetune.ts): the loop against a scripted executor (when
 * it stops, which weights it keeps, patience 0), then a real tiny fine-tune on the classification
 * task (the kept weights score the best evaluation's accuracy on the early-stopping split, the
 * split is held out of the training examples), the sweep config's new fields and the fine-tuning
 * seed of repeated members.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { spawnTtc } from './kit/procs.ts';
import { initBackend } from '../ml/backend.ts';
import { finetuneLoop, type FinetuneOutcome } from '../ml/loop/finetune.ts';
import type { StepExecutor, TrainerState } from '../ml/loop/executor.ts';
import type { EvalResult, EvalSplit } from '../ml/tasks/task.ts';
import { ClassifierTrainer } from '../ml/train/classifier.ts';
import { classifierAccuracy, finetune, loadEvalContext, type EvalContext } from '../compression/eval/index.ts';
import { buildClassificationSet } from '../ml/data/classification.ts';
import { finetuneEarlyStopping, finetuneSeed, memberSeeds, resolveSweepConfig, stopExamplesOf } from '../coordinator/sweep-config.ts';
import { ConfigError } from '../core/config/load.ts';
import { finetuneRecord } from '../report/finetunes.ts';
import { syntheticReportData } from '../report/synthetic.ts';
import type { Finetune } from '../report/types.ts';
import { writeReport } from '../report/write.ts';
import { tempDir, tinyConfig, TINY_MODEL } from './kit/helpers.ts';

/** An executor whose weights are [steps done] and whose early-stopping accuracy after k steps is script(k). */
function scripted(script: (step: number) => number): StepExecutor & { evals: Array<[number, EvalSplit]> } {
  let done = 0;
  const evals: Array<[number, EvalSplit]> = [];
  return {
    worldSize: 1,
    trainCount: 100,
    globalBatch: 10,
    evals,
    async step() {
      done += 1;
      return { loss: 1 / done, gradNorm: 1 };
    },
    async calibrate() {},
    async evaluate(step: number, split: EvalSplit = 'dev'): Promise<EvalResult> {
      evals.push([step, split]);
      return split === 'stop' ? { accuracy: script(done), loss: 1 - script(done), examples: 7 } : { accuracy: script(done) / 2, examples: 3 };
    },
    async verify() {},
    async state(): Promise<TrainerState> {
      return { weights: Float32Array.of(done), m: new Float32Array(1), v: new Float32Array(1), t: done };
    },
    async restore(w: Float32Array) {
      evals.push([w[0]!, 'restore' as EvalSplit]);
      done = w[0]!;
    },
  };
}

const sched = { steps: 100, lr: 1e-3, warmupFraction: 0.1 };

test('early stopping: stops after `patience` evaluations without improvement and keeps the best weights', async (t) => {
  // improves until step 30, then worse (the scripted loss is 1 − accuracy)
  const ex = scripted((k) => (k <= 30 ? k / 100 : 0.3 - (k - 30) / 1000));
  const r = await finetuneLoop(ex, { ...sched, earlyStopping: { evalEvery: 10, patience: 3 } });
  const es = r.earlyStopping!;
  t.is(es.bestStep, 30);
  t.is(r.weights[0], 30, 'the weights returned are those of the best evaluation');
  t.is(es.bestAccuracy, 0.3);
  t.is(r.devAccuracy, 0.15, 'the dev accuracy is the kept weights\' one');
  t.true(es.stoppedEarly);
  t.is(es.stepsRun, 60, 'three evaluations without improvement after step 30');
  t.deepEqual(es.curve.map((p) => p.step), [10, 20, 30, 40, 50, 60]);
  t.is(es.stopEvaluations, 6);
  t.is(es.devEvaluations, 1, 'dev is scored once, on the restored weights');
  t.is(es.evalExamples, 6 * 7 + 3);
  t.deepEqual(ex.evals.slice(-2), [[30, 'restore'], [60, 'dev']], 'the best weights are restored before the dev evaluation');
  // train loss: the mean over the last tenth of the steps run (55..60)
  const tail = [55, 56, 57, 58, 59, 60].map((k) => 1 / k);
  t.true(Math.abs(r.trainLoss - tail.reduce((a, b) => a + b) / 6) < 1e-12);
});

test('early stopping: patience 0 runs every step and still restores the best', async (t) => {
  const ex = scripted((k) => (k <= 30 ? k / 100 : 0.2));
  const r = await finetuneLoop(ex, { ...sched, earlyStopping: { evalEvery: 10, patience: 0 } });
  t.false(r.earlyStopping!.stoppedEarly);
  t.is(r.earlyStopping!.stepsRun, 100);
  t.is(r.earlyStopping!.curve.length, 10);
  t.is(r.weights[0], 30);
  // an evaluation after the last step even when steps is not a multiple of evalEvery
  const exOdd = scripted((k) => k / 1000);
  const odd = await finetuneLoop(exOdd, { ...sched, steps: 25, earlyStopping: { evalEvery: 10, patience: 1 } });
  t.deepEqual(odd.earlyStopping!.curve.map((p) => p.step), [10, 20, 25]);
  t.is(odd.weights[0], 25);
  t.false(exOdd.evals.some(([, s]) => s === ('restore' as EvalSplit)), 'no restore when the best is the last evaluation');
  // off: the final weights, dev evaluated once at the end, no stop-split evaluation
  const exOff = scripted((k) => (k <= 30 ? k / 100 : 0.2));
  const off = await finetuneLoop(exOff, sched);
  t.is(off.weights[0], 100);
  t.is(off.earlyStopping, undefined);
  t.deepEqual(exOff.evals, [[100, 'dev']]);
  await t.throwsAsync(finetuneLoop(scripted(() => 0), { ...sched, earlyStopping: { evalEvery: 0, patience: 1 } }), { message: /evalEvery/ });
  await t.throwsAsync(finetuneLoop(scripted(() => 0), { ...sched, earlyStopping: { evalEvery: 5, patience: -1 } }), { message: /patience/ });
});

let ctx: EvalContext;

test.serial('early stopping on a real tiny fine-tune: the kept weights score the best evaluation on the early-stopping split; that split is held out of training', async (t) => {
  try {
    await initBackend('wasm', { threads: 1 });
  } catch {
    await initBackend('cpu', { threads: 1 });
  }
  const config = tinyConfig();
  ctx = await loadEvalContext({ config, classificationSeed: config.seed, maxTrain: 400, maxDev: 100, maxTest: 100, stopExamples: 100 });
  const set = buildClassificationSet(config.seed);
  t.is(ctx.stop.count, 100);
  t.is(ctx.train.count, 400, 'maxTrain keeps the first examples');
  // the early-stopping split is the last 100 training examples: none of them is trained on
  const base = await loadEvalContext({ config, classificationSeed: config.seed, maxTrain: 400, maxDev: 100, maxTest: 100 });
  t.deepEqual(ctx.train.labels, base.train.labels, 'a capped training set is unchanged by the held-out split');
  t.deepEqual(Array.from(ctx.stop.labels), set.train.slice(-100).map((e) => e.label));

  // the "pretrained" model: fixed pseudo-random weights (fast); a high LR so that the split's loss bottoms out and rises again
  const pretrained = new Float32Array(ctx.mlmLayout.total).map((_, i) => Math.sin(i * 12.9898) * 0.02);
  const opts = { steps: 60, batchSize: 16, lr: 1e-2, warmupFraction: 0.1, seed: 5 };
  const r: FinetuneOutcome = await finetune(ctx, pretrained, { ...opts, earlyStopping: { evalEvery: 5, patience: 2 } });
  const es = r.earlyStopping!;
  t.log(`curve ${es.curve.map((p) => `${p.step}:${(100 * p.accuracy).toFixed(0)}%`).join(' ')}; best ${es.bestStep}, stopped early ${es.stoppedEarly} after ${es.stepsRun}`);
  const trainer = new ClassifierTrainer(ctx.trainerOptions, ctx.numClasses, r.weights);
  const score = await trainer.score(ctx.stopBatches);
  trainer.dispose();
  t.is(score.accuracy, es.bestAccuracy, 'restored: the kept weights reproduce the best evaluation');
  t.true(Math.abs(score.loss - es.curve.find((p) => p.step === es.bestStep)!.loss) < 1e-6);
  t.is((await classifierAccuracy(ctx, r.weights)).dev, r.devAccuracy);
  t.true(es.curve.every((p) => p.loss >= es.curve.find((q) => q.step === es.bestStep)!.loss), 'the best is the lowest loss');
  t.true(es.stoppedEarly, 'the split stopped improving before the last step');
  t.true(es.stepsRun < opts.steps);
  t.is(es.stepsRun, es.curve.at(-1)!.step);
  t.is(es.curve.filter((p) => p.step > es.bestStep).length, 2, 'stopped after `patience` evaluations without improvement');
  // patience 0: every step runs; the same seed gives the same run up to the stop
  const all = await finetune(ctx, pretrained, { ...opts, earlyStopping: { evalEvery: 5, patience: 0 } });
  t.is(all.earlyStopping!.stepsRun, 60);
  t.false(all.earlyStopping!.stoppedEarly);
  t.deepEqual(all.earlyStopping!.curve.slice(0, es.curve.length), es.curve, 'deterministic: the same curve up to where the first run stopped');
  t.true(Math.min(...all.earlyStopping!.curve.map((p) => p.loss)) <= Math.min(...es.curve.map((p) => p.loss)));
  // the report's record: budgeted and run steps, evaluation cost in FLOPs
  const rec = finetuneRecord({ sizeId: 's', budgetId: 'b', seed: 1 }, TINY_MODEL, { steps: 60, batchSize: 16, finetuneSeed: 1 }, r);
  t.is(rec.stepsRun, es.stepsRun);
  t.true(rec.earlyStopping!.evalFlops > 0 && rec.trainFlops > 0);
  t.is(rec.earlyStopping!.evalExamples, es.stopEvaluations * 100 + 100);
  t.is(es.devEvaluations, 1);
  // early stopping without a split is refused
  await t.throwsAsync(finetune(base, pretrained, { ...opts, earlyStopping: { evalEvery: 5, patience: 2 } }), { message: /early-stopping split/ });
});

test('sweep config: early-stopping fields, defaults and one error line per bad value', (t) => {
  const budgets = [{ kind: 'flops', value: 1e12 }];
  const sizes = [{ layers: 1, hidden: 64 }];
  const s = resolveSweepConfig({ sizes, budgets, evaluation: {} });
  t.deepEqual(finetuneEarlyStopping(s.evaluation!), { evalEvery: 25, patience: 4 });
  t.is(stopExamplesOf(s.evaluation!), 500);
  const off = resolveSweepConfig({ sizes, budgets, evaluation: { finetune: { evalEvery: 0 } } });
  t.is(finetuneEarlyStopping(off.evaluation!), undefined);
  t.is(stopExamplesOf(off.evaluation!), 0, 'early stopping off: the training set stays whole');
  const bad = [
    [{ evalEvery: -1 }, 'evaluation.finetune.evalEvery'],
    [{ evalEvery: 2.5 }, 'evaluation.finetune.evalEvery'],
    [{ patience: 'x' }, 'evaluation.finetune.patience'],
    [{ stopExamples: 9000 }, 'evaluation.finetune.stopExamples'],
    [{ stopExamples: 0 }, 'evaluation.finetune.stopExamples'],
    [{ stopAfter: 3 }, 'evaluation.finetune.stopAfter: unknown field'],
  ] as const;
  for (const [ft, field] of bad) {
    const err = t.throws(() => resolveSweepConfig({ sizes, budgets, evaluation: { finetune: ft } }), { instanceOf: ConfigError });
    const lines = err!.message.split('\n').slice(1);
    t.is(lines.length, 1, err!.message);
    t.true(lines[0]!.includes(field), `${err!.message} names ${field}`);
  }
});

test('ttc sweep refuses a bad early-stopping value with the field named, before anything is written', async (t) => {
  const dir = tempDir('es-bad');
  const raw = JSON.parse(fs.readFileSync('configs/sweep-local.json', 'utf8'));
  raw.outputDir = path.join(dir, 'out');
  raw.evaluation.finetune.patience = -2;
  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify(raw));
  const p = spawnTtc(['sweep', '--config', path.join(dir, 'bad.json')]);
  t.not(await p.exited, 0);
  const text = p.lines.join('\n');
  t.regex(text, /evaluation\.finetune\.patience: expected an integer >= 0 .*got -2/);
  t.is(p.lines.filter((l) => l.includes('evaluation.finetune')).length, 1, text);
  t.false(fs.existsSync(raw.outputDir), 'nothing written');
});

test('the report shows the members\' fine-tuning: dev accuracy over seeds (mean ± sd, min–max), steps run, best step, stops, evaluation cost', (t) => {
  const data = syntheticReportData({ seeds: 3 });
  const size = data.sizes[0]!.id;
  const budget = data.budgets[0]!.id;
  const run = (seed: number, dev: number, stepsRun: number): Finetune => ({
    sizeId: size, budgetId: budget, seed, finetuneSeed: seed, steps: 100, stepsRun, trainFlops: 1e12, trainLoss: 2, devAccuracy: dev,
    earlyStopping: { evalEvery: 20, patience: 2, bestStep: stepsRun - 40 > 0 ? stepsRun - 40 : stepsRun, bestAccuracy: dev, stoppedEarly: stepsRun < 100, curve: [{ step: 20, accuracy: dev, loss: 2 }], stopEvaluations: 5, devEvaluations: 1, evalExamples: 3000, evalFlops: 2e9, evalSeconds: 4 },
  });
  data.finetunes = [run(1, 0.2, 100), run(2, 0.3, 80), run(3, 0.25, 100)];
  const dir = tempDir('es-report');
  writeReport(dir, data);
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  t.true(md.includes('## Fine-tuning'));
  const row = md.split('\n').find((l) => l.startsWith(`| ${budget} | ${size} | 3 |`));
  t.truthy(row, md);
  t.true(row!.includes('25.0% ± 5.0% (20.0%–30.0%)'), row);
  t.true(row!.includes('100/100, 80/100, 100/100'), row);
  t.true(row!.includes('1/3'), row);
  t.true(row!.includes('2.00 GFLOP, 4.0 s'), row);
  t.true(fs.readFileSync(path.join(dir, 'report.html'), 'utf8').includes('id="finetuning"'));
});

test('every repeat of a member fine-tunes with its own seed; without repeats, the base seed', (t) => {
  const cfg = { sizes: [{ layers: 1, hidden: 64 }], budgets: [{ kind: 'flops', value: 1e12 }], base: { seed: 77 } };
  const rep = resolveSweepConfig({ ...cfg, seeds: 3 });
  const seeds = memberSeeds(rep).map((m) => finetuneSeed(rep, m));
  t.deepEqual(seeds, [1, 2, 3]);
  t.is(new Set(seeds).size, 3);
  const one = resolveSweepConfig(cfg);
  t.deepEqual(memberSeeds(one).map((m) => finetuneSeed(one, m)), [77]);
});
