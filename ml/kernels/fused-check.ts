/**
 * The start-up self-test of fused kernels: each implementation registered for the active backend
 * runs a few small, deliberately odd cases (sizes that are no multiple of a tile, one head,
 * padding, duplicate ids) forward and backward, and is activated only if it agrees with the
 * composite of tfjs kernels on the same backend. A kernel that fails or throws stays off, with the
 * reason logged; the model then runs that op as the composite.
 */
import { tf, type Tensor } from '../tf.ts';
import { Rng } from '../../core/rng.ts';
import { attention, biasGelu, crossEntropy, fusedCounts, layerNorm, registeredFused, rowLookup, setFusedActive, type FusedImpl, type FusedOp } from './fused.ts';

/** Per output tensor: max |fused − composite| ≤ ATOL + RTOL · max |composite| (float32, reductions reordered). */
export const SELF_TEST_TOLERANCE = { atol: 1e-5, rtol: 2e-4 };

interface Case {
  name: string;
  /** float inputs, differentiated */
  inputs: Tensor[];
  /** the op applied to them (ints and attrs closed over) */
  f: (...xs: Tensor[]) => Tensor;
  /** tensors f closes over (labels, ids, masks): disposed with the inputs */
  held?: Tensor[];
}

function normal(rng: Rng, shape: number[], scale = 1, shift = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale + shift;
  return tf.tensor(v, shape, 'float32');
}

function ints(rng: Rng, n: number, max: number): Tensor {
  return tf.tensor1d(Array.from({ length: n }, () => Math.floor(rng.next() * max)), 'int32');
}

function cases(op: FusedOp, rng: Rng): Case[] {
  switch (op) {
    case 'layerNorm':
      return [{ name: 'x[37,48]', inputs: [normal(rng, [37, 48], 3, 0.5), normal(rng, [48], 0.5, 1), normal(rng, [48], 0.5)], f: (x, g, b) => layerNorm(x, g, b) }];
    case 'biasGelu':
      return [{ name: 'x[37,72]', inputs: [normal(rng, [37, 72], 2), normal(rng, [72], 0.5)], f: (x, b) => biasGelu(x, b) }];
    case 'attention': {
      const out: Case[] = [];
      for (const [B, T, H, dh, masked] of [[2, 13, 3, 8, true], [2, 13, 3, 8, false], [3, 5, 1, 16, false], [1, 70, 2, 32, true]] as const) {
        const qkv = [0, 1, 2].map(() => normal(rng, [B * T, H * dh]));
        const mask = masked ? tf.tensor2d(Array.from({ length: B * T }, (_, i) => (i % T < T - 1 - (Math.floor(i / T) * 3) % T ? 1 : 0)), [B, T]) : undefined;
        out.push({ name: `B${B} T${T} H${H} dh${dh}${masked ? ' masked' : ''}`, inputs: qkv, f: (q, k, v) => attention(q, k, v, B, H, mask), held: mask ? [mask] : [] });
      }
      return out;
    }
    case 'softmaxXent': {
      const labels = ints(rng, 37, 101);
      return [{ name: 'logits[37,101]', inputs: [normal(rng, [37, 101], 3)], f: (x) => crossEntropy(x, labels, 101), held: [labels] }];
    }
    case 'embeddingGrad': {
      const ids = ints(rng, 41, 29); // 41 lookups of 29 rows: duplicates certain
      return [{ name: 'table[29,16] ids[41]', inputs: [normal(rng, [29, 16])], f: (t) => rowLookup(t, ids), held: [ids] }];
    }
  }
}

/** Value and gradients of f at xs, given a fixed upstream gradient; all read back (asynchronously: webgpu cannot read synchronously in Node). */
async function evaluate(c: Case, dySeed: number): Promise<Float32Array[]> {
  const outs = tf.tidy(() => {
    const value = c.f(...c.inputs);
    const dy = normal(new Rng(dySeed), value.shape);
    const grads = tf.grads((...xs: Tensor[]) => tf.sum(tf.mul(c.f(...xs), dy)))(c.inputs);
    return [value, ...grads];
  });
  try {
    return (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
  } finally {
    tf.dispose(outs);
  }
}

function worstShare(got: Float32Array[], ref: Float32Array[]): number {
  let worst = 0;
  for (let t = 0; t < ref.length; t++) {
    let maxRef = 0;
    let maxDiff = 0;
    for (let i = 0; i < ref[t].length; i++) {
      maxRef = Math.max(maxRef, Math.abs(ref[t][i]));
      const d = Math.abs(got[t][i] - ref[t][i]);
      maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
    }
    worst = Math.max(worst, maxDiff / (SELF_TEST_TOLERANCE.atol + SELF_TEST_TOLERANCE.rtol * maxRef));
  }
  return worst;
}

/** Runs impl's cases; returns the largest share of the tolerance used (≤ 1 passes). */
export async function selfTestFused(impl: FusedImpl): Promise<{ worst: number; failed?: string }> {
  const rng = new Rng(0x7e57);
  const all = cases(impl.op, rng);
  try {
    let worst = 0;
    let ran = 0;
    for (const c of all) {
      setFusedActive(impl, false);
      const ref = await evaluate(c, 99);
      setFusedActive(impl, true);
      const before = fusedCounts().fused[impl.op] ?? 0;
      const got = await evaluate(c, 99);
      // a case the kernel declines (its `supports`) ran as the composite: it proves nothing
      if ((fusedCounts().fused[impl.op] ?? 0) === before) continue;
      ran++;
      const share = worstShare(got, ref);
      worst = Math.max(worst, share);
      if (!(share <= 1)) return { worst, failed: `${c.name}: ${share.toFixed(2)}× the tolerance` };
    }
    if (ran === 0) return { worst, failed: `the kernel declined every self-test case (${all.map((c) => c.name).join('; ')})` };
    return { worst };
  } catch (e) {
    return { worst: Infinity, failed: e instanceof Error ? e.message.split('\n')[0] : String(e) };
  } finally {
    setFusedActive(impl, false);
    for (const c of all) tf.dispose([...c.inputs, ...(c.held ?? [])]);
  }
}

/** Self-tests every fused kernel registered for the active backend and activates those that pass. */
export async function activateFused(log: string[], backend = tf.getBackend()): Promise<FusedOp[]> {
  const on: FusedOp[] = [];
  for (const impl of registeredFused(backend)) {
    const r = await selfTestFused(impl);
    if (r.failed) {
      log.push(`${backend}: fused ${impl.op} off, self-test failed (${r.failed})`);
      continue;
    }
    setFusedActive(impl, true);
    on.push(impl.op);
    log.push(`${backend}: fused ${impl.op} on (${impl.describe}; self-test used ${(r.worst * 100).toFixed(1)}% of the tolerance)`);
  }
  return on;
}
