/**
 * The translation model (ml/model/seq2seq.ts) and its search (ml/model/search.ts) on the cpu
 * backend at toy sizes: shapes and parameter count, the causal mask, the cross-attention's use of
 * the source, padding invariance, beam 1 = greedy, no tensor leaks over decoding and training
 * steps, the analytic FLOPs against the products executed, and a real learning check: a tiny model
 * overfit on a handful of pairs translates them back exactly (BLEU 100); the task's data-parallel
 * batches (ml/tasks/translate.ts).
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig } from '../../core/config/load.ts';
import { TranslationTask, translationDataOf } from '../../ml/tasks/translate.ts';
import { splitPairs } from '../../ml/data/ddtp.ts';
import { readPairsTsv } from '../../ml/data/pairs.ts';
import { tf } from '../../ml/tf.ts';
import { initBackend } from '../../ml/backend.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { initialWeights, WeightTensors } from '../../ml/model/weights.ts';
import { batchTensors, seq2seqLogits, seq2seqLoss, type Seq2SeqDims } from '../../ml/model/seq2seq.ts';
import { seq2seqDims } from '../../ml/train/controller.ts';
import { greedy, translate } from '../../ml/model/search.ts';
import { encodePairs, pairBatch } from '../../ml/data/translation.ts';
import { Tokenizer } from '../../ml/data/tokenizer.ts';
import { TranslationTrainer } from '../../ml/train/translation.ts';
import { corpusBleu } from '../../ml/tasks/bleu.ts';
import { seq2seqStepFlops } from '../../ml/flops.ts';
import { setFusedEnabled } from '../../ml/kernels/fused.ts';
import { countMatmulFlops } from '../kit/matmul-count.ts';
import { compressSpecOf } from '../../compression/grid.ts';
import { compressedWeights, encodeCompressed } from '../../compression/format.ts';

const D: Seq2SeqDims = { layers: 2, decoderLayers: 2, hidden: 32, heads: 4, ffn: 64, seqLen: 16, vocab: 120 };
const layout = paramLayout(D, { kind: 'seq2seq', decoderLayers: D.decoderLayers });
const OPT = { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0 };

test.before(async () => {
  await initBackend('cpu', { threads: 1 });
});

function weights(seed = 1): WeightTensors {
  return new WeightTensors(layout, initialWeights(layout, seed, 0.2));
}

/** A hand-made set: sources and targets as token ids (≥ 5: no specials), [SEP] ends each source. */
function set(src: number[][], tgt: number[][]) {
  return { count: src.length, src: src.map((s) => Int32Array.from([...s, 3])), tgt: tgt.map((t) => Int32Array.from(t)) };
}

async function logitsOf(w: WeightTensors, s: ReturnType<typeof set>, idx: number[]): Promise<Float32Array> {
  const b = pairBatch(s, idx);
  const out = tf.tidy(() => seq2seqLogits(w.tensors, D, batchTensors(b)));
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-4) => Array.from(a).every((x, i) => Math.abs(x - b[i]!) <= tol * (1 + Math.abs(x)));

test.serial('layout: encoder, decoder with cross-attention and a tied output; names follow the weights maps', (t) => {
  const names = layout.specs.map((s) => s.name);
  t.true(names.includes('encoder.layer.1.attention.self.query.weight'));
  t.true(names.includes('decoder.layer.1.crossattention.self.key.weight'));
  t.true(names.includes('decoder.lm_head.bias'));
  t.false(names.some((n) => n.startsWith('cls.')));
  // count by hand: per layer 4 d² + 2 d·ffn + biases; decoder layers carry a second attention block
  const d = D.hidden;
  const att = 4 * (d * d + d) + 2 * d;
  const ffn = d * D.ffn + D.ffn + D.ffn * d + d + 2 * d;
  const expected = D.vocab * d + D.seqLen * d + 2 * d + D.layers * (att + ffn) + D.seqLen * d + 2 * d + D.decoderLayers * (2 * att + ffn) + D.vocab;
  t.is(layout.total, expected);
});

