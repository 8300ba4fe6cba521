/**
 * The data-parallel step (ml/train/data-parallel.ts) on real rings over 127.0.0.1: the ZeRO-1
 * sharded update (reduce-scatter → clip with the global norm from the shards' partial sums →
 * AdamW on 1/N → all-gather) is bit-identical to the unsharded one (all-reduce → full update) for
 * N = 1–4 on a model of odd sizes cut into many small buckets, with clipping and a pruning mask;
 * the gathered optimizer state equals the unsharded one; a run checkpointed on 3 workers and
 * resumed on 2 (and 2 → 3) follows exactly the trajectory of the unsharded run doing the same; bf16
 * gradients with error feedback (sharded = unsharded still, and what was sent sums to what was
 * computed); the tensor count stays flat.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { bf16Round, Ring, type WireFormat } from '../collective/index.ts';
import { initBackend } from '../ml/backend.ts';
import { tf } from '../ml/tf.ts';
import { paramLayout, type ModelDims } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { MlmTrainer, type TrainerOptions } from '../ml/train/trainer.ts';
import { DataParallel, gradientBuckets } from '../ml/train/data-parallel.ts';
import { scaled } from './kit/time-scale.mjs';
import { closeUpdatePools } from '../ml/train/update-pool.ts';
import { loadCheckpoint, saveCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { Rng } from '../core/rng.ts';
import { syntheticBatch } from './kit/one-step.ts';
import { tempDir } from './kit/helpers.ts';

// odd sizes everywhere: no chunk or bucket boundary falls on a round number
const dims: ModelDims = { layers: 2, hidden: 18, heads: 3, ffn: 37, seqLen: 8, vocab: 53 };
const layout = paramLayout(dims);
const opts: TrainerOptions = { dims, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.1, threads: 1 }, gradClipNorm: 0.5 };
/** ~150 floats: many buckets, some smaller than N (empty chunks) and some single big parameters */
const BUCKET_BYTES = 600;
const SECRET = 'data-parallel-test-secret-0123';

test.before(async () => {
  await initBackend('cpu', { threads: 1 });
});
test.after.always(() => closeUpdatePools());

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function rings(t: ExecutionContext, N: number): Promise<Ring[]> {
  const nodes = await Promise.all(Array.from({ length: N }, (_, rank) => Ring.open({ rank, worldSize: N, secret: SECRET, timeoutMs: scaled(20_000), log: () => {} })));
  t.teardown(() => Promise.all(nodes.map((n) => n.close())));
  await Promise.all(nodes.map((n, i) => n.connect(N > 1 ? { host: '127.0.0.1', port: nodes[(i + 1) % N]!.port } : undefined)));
  return nodes;
}

interface Start {
  weights: Float32Array;
  m?: Float32Array;
  v?: Float32Array;
  t?: number;
}

/** N trainers on a ring, sharded or not, from `start`; each rank trains on its own synthetic batches. */
async function replicas(t: ExecutionContext, N: number, shardOptimizer: boolean, start: Start, mask?: Uint8Array, gradWire: WireFormat = 'f32'): Promise<MlmTrainer[]> {
  const group = await rings(t, N);
  return group.map((ring) => {
    const tr = new MlmTrainer(opts, start.weights);
    tr.joinGroup(ring, { shardOptimizer, bucketBytes: BUCKET_BYTES, gradWire });
    if (start.m) tr.optimizer.setState({ m: start.m, v: start.v!, t: start.t! });
    if (mask) tr.setMask(mask);
    t.teardown(() => tr.dispose());
    return tr;
  });
}

/** `steps` steps on every rank at once; the losses and norms of rank 0. */
async function train(trainers: MlmTrainer[], steps: number, from: number): Promise<Array<{ loss: number; gradNorm: number }>> {
  const out = [];
  for (let s = from; s < from + steps; s++) {
    const rs = await Promise.all(trainers.map((tr, r) => tr.step(syntheticBatch(dims, 3, 1000 * s + r), 2e-2)));
    for (const x of rs) if (x.gradNorm !== rs[0]!.gradNorm) throw new Error(`step ${s}: ranks disagree on the gradient norm`);
    out.push({ loss: rs[0]!.loss, gradNorm: rs[0]!.gradNorm });
  }
  return out;
}

