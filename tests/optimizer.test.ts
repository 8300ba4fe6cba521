/**
 * The optimizer update (ml/train/adamw.ts on ./update-task.ts, threads from ./update-pool.ts):
 * the same bits for any thread count (replicas on machines with different core counts must not
 * drift apart), the AdamW + clip + decay arithmetic against a float64 reference, and a process
 * that used the threads still exits by itself.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { paramLayout } from '../ml/model/spec.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { AdamW, NORM_BLOCK, sharedFloat32, type AdamWOptions } from '../ml/train/adamw.ts';
import { closeUpdatePools, parseCpuMax, resolveUpdateThreads } from '../ml/train/update-pool.ts';
import { scaled } from './kit/time-scale.mjs';
import { Rng } from '../core/rng.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// several NORM_BLOCKs and dense / non-dense runs in every thread's share
const dims = { layers: 2, hidden: 64, heads: 2, ffn: 256, seqLen: 32, vocab: 2000 };
const layout = paramLayout(dims);
const opts: AdamWOptions = { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.1 };

function gradients(seed: number, scale: number): Float32Array {
  const rng = new Rng(seed);
  const g = sharedFloat32(layout.total);
  for (let i = 0; i < g.length; i++) g[i] = (rng.next() - 0.5) * scale;
  return g;
}

/** 4 steps (clipped, then not: scale 1 vs clip 1.0 at ~200 norm, then small grads) at a given thread count */
async function run(threads: number) {
  const opt = new AdamW(layout, { ...opts, threads });
  const w = sharedFloat32(layout.total);
  w.set(initialWeights(layout, 7, 0.02));
  const norms: number[] = [];
  for (const [seed, scale, lr] of [[1, 2, 1e-3], [2, 2, 5e-4], [3, 1e-3, 1e-3], [4, 1e-3, 0]] as const) {
    norms.push(await opt.update(w, gradients(seed, scale), lr, 1.0));
  }
  return { w, m: opt.m, v: opt.v, t: opt.t, norms };
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test.after.always(() => closeUpdatePools());

test('the update is bit-identical on 1, 2, 3 and 5 threads', async (t) => {
  t.true(layout.total > 2 * NORM_BLOCK, `${layout.total} parameters`);
  const ref = await run(1);
  t.true(ref.norms[0] > 1 && ref.norms[2] < 1, `norms ${ref.norms.join(', ')}: the first steps clip, the last do not`);
  for (const threads of [2, 3, 5]) {
    const r = await run(threads);
    t.deepEqual(r.norms, ref.norms, `${threads} threads: gradient norms`);
    t.true(bytes(r.w).equals(bytes(ref.w)), `${threads} threads: weights`);
    t.true(bytes(r.m).equals(bytes(ref.m)) && bytes(r.v).equals(bytes(ref.v)), `${threads} threads: moments`);
    t.is(r.t, 4);
  }
});

test('AdamW with clipping and decoupled decay on dense weights only, against a float64 reference', async (t) => {
  const threads = 3;
  const got = await run(threads);
  // the reference: textbook AdamW in float64 (then compared at float32 precision)
  const w = Float64Array.from(initialWeights(layout, 7, 0.02));
  const m = new Float64Array(layout.total);
  const v = new Float64Array(layout.total);
  const dense = new Uint8Array(layout.total);
  for (const s of layout.specs) if (s.kind === 'dense') dense.fill(1, s.offset, s.offset + s.size);
  let step = 0;
  for (const [seed, scale, lr] of [[1, 2, 1e-3], [2, 2, 5e-4], [3, 1e-3, 1e-3], [4, 1e-3, 0]] as const) {
    const g = Float64Array.from(gradients(seed, scale));
    const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
    t.true(Math.abs(norm - got.norms[step]) <= 1e-12 * norm, `step ${step + 1}: norm ${got.norms[step]} vs ${norm}`);
    if (norm > 1) for (let i = 0; i < g.length; i++) g[i] /= norm;
    step++;
    for (let i = 0; i < w.length; i++) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.98 * v[i] + 0.02 * g[i] * g[i];
      const mHat = m[i] / (1 - 0.9 ** step);
      const vHat = v[i] / (1 - 0.98 ** step);
      w[i] -= (lr * mHat) / (Math.sqrt(vHat) + 1e-6);
      if (dense[i]) w[i] *= 1 - lr * opts.weightDecay;
    }
  }
  // float32 storage of w, m, v between steps: ~1e-7 relative, and updates are ~lr = 1e-3
  let worst = 0;
  let bad = 0;
  for (let i = 0; i < w.length; i++) {
    const d = Math.abs(got.w[i] - w[i]);
    worst = Math.max(worst, d);
    if (d > 1e-9 + 1e-6 * Math.abs(w[i])) bad++;
  }
  t.is(bad, 0, `${bad} weights off by more than 1e-9 + 1e-6·|w| (worst |Δ| ${worst})`);
  // the decay really is applied to dense weights only: with no decay, dense weights differ, the rest do not
  const noDecay = new AdamW(layout, { ...opts, weightDecay: 0, threads });
  const w2 = sharedFloat32(layout.total);
  w2.set(initialWeights(layout, 7, 0.02));
  const withDecay = new AdamW(layout, { ...opts, threads });
  const w3 = Float32Array.from(w2);
  const w3s = sharedFloat32(layout.total);
  w3s.set(w3);
  const g = gradients(9, 1e-3);
  await noDecay.update(w2, g, 1e-2, 1.0);
  await withDecay.update(w3s, g, 1e-2, 1.0);
  for (const s of layout.specs) {
    const differs = w2.subarray(s.offset, s.offset + s.size).some((x, i) => x !== w3s[s.offset + i]);
    t.is(differs, s.kind === 'dense', `${s.name} (${s.kind})`);
  }
});