test.serial('shapes, causal mask, cross-attention uses the source, padding invariance', async (t) => {
  const w = weights();
  const s = set([[10, 11, 12, 13], [20, 21], [10, 11, 12, 99]], [[30, 31, 32, 33], [40, 41, 42], [30, 31, 32, 77]]);
  const l0 = await logitsOf(w, s, [0]);
  t.is(l0.length, 5 * D.vocab); // 4 target tokens + [SEP]
  // causal: changing target token 4 changes no earlier prediction (positions 0..3 read ≤ token 3)
  const changedTarget = set([[10, 11, 12, 13]], [[30, 31, 32, 77]]);
  const l1 = await logitsOf(w, changedTarget, [0]);
  t.true(close(l0.subarray(0, 4 * D.vocab), l1.subarray(0, 4 * D.vocab)));
  t.false(close(l0.subarray(4 * D.vocab), l1.subarray(4 * D.vocab)));
  // the source matters: a different last source token changes the first prediction
  const l2 = await logitsOf(w, set([[10, 11, 12, 99]], [[30, 31, 32, 33]]), [0]);
  t.false(close(l0.subarray(0, D.vocab), l2.subarray(0, D.vocab)));
  // padding: pair 1 alone equals pair 1 batched with a longer pair (padded on both sides)
  const alone = await logitsOf(w, s, [1]);
  const batched = await logitsOf(w, s, [0, 1]);
  t.true(close(alone, batched.subarray(5 * D.vocab)));
  w.dispose();
});

test.serial('beam 1 equals greedy; beam search returns valid ids; no tensor leaks', async (t) => {
  const w = weights(2);
  const sources = [Int32Array.from([10, 11, 12, 3]), Int32Array.from([20, 3]), Int32Array.from([7, 8, 9, 10, 11, 3])];
  const g = await greedy(w.tensors, D, sources, { bos: 2, eos: 3, maxLen: () => 8 });
  const before = tf.memory().numTensors;
  const b1 = await translate(w.tensors, D, sources, { beam: 1, alpha: 1, bos: 2, eos: 3, maxLen: () => 8 });
  t.deepEqual(b1, g);
  const b4 = await translate(w.tensors, D, sources, { beam: 4, alpha: 1, bos: 2, eos: 3, maxLen: () => 8 });
  t.is(b4.length, 3);
  for (const h of b4) t.true(h.length <= 8 && h.every((id) => Number.isInteger(id) && id >= 0 && id < D.vocab));
  await translate(w.tensors, D, sources, { beam: 3, alpha: 0.6, bos: 2, eos: 3, maxLen: () => 8 });
  t.is(tf.memory().numTensors, before);
  w.dispose();
});

test.serial('analytic translation FLOPs equal the matmul FLOPs a training step executes', async (t) => {
  const trainer = new TranslationTrainer({ dims: D, optimizer: OPT, gradClipNorm: 0, lossScale: false }, initialWeights(layout, 1, 0.02));
  const src = [[...Array(D.seqLen - 1)].map((_, i) => 5 + i), [...Array(D.seqLen - 1)].map((_, i) => 6 + i)];
  const tgt = src.map((s) => s.map((x) => x + 1));
  const b = pairBatch(set(src, tgt), [0, 1]);
  t.is(b.srcLen, D.seqLen);
  t.is(b.tgtLen, D.seqLen);
  // the tfjs compositions: a fused kernel (cpu attention) multiplies outside the matmul kernels counted here
  setFusedEnabled(false);
  const counter = countMatmulFlops();
  try {
    await trainer.computeGradients(b);
  } finally {
    counter.restore();
    setFusedEnabled(true);
  }
  const a = seq2seqStepFlops(D, 2, D.seqLen, D.seqLen);
  // every target position is a label here, so the head runs on all of them, as counted
  t.is(counter.flops(), a.training);
  trainer.dispose();
});

