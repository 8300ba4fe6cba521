import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tf } from '../ml/tf.ts';
import { initBackend } from '../ml/backend.ts';
import { loadTrainingData } from '../ml/train/data.ts';
import { MlmTrainer } from '../ml/train/trainer.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { silentLogger } from '../core/run/log.ts';
import { applyMask, fakeQuantizeModel, participatingCount, participatingKinds, prunedCount } from '../compression/index.ts';
import {
  classifierAccuracy,
  classifierPredictions,
  evaluateCell,
  finetune,
  initialClassifierWeights,
  loadEvalContext,
  type CellResult,
  type EvalContext,
  type FinetuneResult,
} from '../compression/eval/index.ts';
import { toReportCell } from '../report/cells.ts';
import { cellLabel, CellSpecError, checkCellSpec, compressionGrid, type CellSpec } from '../compression/grid.ts';
import { tinyConfig } from './kit/helpers.ts';

// Small real setup: the tiny model pretrained for 100 MLM steps, fine-tuned on 600 of the real
// classification examples, evaluated on 200 dev + 200 test examples.
const FT = { steps: 150, batchSize: 16, lr: 2e-3, warmupFraction: 0.1, seed: 3 };
const ROUND_FT = { batchSize: 16, lr: 1e-3, warmupFraction: 0.1 };

let ctx: EvalContext;
let pretrained: Float32Array;
let ft: FinetuneResult;
let untrainedDev: number;
let tmp: string;

test.before(async () => {
  // wasm runs this tiny model ~10× faster than tfjs cpu; both are deterministic in one thread.
  try {
    await initBackend('wasm', { threads: 1 });
  } catch {
    await initBackend('cpu', { threads: 1 });
  }
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-eval-'));
  const config = tinyConfig();
  ctx = await loadEvalContext({ config, classificationSeed: config.seed, maxTrain: 600, maxDev: 200, maxTest: 200 });
  const data = await loadTrainingData(config, silentLogger);
  const mlm = new MlmTrainer(ctx.trainerOptions, initialWeights(ctx.mlmLayout, 7, config.model.initStd));
  let pos = { epoch: 0, offset: 0 };
  for (let i = 0; i < 100; i++) {
    await mlm.step(data.reader.read(pos, 0, 16), 2e-3);
    pos = data.reader.advance(pos, 16);
  }
  pretrained = Float32Array.from(mlm.weights);
  mlm.dispose();
  untrainedDev = (await classifierAccuracy(ctx, initialClassifierWeights(ctx, pretrained, FT.seed))).dev;
  ft = await finetune(ctx, pretrained, FT);
});

test.after.always(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  if (ctx) fs.rmSync(ctx.config.outputDir, { recursive: true, force: true }); // tinyConfig's empty run directory
});

const withoutArtifacts = ({ artifacts: _a, ...rest }: CellResult) => rest;

test.serial('context: real splits at the model sequence length, pretraining validation batches', async (t) => {
  t.true(ctx.heldOutOfPretraining);
  t.is(ctx.train.count, 600);
  t.is(ctx.dev.count, 200);
  t.is(ctx.test.count, 200);
  t.is(ctx.train.seqLen, ctx.dims.seqLen);
  t.is(ctx.numClasses, 10);
  t.is(ctx.devBatches.reduce((a, b) => a + b.batch, 0), 200);
  t.true(ctx.valBatches.length > 0);
  t.is(ctx.clsLayout.byName.get('classifier.out_proj.weight')!.shape[1], 10);
  const logs: string[] = [];
  const other = await loadEvalContext({ config: ctx.config, classificationSeed: ctx.config.seed + 1, maxTrain: 10, maxDev: 10, maxTest: 10, log: (m) => logs.push(m) });
  t.false(other.heldOutOfPretraining);
  t.regex(logs.join('\n'), /may have been pretrained on/);
  t.is(other.tokenizer.vocabSize, ctx.tokenizer.vocabSize);
});