/** Every rank's full state (a collective when sharded), checked identical on every rank; rank 0's. */
async function fullState(t: ExecutionContext, trainers: MlmTrainer[], what: string) {
  const states = await Promise.all(trainers.map((tr) => tr.fullState()));
  for (const [r, s] of states.entries()) {
    t.true(bytes(s.weights).equals(bytes(states[0]!.weights)), `${what}: rank ${r}'s weights differ from rank 0's`);
    t.true(bytes(s.m).equals(bytes(states[0]!.m)) && bytes(s.v).equals(bytes(states[0]!.v)), `${what}: rank ${r}'s gathered moments differ`);
  }
  const s = states[0]!;
  return { weights: s.weights.slice(), m: s.m.slice(), v: s.v.slice(), t: s.t };
}

function pruningMask(seed: number): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length: layout.total }, () => (rng.next() < 0.3 ? 0 : 1));
}

test('buckets: whole parameters, last first, covering the layout once', (t) => {
  const buckets = gradientBuckets(layout, BUCKET_BYTES);
  t.true(buckets.length > 5, `${buckets.length} buckets`);
  t.is(buckets[0]!.end, layout.total);
  t.is(buckets.at(-1)!.start, 0);
  for (let k = 1; k < buckets.length; k++) t.is(buckets[k]!.end, buckets[k - 1]!.start, 'contiguous, in backward order');
  t.deepEqual(buckets.flatMap((b) => b.params), layout.specs.map((_, i) => i).reverse());
  t.is(gradientBuckets(layout, 1 << 30).length, 1, 'a big bucket size: one bucket');
});

for (const N of [1, 2, 3, 4]) {
  test.serial(`N=${N}: the sharded update is bit-identical to the unsharded one (odd sizes, small buckets, clipping${N === 3 ? ', a pruning mask' : ''})`, async (t) => {
    const start = { weights: initialWeights(layout, 11, 0.05) };
    const mask = N === 3 ? pruningMask(5) : undefined;
    const sharded = await replicas(t, N, true, start, mask);
    const plain = await replicas(t, N, false, start, mask);
    if (N > 1) t.true(sharded[0]!.optimizer.owned < layout.total / N + gradientBuckets(layout, BUCKET_BYTES).length, `rank 0 holds moments for ${sharded[0]!.optimizer.owned} of ${layout.total} parameters`);
    const a = await train(sharded, 4, 0);
    const b = await train(plain, 4, 0);
    t.deepEqual(a, b, 'losses and gradient norms');
    t.true(a.some((x) => x.gradNorm > opts.gradClipNorm), `the clip acts (norms ${a.map((x) => x.gradNorm.toFixed(3)).join(', ')})`);
    const sa = await fullState(t, sharded, 'sharded');
    const sb = await fullState(t, plain, 'unsharded');
    t.true(bytes(sa.weights).equals(bytes(sb.weights)), 'weights');
    t.true(bytes(sa.m).equals(bytes(sb.m)) && bytes(sa.v).equals(bytes(sb.v)), 'optimizer moments (gathered from the shards)');
    t.is(sa.t, 4);
    if (mask) t.true(sa.weights.every((w, i) => mask[i] === 1 || w === 0), 'masked weights stay 0');
  });
}