test('setState copies into the shared moment buffers; a wrong size is refused', (t) => {
  const opt = new AdamW(layout, opts);
  const m = new Float32Array(layout.total).fill(0.5);
  const v = new Float32Array(layout.total).fill(0.25);
  opt.setState({ m, v, t: 12 });
  t.true(opt.m.buffer instanceof SharedArrayBuffer);
  t.is(opt.m[3], 0.5);
  t.is(opt.v[layout.total - 1], 0.25);
  t.is(opt.t, 12);
  t.throws(() => opt.setState({ m: new Float32Array(3), v: new Float32Array(3), t: 1 }), { message: /optimizer state has 3 entries/ });
});

test('auto threads: one for small models, several for big ones, within the cgroup CPU limit; an explicit count is kept', (t) => {
  t.is(resolveUpdateThreads(0, 10_000), 1);
  const cores = os.availableParallelism();
  t.is(resolveUpdateThreads(0, 50_000_000, undefined), Math.min(8, cores));
  t.is(resolveUpdateThreads(0, 50_000_000, 1.5), Math.min(2, cores), 'a pod limited to 1.5 CPUs');
  t.is(resolveUpdateThreads(0, 50_000_000, 0.5), 1);
  t.is(resolveUpdateThreads(3, 10, 1), 3);
  t.is(parseCpuMax('max 100000\n'), undefined);
  t.is(parseCpuMax('400000 100000\n'), 4);
  t.is(parseCpuMax('150000 100000'), 1.5);
  t.is(parseCpuMax('garbage'), undefined);
});

test('a process that ran the update on threads exits by itself (idle threads do not hold it)', (t) => {
  const script = `
    import { paramLayout } from './ml/model/spec.ts';
    import { AdamW, sharedFloat32 } from './ml/train/adamw.ts';
    const layout = paramLayout(${JSON.stringify(dims)});
    const opt = new AdamW(layout, { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01, threads: 2 });
    const w = sharedFloat32(layout.total), g = sharedFloat32(layout.total).fill(1e-3);
    const norm = await opt.update(w, g, 1e-3, 1.0);
    console.log('norm', norm.toFixed(6), 'w0', w[0].toExponential(3));
  `;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-update-exit-'));
  const file = path.join(dir, 'exit.mts'); // .mts: ESM outside the package (top-level await)
  fs.writeFileSync(file, script.replaceAll("'./ml/", `'${pathToFileURL(root).href}/ml/`));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: root, encoding: 'utf8', timeout: scaled(30_000) });
  fs.rmSync(dir, { recursive: true, force: true });
  t.is(r.error, undefined, 'did not exit within 30 s');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^norm 0\.486243 w0 -9\.990e-4$/m); // first AdamW step: -lr·g/(|g| + ε) = -1e-3·0.999
});
