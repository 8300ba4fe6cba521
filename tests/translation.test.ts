/**
 * The translation pipeline end to end on the committed DDTP sample (tests/fixtures/ddtp/pairs.tsv,
 * 673 English→French pairs): `ttc local` with 2 worker processes over real loopback sockets trains a
 * tiny encoder–decoder under a FLOP budget through the same coordinator/ring path as pretraining,
 * the replicas' parameter hashes agree, the loss falls, and the run's results hold the evaluation's
 * loss and BLEU (greedy and beam). A config for it is refused before anything is written when its
 * pairs are missing.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnTtc } from './kit/procs.ts';
import { DIST_TIMEOUTS, tempDir, writeConfig } from './kit/helpers.ts';
import { readMetrics } from '../core/run/metrics.ts';
import { seq2seqStepFlops } from '../ml/flops.ts';
import { resolveConfig } from '../core/config/load.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { runLayout } from '../ml/train/controller.ts';

const env = { TTC_SECRET: crypto.randomBytes(24).toString('base64'), TTC_SECRET_FILE: undefined };
const MODEL = { layers: 1, hidden: 32, heads: 2, ffn: 64, seqLen: 32, vocab: 500 };
const BATCH = 8;
const STEPS = 24;

/** The translation run config: writeConfig's tiny run with the translation task, model and a FLOP budget of exactly STEPS steps of 2 workers. */
function config(dir: string, extra: Record<string, unknown> = {}): string {
  const perStep = seq2seqStepFlops({ ...MODEL, decoderLayers: 1 }, BATCH, MODEL.seqLen, MODEL.seqLen).training * 2;
  return writeConfig(dir, {
    seed: 7,
    task: 'translation',
    translation: { pairs: 'tests/fixtures/ddtp/pairs.tsv', evalPairs: 16, beam: 2 },
    model: MODEL,
    optimizer: { lr: 0.003 },
    train: { batchSize: BATCH, evalEvery: 12, checkpointEvery: 12 },
    data: {},
    budget: { kind: 'flops', flops: perStep * STEPS },
    dist: { hashEvery: 4, ...DIST_TIMEOUTS },
    ...extra,
  });
}

test('translation trains end to end on the DDTP sample: 2 workers, FLOP budget, loss falls, BLEU in the results; = 1 process with the whole batch', async (t) => {
  const dir = tempDir('translation');
  const run = spawnTtc(['local', '--workers', '2', '--config', config(dir)], env);
  // the same global batch in one process (the ring's loss is the global batch's token mean: ml/tasks/translate.ts)
  const singleDir = tempDir('translation-single');
  const single = spawnTtc(['train', '--config', config(singleDir), '--set', `train.batchSize=${2 * BATCH}`], env);
  t.is(await run.exited, 0, run.lines.slice(-30).join('\n'));
  t.is(await single.exited, 0, single.lines.slice(-30).join('\n'));
  const out = run.lines.join('\n');
  t.regex(out, new RegExp(`completed its budget: ${STEPS}/${STEPS} steps`));
  t.regex(out, /rank 1 of 2, translate task/);
  const runDir = out.match(/results: (\S+)\//)![1]!;
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
  t.is(summary.workers, 2);
  t.true(summary.flopsUsed <= summary.budget.flops * (1 + 1e-12));
  t.true(typeof summary.bleu === 'number' && summary.bleu >= 0 && summary.bleu <= 100, `bleu ${summary.bleu}`);
  t.true(typeof summary.bleuBeam === 'number' && summary.bleuBeam >= 0, `bleuBeam ${summary.bleuBeam}`);
  const rows = readMetrics(path.join(runDir, 'metrics.jsonl'));
  const train = rows.filter((r) => r.trainLoss !== undefined);
  const early = train.slice(0, 3).reduce((a, r) => a + r.trainLoss!, 0) / 3;
  const late = train.slice(-3).reduce((a, r) => a + r.trainLoss!, 0) / 3;
  t.true(late < early - 0.2, `train loss ${early} → ${late}`);
  const evals = rows.filter((r) => r.valLoss !== undefined);
  t.deepEqual(evals.map((r) => r.step), [0, 12, 24]);
  // BLEU from the first evaluation after training started (step 0 reports the loss only)
  t.is(evals[0]!.bleu, undefined);
  t.true(evals.slice(1).every((r) => typeof r.bleu === 'number' && typeof r.bleuBeam === 'number'));
  t.true(evals.at(-1)!.valLoss! < evals[0]!.valLoss!, `eval loss ${evals[0]!.valLoss} → ${evals.at(-1)!.valLoss}`);
  const singleRun = single.lines.join('\n').match(/results: (\S+)\//)![1]!;
  const a = finalWeights(runDir);
  const b = finalWeights(singleRun);
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  t.true(maxDiff < 1e-3, `max |Δw| = ${maxDiff}`);
  const singleRows = readMetrics(path.join(singleRun, 'metrics.jsonl')).filter((r) => r.trainLoss !== undefined);
  t.true(singleRows.every((r, i) => Math.abs(r.trainLoss! - train[i]!.trainLoss!) < 1e-3), 'the per-step losses agree');
});

function finalWeights(runDir: string): Float32Array {
  const config = resolveConfig(JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')));
  const dirs = listCheckpointDirs(checkpointsDir(runDir));
  return loadCheckpoint(dirs.at(-1)!, runLayout(config)).weights;
}

test('a translation config without its pairs is refused before anything is written', async (t) => {
  const dir = tempDir('translation-bad');
  const run = spawnTtc(['train', '--config', config(dir, { translation: { pairs: path.join(dir, 'missing') } })], env);
  t.not(await run.exited, 0);
  t.regex(run.lines.join('\n'), /translation\.pairs: ".*missing" does not exist/);
  t.deepEqual(fs.readdirSync(dir), ['cfg.json']);
});
