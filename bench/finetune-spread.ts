/**
 * Spread of fine-tuned accuracy over a sweep's repeated members (issue 17; docs/evaluation.md,
 * "Repeats"): fine-tunes every pretrained member of a sweep directory in this process (the loop the
 * ring runs, equal up to float rounding) with the given steps, LR and early stopping, on 500 dev and
 * 500 test examples (and 500 held-out training examples when early stopping is on), and prints one
 * JSON line per member: dev and test accuracy, train loss, best step, steps run, the
 * early-stopping curve (step:loss/accuracy%), seconds.
 *
 *   node --import tsx bench/finetune-spread.ts runs/<sweep> <steps> <lr> <evalEvery (0 = off)> <patience>
 */
import fs from 'node:fs';
import path from 'node:path';
import { initBackend } from '../ml/backend.ts';
import { classifierAccuracy, finetune, loadEvalContext } from '../compression/eval/index.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { memberConfig, readSweepDir } from '../coordinator/sweep-config.ts';
const [dir, steps, lr, evalEvery, patience] = process.argv.slice(2);
await initBackend('wasm', { threads: 1 });
const sweep = readSweepDir(dir!);
const members = JSON.parse(fs.readFileSync(path.join(dir!, 'pretraining.json'), 'utf8')).members as Array<{ sizeId: string; budgetId: string; seed: number; runDir: string }>;
let ctx;
for (const m of members) {
  const cfg = memberConfig(sweep, sweep.sizes.find((s) => s.id === m.sizeId)!, sweep.budgets.find((b) => b.id === m.budgetId)!, path.dirname(m.runDir), m.seed);
  ctx ??= await loadEvalContext({ config: cfg, classificationSeed: sweep.base.seed, maxDev: 500, maxTest: 500, stopExamples: Number(evalEvery) > 0 ? 500 : 0 });
  const w = loadCheckpoint(listCheckpointDirs(checkpointsDir(m.runDir)).at(-1)!, paramLayout(cfg.model)).weights;
  const t0 = Date.now();
  const es = Number(evalEvery) > 0 ? { earlyStopping: { evalEvery: Number(evalEvery), patience: Number(patience) } } : {};
  const r = await finetune(ctx, w, { steps: Number(steps), batchSize: 32, lr: Number(lr), warmupFraction: 0.1, seed: m.seed, ...es });
  const acc = await classifierAccuracy(ctx, r.weights);
  const e = r.earlyStopping;
  console.log(JSON.stringify({ member: `${m.sizeId}_${m.budgetId}_s${m.seed}`, steps, lr, evalEvery, patience, dev: acc.dev, test: acc.test, trainLoss: r.trainLoss, best: e?.bestStep, run: e?.stepsRun, stopped: e?.stoppedEarly, curve: e?.curve.map((p) => `${p.step}:${p.loss.toFixed(3)}/${(100 * p.accuracy).toFixed(1)}`).join(' '), s: (Date.now() - t0) / 1000 }));
}