test.serial('fine-tuning improves dev accuracy over the untrained head (and beats chance)', async (t) => {
  t.is(ft.weights.length, ctx.clsLayout.total);
  t.log(`dev accuracy: untrained head ${untrainedDev}, fine-tuned ${ft.devAccuracy}; train loss ${ft.trainLoss.toFixed(3)} (ln 10 = 2.303)`);
  t.true(ft.devAccuracy > untrainedDev, `fine-tuned ${ft.devAccuracy} vs untrained ${untrainedDev}`);
  t.true(ft.devAccuracy > 0.15, `dev accuracy ${ft.devAccuracy} (chance 0.1)`);
  t.true(ft.trainLoss < Math.log(10) - 0.2, `train loss ${ft.trainLoss}`);
  t.is((await classifierAccuracy(ctx, ft.weights)).dev, ft.devAccuracy);
  // the encoder starts from the pretrained weights
  const emb = ctx.clsLayout.byName.get('embeddings.word_embeddings.weight')!;
  t.deepEqual(initialClassifierWeights(ctx, pretrained, 1).subarray(emb.offset, emb.offset + 64), pretrained.subarray(emb.offset, emb.offset + 64));
  await t.throwsAsync(finetune(ctx, pretrained, { ...FT, batchSize: 601 }), { instanceOf: RangeError });
  await t.throwsAsync(finetune(ctx, pretrained, { ...FT, steps: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(finetune(ctx, ft.weights, FT), { instanceOf: RangeError, message: /MLM layout/ });
});

test.serial('compressionGrid: every cell once, labels, validation', (t) => {
  const grid = compressionGrid({
    bits: [8, 4],
    granularities: ['channel', 'tensor'],
    embeddings: [false, true],
    sparsities: [0.5, 0.9],
    iterative: { rounds: 3, stepsPerRound: 20 },
    combined: [{ sparsity: 0.5, bits: 4 }],
  });
  t.deepEqual(grid[0], { method: 'none', embeddings: false });
  const count = (m: string) => grid.filter((c) => c.method === m).length;
  t.deepEqual([count('none'), count('quant'), count('prune-oneshot'), count('prune-iterative'), count('prune+quant')], [1, 8, 4, 4, 2]);
  const keys = grid.map((c) => `${c.method}|${cellLabel(c)}`);
  t.is(new Set(keys).size, keys.length);
  t.is(cellLabel({ method: 'quant', bits: 8, granularity: 'channel', embeddings: false }), '8-bit/channel');
  t.is(cellLabel({ method: 'quant', bits: 2, granularity: 'tensor', embeddings: true }), '2-bit/tensor +emb');
  t.is(cellLabel({ method: 'prune-oneshot', sparsity: 0.9, embeddings: false }), 'sparsity 0.9');
  t.is(cellLabel({ method: 'prune+quant', sparsity: 0.5, bits: 4, granularity: 'channel', embeddings: false }), 'sparsity 0.5 + 4-bit/channel');
  t.is(cellLabel({ method: 'none', embeddings: false }), 'f32');
  // duplicates collapse; no iterative cells without `iterative`
  const small = compressionGrid({ bits: [4, 4], granularities: ['channel'], embeddings: [false], sparsities: [0.5], iterative: null, combined: [] });
  t.deepEqual(small.map(cellLabel), ['f32', '4-bit/channel', 'sparsity 0.5']);
  t.throws(() => compressionGrid({ bits: [9], granularities: ['channel'], embeddings: [false], sparsities: [], iterative: null, combined: [] }), { instanceOf: CellSpecError, message: /bits/ });
  t.throws(() => checkCellSpec({ method: 'prune-oneshot', embeddings: false, sparsity: 1 }), { instanceOf: CellSpecError, message: /sparsity/ });
  t.throws(() => checkCellSpec({ method: 'prune-iterative', embeddings: false, sparsity: 0.5 }), { instanceOf: CellSpecError, message: /rounds/ });
  t.throws(() => checkCellSpec({ method: 'quant', embeddings: false, bits: 4 }), { instanceOf: CellSpecError, message: /granularity/ });
});

test.serial('every method: sane numbers, byte sizes equal the files on disk, no tensor growth across cells', async (t) => {
  const grid = compressionGrid({
    bits: [8, 2],
    granularities: ['channel', 'tensor'],
    embeddings: [false, true],
    sparsities: [0.5, 0.9],
    iterative: { rounds: 2, stepsPerRound: 8 },
    combined: [{ sparsity: 0.5, bits: 4 }],
  });
  const tensorsBefore = tf.memory().numTensors;
  const results: CellResult[] = [];
  const rows: string[] = [];
  for (const [i, spec] of grid.entries()) {
    const r = await evaluateCell(ctx, ft.weights, pretrained, spec, { seed: 11, finetune: ROUND_FT, returnArtifacts: true });
    t.is(tf.memory().numTensors, tensorsBefore, `tensors after cell ${r.level}`);
    const file = path.join(tmp, `cell-${i}.ttcz.safetensors`);
    fs.writeFileSync(file, r.artifacts!.file);
    t.is(fs.statSync(file).size, r.bytesTotal, `${spec.method} ${r.level}: bytes = file on disk`);
    t.is(r.level, cellLabel(spec));
    t.true(r.bytesNonEmbedding > 0 && r.bytesNonEmbedding < r.bytesTotal);
    for (const a of [r.devAccuracy, r.testAccuracy]) t.true(a >= 0 && a <= 1);
    t.true(Number.isFinite(r.valPerplexity) && r.valPerplexity > 1 && r.valPerplexity < 4 * ctx.dims.vocab, `${r.level}: perplexity ${r.valPerplexity}`);
    if (spec.method.startsWith('prune')) {
      const n = participatingCount(ctx.clsLayout, { embeddings: spec.embeddings });
      t.true(r.sparsity! >= prunedCount(spec.sparsity!, n) / n, `${r.level}: sparsity ${r.sparsity}`);
    } else t.is(r.sparsity, undefined);
    if (spec.method === 'prune-iterative') t.is(r.rounds!.length, 2);
    const cell = toReportCell(r, { sizeId: 'L1-H32', budgetId: 'b0' });
    t.is(cell.bytesTotal, r.bytesTotal);
    t.is(cell.embeddingsCompressed, spec.method !== 'none' && spec.embeddings);
    results.push(r);
    rows.push(`${spec.method.padEnd(15)} ${r.level.padEnd(34)} ${String(r.bytesTotal).padStart(7)} B  non-emb ${String(r.bytesNonEmbedding).padStart(6)} B  dev ${r.devAccuracy.toFixed(3)}  test ${r.testAccuracy.toFixed(3)}  ppl ${r.valPerplexity.toFixed(1)}${r.sparsity !== undefined ? `  sparsity ${r.sparsity.toFixed(4)}` : ''}`);
  }
  t.log(`\n${rows.join('\n')}`);
  const none = results[0];
  t.is(none.spec.method, 'none');
  t.is(none.devAccuracy, ft.devAccuracy, 'the f32 file evaluates exactly like the fine-tuned weights');
  t.deepEqual(none.artifacts!.decoded, ft.weights);
  for (const r of results.slice(1)) t.true(r.bytesTotal < none.bytesTotal, `${r.spec.method} ${r.level} smaller than f32`);
  // 8-bit quantization barely moves anything
  const q8 = results.find((r) => r.level === '8-bit/channel')!;
  t.true(Math.abs(q8.valPerplexity / none.valPerplexity - 1) < 0.02, `8-bit perplexity ${q8.valPerplexity} vs ${none.valPerplexity}`);
  t.true(Math.abs(q8.devAccuracy - none.devAccuracy) <= 0.02);
  // compressing the embeddings too makes the file smaller
  for (const r of results.filter((x) => x.spec.embeddings)) {
    const twin = results.find((x) => x.spec.method === r.spec.method && x.level === r.level.replace(' +emb', ''))!;
    t.true(r.bytesTotal < twin.bytesTotal, `${r.level} < ${twin.level}`);
  }
});

test.serial('decompress → exactly the predictions of the fake-quantized model', async (t) => {
  const specs: CellSpec[] = [
    { method: 'quant', bits: 4, granularity: 'channel', embeddings: true },
    { method: 'quant', bits: 2, granularity: 'tensor', embeddings: false },
    { method: 'prune+quant', sparsity: 0.5, bits: 3, granularity: 'channel', embeddings: true },
  ];
  for (const spec of specs) {
    const r = await evaluateCell(ctx, ft.weights, pretrained, spec, { seed: 1, returnArtifacts: true });
    const w = Float32Array.from(ft.weights);
    if (r.artifacts!.mask) applyMask(w, r.artifacts!.mask);
    const fake = fakeQuantizeModel(w, ctx.clsLayout, { bits: spec.bits!, granularity: spec.granularity!, embeddings: spec.embeddings });
    t.deepEqual(r.artifacts!.decoded, fake, `${r.level}: decoded weights = fake-quantized weights`);
    for (const split of ['dev', 'test'] as const) {
      const fromFile = await classifierPredictions(ctx, r.artifacts!.decoded, split);
      const fromFake = await classifierPredictions(ctx, fake, split);
      t.deepEqual(fromFile, fromFake, `${r.level}: ${split} predictions`);
      const labels = split === 'dev' ? ctx.dev.labels : ctx.test.labels;
      const acc = fromFile.reduce((a, p, i) => a + (p === labels[i] ? 1 : 0), 0) / labels.length;
      t.is(split === 'dev' ? r.devAccuracy : r.testAccuracy, acc);
    }
  }
});

test.serial('pruning: exact sparsity reached; masks stay zero through iterative fine-tuning', async (t) => {
  for (const embeddings of [false, true]) {
    const kinds = participatingKinds({ embeddings });
    const n = participatingCount(ctx.clsLayout, { embeddings });
    const participates = new Uint8Array(ctx.clsLayout.total);
    const dense = new Uint8Array(ctx.clsLayout.total);
    for (const s of ctx.clsLayout.specs) if (kinds.includes(s.kind)) participates.fill(1, s.offset, s.offset + s.size);
    for (const s of ctx.clsLayout.specs) if (s.kind === 'dense') dense.fill(1, s.offset, s.offset + s.size);

    const spec: CellSpec = { method: 'prune-iterative', sparsity: 0.8, rounds: 3, stepsPerRound: 10, embeddings };
    const r = await evaluateCell(ctx, ft.weights, pretrained, spec, { seed: 5, finetune: ROUND_FT, returnArtifacts: true });
    const { mask, trained, decoded } = r.artifacts!;
    let pruned = 0;
    let stillZero = 0;
    let moved = 0;
    let keptDense = 0;
    for (let i = 0; i < mask!.length; i++) {
      if (mask![i] === 0) {
        t.is(participates[i], 1, 'only participating weights are pruned');
        pruned++;
        if (trained[i] === 0 && decoded[i] === 0) stillZero++;
      } else if (dense[i]) {
        keptDense++;
        if (trained[i] !== ft.weights[i]) moved++;
      }
    }
    t.is(pruned, prunedCount(0.8, n), `exactly round(0.8 · ${n}) pruned`);
    t.is(stillZero, pruned, 'every pruned weight is still exactly 0 after 3 rounds of fine-tuning');
    t.true(moved > 0.9 * keptDense, `fine-tuning changed the kept dense weights (${moved} of ${keptDense})`);
    t.is(r.sparsity, pruned / n, 'measured sparsity = the exact target count');
    t.deepEqual(r.rounds!.map((x) => x.round), [1, 2, 3]);
    t.is(r.rounds![2].sparsity, 0.8);
    t.true(r.rounds![0].sparsity < r.rounds![1].sparsity && r.rounds![1].sparsity < 0.8);

    const one = await evaluateCell(ctx, ft.weights, pretrained, { method: 'prune-oneshot', sparsity: 0.8, embeddings }, { seed: 5, returnArtifacts: true });
    t.is(one.artifacts!.mask!.reduce((a, m) => a + (m === 0 ? 1 : 0), 0), prunedCount(0.8, n));
    t.is(one.sparsity, pruned / n);
    t.is(one.valPerplexity, r.valPerplexity, 'perplexity: the same one-shot mask on the MLM weights');
  }
});

test.serial('evaluateCell is deterministic: same inputs, identical results and file bytes', async (t) => {
  const specs: CellSpec[] = [
    { method: 'prune-iterative', sparsity: 0.6, rounds: 2, stepsPerRound: 8, embeddings: true },
    { method: 'prune+quant', sparsity: 0.5, bits: 4, granularity: 'tensor', embeddings: false },
  ];
  for (const spec of specs) {
    const a = await evaluateCell(ctx, ft.weights, pretrained, spec, { seed: 9, finetune: ROUND_FT, returnArtifacts: true });
    const b = await evaluateCell(ctx, ft.weights, pretrained, spec, { seed: 9, finetune: ROUND_FT, returnArtifacts: true });
    t.deepEqual(withoutArtifacts(a), withoutArtifacts(b));
    t.true(a.artifacts!.file.equals(b.artifacts!.file), `${a.level}: identical file bytes`);
  }
  const f1 = await finetune(ctx, pretrained, { ...FT, steps: 12 });
  const f2 = await finetune(ctx, pretrained, { ...FT, steps: 12 });
  t.deepEqual(f1, f2, 'fine-tuning is deterministic');
  const f3 = await finetune(ctx, pretrained, { ...FT, steps: 12, seed: FT.seed + 1 });
  t.notDeepEqual(f1.weights, f3.weights, 'the seed matters');
});

test.serial('bad inputs are refused', async (t) => {
  await t.throwsAsync(evaluateCell(ctx, ft.weights, pretrained, { method: 'prune-iterative', sparsity: 0.5, rounds: 2, stepsPerRound: 2, embeddings: false }, { seed: 1 }), {
    instanceOf: CellSpecError,
    message: /opts.finetune/,
  });
  await t.throwsAsync(evaluateCell(ctx, pretrained, pretrained, { method: 'none', embeddings: false }, { seed: 1 }), { instanceOf: RangeError, message: /classifier layout/ });
  await t.throwsAsync(evaluateCell(ctx, ft.weights, ft.weights, { method: 'none', embeddings: false }, { seed: 1 }), { instanceOf: RangeError, message: /MLM layout/ });
  await t.throwsAsync(evaluateCell(ctx, ft.weights, pretrained, { method: 'quant', bits: 1, granularity: 'channel', embeddings: false }, { seed: 1 }), { instanceOf: CellSpecError });
});