for (const [from, to] of [[3, 2], [2, 3]] as const) {
  test.serial(`a sharded run checkpointed on ${from} workers and resumed on ${to} follows the unsharded run's trajectory exactly`, async (t) => {
    const dir = tempDir(`dp-resume-${from}-${to}`);
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const trajectory = async (shardOptimizer: boolean) => {
      const first = await replicas(t, from, shardOptimizer, { weights: initialWeights(layout, 12, 0.05) });
      const before = await train(first, 3, 0);
      const s = await fullState(t, first, `${from} workers`);
      // through a real checkpoint on disk (world-size independent: the full moments)
      const run = path.join(dir, shardOptimizer ? 'sharded' : 'plain');
      const training = { step: 3, totalSteps: 6, flopsUsed: 0, secondsUsed: 0, tokensSeen: 0, dataPosition: { epoch: 0, offset: 0 }, rngState: [1, 2, 3, 4], worldSize: from };
      const saved = saveCheckpoint(run, layout, { dims, weights: s.weights, optimizer: { m: s.m, v: s.v, t: s.t }, state: training as never });
      const ckpt = loadCheckpoint(saved, layout);
      const second = await replicas(t, to, shardOptimizer, { weights: ckpt.weights, ...ckpt.optimizer });
      const after = await train(second, 3, 3);
      return { losses: [...before, ...after], final: await fullState(t, second, `${to} workers`) };
    };
    const sharded = await trajectory(true);
    const plain = await trajectory(false);
    t.deepEqual(sharded.losses, plain.losses, 'loss and norm at every step');
    t.true(bytes(sharded.final.weights).equals(bytes(plain.final.weights)), 'final weights');
    t.true(bytes(sharded.final.m).equals(bytes(plain.final.m)) && bytes(sharded.final.v).equals(bytes(plain.final.v)), 'final moments');
    t.is(sharded.final.t, 6);
  });
}

test.serial('bf16 gradients: sharded = unsharded bit for bit, and close to (not equal to) the f32 trajectory', async (t) => {
  const start = { weights: initialWeights(layout, 14, 0.05) };
  const a = await train(await replicas(t, 3, true, start, undefined, 'bf16'), 4, 0);
  const b = await train(await replicas(t, 3, false, start, undefined, 'bf16'), 4, 0);
  const f = await train(await replicas(t, 3, true, start), 4, 0);
  t.deepEqual(a, b);
  t.notDeepEqual(a, f, 'the bf16 wire changes the bits');
  for (let s = 0; s < 4; s++) t.true(Math.abs(a[s]!.loss - f[s]!.loss) < 0.02, `step ${s + 1}: loss ${a[s]!.loss} (bf16) vs ${f[s]!.loss} (f32)`);
});

test.serial('bf16 error feedback: over k steps the reduced gradients sum to k × the computed one within one bf16 rounding', async (t) => {
  const N = 2;
  const group = await rings(t, N);
  const dps = group.map((ring) => new DataParallel(layout, ring, { shardOptimizer: true, bucketBytes: 1 << 30, gradWire: 'bf16' }));
  const k = 50;
  const g = Float32Array.from({ length: layout.total }, (_, i) => 1 + (i % 97) / 1000 + 1e-4); // far from bf16-representable
  const sums = dps.map(() => new Float64Array(layout.total));
  for (let s = 0; s < k; s++) {
    await Promise.all(dps.map(async (dp, r) => {
      const grads = g.slice();
      dp.bucketReady(0, grads);
      await dp.reduced();
      for (const [a, b] of dp.ownRanges) for (let i = a; i < b; i++) sums[r]![i] += grads[i]!;
    }));
  }
  let worstFed = 0;
  let worstPlain = 0;
  for (const [r, dp] of dps.entries()) {
    for (const [a, b] of dp.ownRanges) {
      for (let i = a; i < b; i++) {
        const ulp = Math.abs(bf16Round(g[i]! * 1.004) - bf16Round(g[i]!)) || 2 ** -7;
        worstFed = Math.max(worstFed, Math.abs(sums[r]![i]! - k * g[i]!) / ulp);
        worstPlain = Math.max(worstPlain, Math.abs(k * bf16Round(g[i]!) - k * g[i]!) / ulp);
      }
    }
  }
  t.true(worstFed <= 1, `with feedback the sum is off by ${worstFed.toFixed(2)} bf16 ulps`);
  t.true(worstPlain > 5, `without it, rounding alone would be off by ${worstPlain.toFixed(1)} ulps`);
});

test.serial('sharded steps keep the tensor count flat', async (t) => {
  const trainers = await replicas(t, 2, true, { weights: initialWeights(layout, 13, 0.05) });
  await train(trainers, 2, 0);
  const n0 = tf.memory().numTensors;
  await train(trainers, 10, 2);
  t.is(tf.memory().numTensors, n0);
});