test.serial('a tiny model overfit on a few pairs translates them back (BLEU 100); tensors stay flat over steps', async (t) => {
  const pairs = [
    // BLEU needs 4-grams: every target has at least 4 words
    { en: 'the cat sleeps on the bed', fr: 'le chat dort sur le lit' },
    { en: 'the dog eats the bread', fr: 'le chien mange le pain' },
    { en: 'a small house near the river', fr: 'une petite maison près de la rivière' },
    { en: 'the red car is fast', fr: 'la voiture rouge est rapide' },
    { en: 'good morning to you all', fr: 'bonjour à vous tous' },
    { en: 'thank you very much, my friend', fr: 'merci beaucoup, mon ami' },
  ];
  const tok = Tokenizer.train(pairs.flatMap((p) => [p.en, p.fr]), 160);
  const dims: Seq2SeqDims = { layers: 1, decoderLayers: 1, hidden: 32, heads: 2, ffn: 64, seqLen: 40, vocab: tok.vocabSize };
  const lay = paramLayout(dims, { kind: 'seq2seq', decoderLayers: 1 });
  const enc = encodePairs(tok, pairs, dims.seqLen);
  const trainer = new TranslationTrainer({ dims, optimizer: OPT, gradClipNorm: 1, lossScale: false }, initialWeights(lay, 5, 0.05));
  const batch = pairBatch(enc, pairs.map((_, i) => i));
  let first = NaN;
  let last = NaN;
  let tensors = -1;
  for (let step = 0; step < 150; step++) {
    const r = await trainer.step(batch, 3e-3);
    if (step === 0) first = r.loss;
    last = r.loss;
    if (step === 2) tensors = tf.memory().numTensors;
    if (step > 2) t.is(tf.memory().numTensors, tensors, `tensor count grew at step ${step}`);
  }
  t.true(last < first / 10, `loss ${first} → ${last}`);
  const hyp = (await trainer.translate(enc.src, { beam: 1, alpha: 0 })).map((ids) => tok.decode(ids, { skipSpecial: true }));
  t.deepEqual(hyp, pairs.map((p) => p.fr), `loss ${first} → ${last}`);
  t.true(Math.abs(corpusBleu(hyp, [pairs.map((p) => p.fr)], { lowercase: true }).score - 100) < 1e-9);
  const beam = (await trainer.translate(enc.src, { beam: 3, alpha: 1 })).map((ids) => tok.decode(ids, { skipSpecial: true }));
  t.deepEqual(beam, pairs.map((p) => p.fr));
  // compression/ applies to the layout as to the encoder's: 8-bit weights (embeddings included) still translate the pairs back
  const w = Float32Array.from(await trainer.hostWeights());
  const spec = compressSpecOf({ method: 'quant', bits: 8, granularity: 'channel', embeddings: true });
  const bytes = encodeCompressed(w, lay, spec).length;
  t.true(bytes < w.length * 4 * 0.5, `${bytes} bytes for ${w.length} weights`);
  trainer.setWeights(compressedWeights(w, lay, spec));
  const q8 = (await trainer.translate(enc.src, { beam: 1, alpha: 0 })).map((ids) => tok.decode(ids, { skipSpecial: true }));
  t.deepEqual(q8, pairs.map((p) => p.fr));
  trainer.dispose();
});

test.serial('the translation task: N ranks × batch B read exactly the pairs one rank × N·B reads, epochs wrap, the split is the fixture\'s', async (t) => {
  const base = { task: 'translation', cacheDir: fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-s2s-')), translation: { pairs: 'tests/fixtures/ddtp/pairs.tsv', evalPairs: 5 }, model: { vocab: 300, seqLen: 32 } };
  const config = (batchSize: number) => resolveConfig(base, { train: { batchSize } });
  const data = await translationDataOf(config(4));
  t.is(data.train.count + splitPairs(readPairsTsv('tests/fixtures/ddtp/pairs.tsv')).dev.length + splitPairs(readPairsTsv('tests/fixtures/ddtp/pairs.tsv')).test.length, 673);
  t.is(data.evalPairs.length, 5);
  const two = new TranslationTask(config(4), data);
  const one = new TranslationTask(config(8), data);
  const n = data.train.count;
  const dims = seq2seqDims(config(4));
  const lay = paramLayout(dims, { kind: 'seq2seq', decoderLayers: dims.decoderLayers });
  const w = new WeightTensors(lay, initialWeights(lay, 3, 0.1));
  const lossOf = async (b: Parameters<typeof batchTensors>[0]) => {
    const l = tf.tidy(() => seq2seqLoss(w.tensors, dims, batchTensors(b)));
    const v = (await l.data())[0]!;
    l.dispose();
    return v;
  };
  for (const pos of [{ epoch: 0, offset: 0 }, { epoch: 1, offset: n - 3 }]) {
    const labels = (b: { labels: Int32Array }) => Array.from(b.labels);
    const [r0, r1, all] = [two.batch(pos, 0, 2), two.batch(pos, 1, 2), one.batch(pos, 0, 1)];
    t.deepEqual([...labels(r0), ...labels(r1)], labels(all));
    // the ring's mean of the ranks' losses is the global batch's token mean (ranks hold different token counts)
    t.not(r0.labels.length, r1.labels.length);
    const ring = ((await lossOf(r0)) + (await lossOf(r1))) / 2;
    t.true(Math.abs(ring - (await lossOf(all))) < 1e-5, `${ring} vs ${await lossOf(all)}`);
    t.true(Math.abs((await lossOf(all)) - (await lossOf({ ...all, lossWeight: undefined }))) < 1e-5);
  }
  w.dispose();
  fs.rmSync(base.cacheDir, { recursive: true, force: true });
});
