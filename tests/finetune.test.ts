import test from 'ava';
import { tf } from '../ml/tf.ts';
import { initBackend } from '../ml/backend.ts';
import { prepareDataset } from '../ml/data/dataset.ts';
import { buildClassificationSet } from '../ml/data/classification.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { ClassifierTrainer, classifierWeightsFrom, encodeExamples, epochOrder, evalBatches, takeBatch } from '../ml/train/classifier.ts';
import { Rng } from '../core/rng.ts';
import { TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';

const opts = { dims: TINY_MODEL, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1 };

test.serial('fine-tuning on gloss → class learns (loss falls, accuracy beats chance), masks stay zero, tensors do not leak', async (t) => {
  // wasm + the fast matmul kernels: about 10× faster than tfjs cpu for this loop.
  await initBackend('wasm', { threads: 1 });
  const data = await prepareDataset({ seed: 1234, seqLen: TINY_MODEL.seqLen, vocabSize: TINY_MODEL.vocab, validationFraction: 0.02, cacheDir: TEST_CACHE_DIR });
  const task = buildClassificationSet(1234);
  t.is(task.labels.length, 10);
  const train = encodeExamples(data.tokenizer, task.train.slice(0, 3000), TINY_MODEL.seqLen);
  const dev = encodeExamples(data.tokenizer, task.dev.slice(0, 200), TINY_MODEL.seqLen);
  t.true(train.padMask.some((m) => m === 0), 'short glosses are padded');

  const mlmLayout = paramLayout(TINY_MODEL);
  const pretrained = initialWeights(mlmLayout, 5, 0.02);
  const clsLayout = paramLayout(TINY_MODEL, { kind: 'classifier', numClasses: 10 });
  const init = classifierWeightsFrom(mlmLayout, pretrained, clsLayout, 6, 0.02);
  const emb = clsLayout.byName.get('embeddings.word_embeddings.weight')!;
  t.deepEqual(init.subarray(emb.offset, emb.offset + 10), pretrained.subarray(emb.offset, emb.offset + 10), 'encoder weights copied by name');

  const trainer = new ClassifierTrainer(opts, 10, init);
  // Prune half of one dense matrix and hold it through fine-tuning.
  const q = clsLayout.byName.get('encoder.layer.0.attention.self.query.weight')!;
  const mask = new Uint8Array(clsLayout.total).fill(1);
  const rng = new Rng(3);
  for (let i = q.offset; i < q.offset + q.size; i++) if (rng.next() < 0.5) mask[i] = 0;
  trainer.setMask(mask);

  const devBatches = evalBatches(dev, 50);
  const before = await trainer.evaluate(devBatches);
  const counts: number[] = [];
  let step = 0;
  for (let epoch = 0; epoch < 2; epoch++) {
    const order = epochOrder(train.count, epoch, 9);
    for (let s = 0; s + 16 <= train.count; s += 16, step++) {
      await trainer.step(takeBatch(train, order.subarray(s, s + 16)), 2e-3);
      counts.push(tf.memory().numTensors);
    }
  }
  const after = await trainer.evaluate(devBatches);
  const acc = await trainer.accuracy(devBatches);
  t.true(after < before - 0.1, `dev loss ${before.toFixed(3)} → ${after.toFixed(3)}`);
  t.true(acc > 0.2, `dev accuracy ${acc} (chance 0.1)`);
  for (let i = 0; i < mask.length; i++) if (mask[i] === 0 && trainer.weights[i] !== 0) return t.fail(`masked weight ${i} became ${trainer.weights[i]}`);
  t.true(counts.every((c) => c === counts[0]), 'tensor count constant across fine-tuning steps');
  trainer.dispose();
});
